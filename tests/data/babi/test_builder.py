"""Tests for memjax.data.babi.builder: the TFDS builder (ArrayRecord, no TensorFlow)."""

from __future__ import annotations

import pathlib
import sys

import pytest
import tensorflow_datasets as tfds

from memjax.data import babi
from memjax.data.babi import builder as builder_lib


def test_builder_name_configs_and_code_path():
  assert babi.Babi.name == "babi" and str(babi.Babi.VERSION) == "1.2.0"
  assert tfds.builder_cls("babi") is babi.Babi
  names = {c.name for c in babi.Babi.BUILDER_CONFIGS}
  assert len(names) == 6 * 21
  assert {"en_qa1", "en_qa20", "en_joint", "en-10k_qa3", "hn-10k_joint", "shuffled_qa7"} <= names
  assert pathlib.Path(babi.Babi.code_path) == pathlib.Path(builder_lib.__file__)
  with pytest.raises(ValueError, match="task must be"):
    babi.config_name("en", 21)
  with pytest.raises(ValueError, match="lang must be"):
    babi.config_name("fr", 1)


def test_builder_builds_without_tensorflow_and_reads_back(fake_root, expected, tmp_path):
  builder = babi.Babi(config="en_qa2", data_dir=str(tmp_path), allow_download=False)
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=str(fake_root)),
  )
  assert "tensorflow" not in sys.modules
  assert (tmp_path / "babi" / "en_qa2" / "1.2.0").is_dir()  # The TFDS cache layout.
  for split in ("train", "test"):
    source = tfds.data_source("babi/en_qa2", data_dir=str(tmp_path), split=split)
    want = expected(fake_root, "en", 2, split)
    assert len(source) == len(want) == len(builder.as_data_source(split=split)) > 0
    for i in (0, len(want) - 1):  # File order is kept.
      got = source[i]
      assert [babi.tokenize(s.decode()) for s in got["story"]] == want[i].story
      assert babi.tokenize(got["question"].decode()) == want[i].question
      assert got["answer"].decode() == want[i].answer
      assert got["supporting"].tolist() == want[i].supporting
      assert int(got["task"]) == 2
  assert builder.info.metadata["fallback_tasks"] == []


def test_missing_data_error_says_what_to_put_where(make_fake_root, tmp_path, monkeypatch):
  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  monkeypatch.setattr(builder_lib, "_reachable", lambda url: (False, "offline (test)"))
  with pytest.raises(babi.BabiDataNotFoundError) as info:
    babi.load_examples(1, "train", data_dir=str(tmp_path / "root"), tfds_dir=str(tmp_path / "tfds"))
  message = str(info.value)
  assert str(tmp_path / "root" / "babi" / "tasks_1-20_v1-2.tar.gz") in message
  assert "MEMJAX_DATA_DIR" in message and "offline (test)" in message
  # A folder missing one needed file names the file.
  root = make_fake_root(tmp_path / "partial", tasks=(1,))
  with pytest.raises(babi.BabiDataNotFoundError, match="en/qa2_two-supporting-facts_train"):
    babi.Babi(
      config="en_qa2", data_dir=str(tmp_path / "tfds"), data_root=str(root), allow_download=False
    ).download_and_prepare(file_format="array_record")
