"""Tests for memjax.data.babi.examples: examples read back through the TFDS data source."""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import re
import tarfile

import pytest
import tensorflow_datasets as tfds

from memjax.data import babi
from memjax.data.babi import builder as builder_lib
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


# ----------------------------------------------------------------------------- issue 12


def _one_question_root(root: pathlib.Path, place: str) -> str:
  folder = root / "babi" / "tasks_1-20_v1-2"
  for split in ("train", "test"):
    path = folder / parse.task_filename("en", 1, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"1 Mary went to the {place}.\n2 Where is Mary?\t{place}\t1\n")
  return str(root)


def test_prepared_data_is_keyed_by_content_not_config_name(tmp_path, monkeypatch):
  """Root A then root B (same language, other files) in one cache folder: B's examples;
  the same files elsewhere reuse A's build; an edited file is rebuilt."""
  monkeypatch.setattr(builder_lib, "_reachable", lambda url: (False, "offline (test)"))
  cache = str(tmp_path / "tfds")
  a = _one_question_root(tmp_path / "a", "kitchen")
  b = _one_question_root(tmp_path / "b", "garden")
  same_as_a = _one_question_root(tmp_path / "a2", "kitchen")
  got_a = babi.load_examples(1, "train", data_dir=a, tfds_dir=cache)
  got_b = babi.load_examples(1, "train", data_dir=b, tfds_dir=cache)
  assert (got_a[0].answer, got_b[0].answer) == ("kitchen", "garden")
  assert got_a.provenance["fingerprint"] != got_b.provenance["fingerprint"]
  again = babi.load_examples(1, "train", data_dir=same_as_a, tfds_dir=cache)
  assert again.provenance["cache_dir"] == got_a.provenance["cache_dir"]
  assert again.provenance["data_root"] == same_as_a and again[0].answer == "kitchen"
  _one_question_root(tmp_path / "a", "office")  # edited in place
  assert babi.load_examples(1, "train", data_dir=a, tfds_dir=cache)[0].answer == "office"
  assert (tmp_path / "tfds" / examples.CONTENT_FOLDER).is_dir()
  assert not (tmp_path / "tfds" / "babi").exists()  # never the config-name-only layout


def test_no_data_root_and_no_download_is_an_error_not_a_stale_cache(tmp_path, monkeypatch):
  monkeypatch.setattr(builder_lib, "_reachable", lambda url: (False, "offline (test)"))
  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  cache = str(tmp_path / "tfds")
  root = _one_question_root(tmp_path / "a", "kitchen")
  assert babi.load_examples(1, "train", data_dir=root, tfds_dir=cache)[0].answer == "kitchen"
  with pytest.raises(babi.BabiDataNotFoundError, match="(?s)offline .test.*keyed by their content"):
    babi.load_examples(1, "train", tfds_dir=cache)
  monkeypatch.setenv("MEMJAX_DATA_DIR", root)  # the environment variable is a data root
  assert babi.load_examples(1, "train", tfds_dir=cache).provenance["data_root"] == root
  # An archive downloaded before into the cache folder is a source (keyed by its SHA-256).
  monkeypatch.delenv("MEMJAX_DATA_DIR")
  archive = tmp_path / "tfds" / examples.DOWNLOAD_FOLDER / parse.ARCHIVE_NAME
  archive.parent.mkdir(parents=True)
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(pathlib.Path(root) / "babi" / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
  got = babi.load_examples(1, "train", tfds_dir=cache)
  assert got[0].answer == "kitchen" and got.provenance["source_kind"] == "download"
  assert got.provenance["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_cache_folder_defaults_to_tfds_data_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_cache"))
  assert examples.cache_dir() == str(tmp_path / "env_cache")
  assert examples.cache_dir(tmp_path / "mine") == str(tmp_path / "mine")
  root = _one_question_root(tmp_path / "a", "kitchen")
  got = babi.load_examples(1, "test", data_dir=root)
  assert got.provenance["cache_dir"].startswith(str(tmp_path / "env_cache" / "babi_by_content"))
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert examples.cache_dir() == os.path.expanduser(os.path.join("~", "tensorflow_datasets"))


@pytest.mark.parametrize("text", ["", "\n\n", "1 Mary went home.\n"])
def test_a_file_without_questions_fails_the_load_naming_it(tmp_path, text):
  """Not an AssertionError from TFDS ('No examples were yielded'), not zero examples."""
  root = pathlib.Path(_one_question_root(tmp_path / "a", "kitchen"))
  path = root / "babi" / "tasks_1-20_v1-2" / parse.task_filename("en", 1, "test")
  path.write_text(text)
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(str(path))}:[12]: no question"):
    babi.load_examples(1, "train", data_dir=str(root), tfds_dir=str(tmp_path / "tfds"))


def test_the_official_archive_is_downloaded_once_into_the_cache(tmp_path, monkeypatch):
  """No data root: the archive is downloaded into <cache>/babi_by_content/downloads/ (here
  from a fake server), keyed by its SHA-256, and used offline afterwards."""
  import contextlib
  import io

  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  root = pathlib.Path(_one_question_root(tmp_path / "a", "kitchen"))
  served = tmp_path / "served.tar.gz"
  with tarfile.open(served, "w:gz") as tar:
    tar.add(root / "babi" / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
  urls = []

  def urlopen(url, timeout):
    urls.append(url)
    return contextlib.closing(io.BytesIO(served.read_bytes()))

  monkeypatch.setattr(builder_lib, "_reachable", lambda url: (True, ""))
  monkeypatch.setattr(builder_lib.urllib.request, "urlopen", urlopen)
  cache = tmp_path / "tfds"
  got = babi.load_examples(1, "test", tfds_dir=str(cache))
  assert urls == [parse.URL] and got[0].answer == "kitchen"
  archive = cache / examples.DOWNLOAD_FOLDER / parse.ARCHIVE_NAME
  assert archive.read_bytes() == served.read_bytes()
  assert got.provenance["source_kind"] == "download" and got.provenance["data_root"] is None
  assert got.provenance["fingerprint"] == hashlib.sha256(served.read_bytes()).hexdigest()
  monkeypatch.setattr(builder_lib, "_reachable", lambda url: (False, "offline (test)"))
  assert babi.load_examples(1, "train", tfds_dir=str(cache))[0].answer == "kitchen"
  assert urls == [parse.URL]  # not downloaded again
