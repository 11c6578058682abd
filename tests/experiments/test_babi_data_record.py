"""results.json of a bAbI run records the data it trained on: the resolved data root, the
files' checksums, the content keys and the cache folder (chosen by config.data.tfds_dir)."""

import hashlib
import json
import pathlib

import pytest

from experiments.babi import train
from experiments.babi.configs import default, smoke
from memjax.data.babi import parse


def _fake_root(root: pathlib.Path) -> pathlib.Path:
  folder = root / "babi" / "tasks_1-20_v1-2"
  for split in ("train", "test"):
    lines = []
    for i, (who, place) in enumerate([("Mary", "kitchen"), ("John", "garden")] * 8):
      lines += [f"1 {who} went to the {place}.", f"2 Where is {who}?\t{place}\t1"]
      lines += [f"3 {who} went to the office.", f"4 Where is {who}?\toffice\t3"] * (i % 2)
    path = folder / parse.task_filename("en", 1, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
  return folder


def _untrained_unit(config, run, directory, data, mesh):
  """train_unit's record without the training (the data record is under test here)."""
  errors = {"train_error": 0.0, "validation_error": 0.0, "test_error": 0.0}
  task_errors = {f"{split}_task_error": {1: 0.0} for split in ("train", "validation", "test")}
  return {
    "index": int(run.name.split("_")[-1]),
    "tasks": run.spec["tasks"],
    "restart": run.spec["restart"],
    **errors,
    **task_errors,
    "examples": 1,
    "train_seconds": 1.0,
    "data_fingerprints": data.metadata["data"]["fingerprints"],
  }


def test_results_record_the_data_root_checksums_and_cache(tmp_path, monkeypatch):
  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  monkeypatch.setattr(train, "train_unit", _untrained_unit)
  assert default.get_config().data.tfds_dir == ""  # '' = $TFDS_DATA_DIR or TFDS's default
  folder = _fake_root(tmp_path / "root")
  config = smoke.get_config()
  config.data.source = "babi"
  config.data.data_dir = str(tmp_path / "root")
  config.data.tfds_dir = str(tmp_path / "cache")
  config.train.num_restarts = 1
  train.train_and_evaluate(config, str(tmp_path / "run"))
  record = json.loads((tmp_path / "run" / "results.json").read_text())
  data = record["data"]
  assert data["source"] == "babi" and data["lang"] == "en"
  assert data["data_root"] == str(tmp_path / "root") and data["source_kind"] == "folder"
  names = [parse.task_filename("en", 1, split) for split in ("train", "test")]
  assert sorted(data["files"]) == sorted(names)
  for name in names:
    raw = (folder / name).read_bytes()
    assert data["files"][name]["md5"] == hashlib.md5(raw).hexdigest()
    assert data["files"][name]["sha256"] == hashlib.sha256(raw).hexdigest()
  assert list(data["fingerprints"]) == ["en_qa1"]
  assert data["cache_dirs"]["en_qa1"].startswith(str(tmp_path / "cache"))
  assert record["units"][0]["data_fingerprints"] == data["fingerprints"]
  # Resumed with every unit done: nothing is reloaded, the units' content keys are kept.
  train.train_and_evaluate(config, str(tmp_path / "run"))
  again = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
  assert again == {"source": "babi", "lang": "en", "fingerprints": data["fingerprints"]}


def test_load_data_refuses_arrays_over_max_array_gib(tmp_path):
  _fake_root(tmp_path / "root")
  config = default.get_config()
  config.data.data_dir = str(tmp_path / "root")
  config.data.tfds_dir = str(tmp_path / "cache")
  config.data.max_array_gib = 1e-6  # about 1 KB
  with pytest.raises(ValueError, match="over max_bytes=0.00 GiB"):
    train.load_data(config, [1])
  config.data.max_array_gib = 8.0
  assert train.load_data(config, [1]).metadata["data"]["data_root"] == str(tmp_path / "root")
