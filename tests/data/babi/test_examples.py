"""Tests for memjax.data.babi.examples: examples read back through the TFDS data source."""

from __future__ import annotations

import logging
import pathlib
import tarfile

import tensorflow_datasets as tfds

from memjax.data import babi
from memjax.data.babi import examples, parse


def test_fast_record_parse_equals_tfds_decoding(testdata, tmp_path):
  """The direct proto parse used by the loaders equals TFDS's own decoding, including
  an empty story and empty supporting facts (the last question of the qa8 test file)."""
  folder = tmp_path / "babi" / "tasks_1-20_v1-2" / "en"
  folder.mkdir(parents=True)
  text = (testdata / "qa8_lists-sets_test.txt").read_text()
  for split in ("train", "test"):
    (tmp_path / "babi" / "tasks_1-20_v1-2" / parse.task_filename("en", 8, split)).write_text(text)
  builder = babi.Babi(config="en_qa8", data_dir=str(tmp_path / "tfds"), data_root=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  raw_bytes = tfds.decode.DeserializeMethod.RAW_BYTES
  records = builder.as_data_source(split="test", deserialize_method=raw_bytes)
  fast = [examples._proto_to_raw(records[i]) for i in range(len(records))]
  slow = examples._read_raw(builder, "test", fast=False)
  want = parse.parse_raw(text.splitlines(), task=8)
  assert fast == slow == examples._read_raw(builder, "test") == want
  assert fast[-1].story == () and fast[-1].supporting == ()


def test_load_examples_reads_tar_gz_and_falls_back_to_1k(
  make_fake_root, expected, tmp_path, caplog
):
  """An archive with en/ and an en-10k/ lacking the qa1 training file."""
  root = make_fake_root(tmp_path / "src", tasks=(1,), langs=("en", "en-10k"))
  (root / "babi" / "tasks_1-20_v1-2" / parse.task_filename("en-10k", 1, "train")).unlink()
  archive = tmp_path / "data" / "tasks_1-20_v1-2.tar.gz"  # The <root>/<archive> layout.
  archive.parent.mkdir()
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(root / "babi" / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
  with caplog.at_level(logging.WARNING, logger="memjax.data.babi"):
    train = babi.load_examples(
      1, "train", lang="en-10k", data_dir=str(archive.parent), tfds_dir=str(tmp_path / "tfds")
    )
  assert train == expected(root, "en", 1, "train")
  assert train.fallback_tasks == (1,)
  assert "1k file" in caplog.text
  test = babi.load_examples(
    1, "test", lang="en-10k", data_dir=str(archive.parent), tfds_dir=str(tmp_path / "tfds")
  )
  assert test == expected(root, "en-10k", 1, "test") and test.fallback_tasks == ()


def test_load_examples_keeps_unicode_text(tmp_path):
  """Non-ASCII text (the hn/ folder is Hindi) survives the TFDS round trip."""
  folder = tmp_path / "babi" / "tasks_1-20_v1-2" / "hn"
  folder.mkdir(parents=True)
  lines = ["1 मैरी बाथरूम में गयी.", "2 मैरी कहाँ है? \tबाथरूम\t1"]
  for split in ("train", "test"):
    (folder / parse.task_filename("hn", 1, split).split("/")[1]).write_text(
      "\n".join(lines) + "\n", encoding="utf-8"
    )
  got = babi.load_examples(1, "test", lang="hn", data_dir=str(tmp_path), tfds_dir=str(tmp_path))
  assert got == babi.parse_babi(lines, task=1)
  assert got[0].story == [["मैरी", "बाथरूम", "में", "गयी"]] and got[0].answer == "बाथरूम"


def test_real_en_task1_counts_and_10k_task3_fallback(real_root, tmp_path):
  train = babi.load_examples(1, "train", data_dir=real_root, tfds_dir=str(tmp_path))
  test = babi.load_examples(1, "test", data_dir=real_root, tfds_dir=str(tmp_path))
  assert len(train) == len(test) == 1000
  assert train[0].story[0] == ["mary", "moved", "to", "the", "bathroom"]
  assert (train[0].question, train[0].answer, train[0].supporting) == (
    ["where", "is", "mary"],
    "bathroom",
    [0],
  )
  folder = pathlib.Path(real_root) / "babi" / "tasks_1-20_v1-2"
  ten_k_qa3 = babi.load_examples(
    3, "train", lang="en-10k", data_dir=real_root, tfds_dir=str(tmp_path)
  )
  if (folder / parse.task_filename("en-10k", 3, "train")).exists():
    assert len(ten_k_qa3) == 10000 and ten_k_qa3.fallback_tasks == ()
  else:
    assert len(ten_k_qa3) == 1000 and ten_k_qa3.fallback_tasks == (3,)
    assert ten_k_qa3 == babi.load_examples(3, "train", data_dir=real_root, tfds_dir=str(tmp_path))
