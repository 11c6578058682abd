"""Tests for memjax.data.babi: parser, TFDS builder (no TensorFlow), arrays, vocabulary."""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from memjax.data import babi
from memjax.data.babi_parse import parse_raw, task_filename

TESTDATA = pathlib.Path(__file__).parent / "testdata"
PEOPLE = ("mary", "john", "sandra", "daniel")
PLACES = ("kitchen", "garden", "office", "hallway")


def _lines(name: str) -> list[str]:
  return (TESTDATA / name).read_text().splitlines()


# ----------------------------------------------------------------------------------------
# Parser.


def test_tokenize():
  assert babi.tokenize("Where is Mary? ") == ["where", "is", "mary"]
  assert babi.tokenize("John went to the hallway.") == ["john", "went", "to", "the", "hallway"]
  assert babi.tokenize("  ") == []


def test_parse_story_restarts_and_supporting_ids():
  name = "qa1_single-supporting-fact_train.txt"
  examples = babi.parse_babi(_lines(name), filename=name)
  assert len(examples) == 4
  first, second, third, fourth = examples
  assert first.story == [
    ["mary", "moved", "to", "the", "bathroom"],
    ["john", "went", "to", "the", "hallway"],
  ]
  # The stray space before the tab is gone and the task comes from the file name.
  assert first.question == ["where", "is", "mary"]
  assert (first.answer, first.supporting, first.task) == ("bathroom", [0], 1)
  # Earlier questions are not in the story: line 4 is story row 2.
  assert len(second.story) == 4 and second.story[2][0] == "daniel"
  assert second.supporting == [2] and second.answer == "hallway"
  assert len(third.story) == 5 and third.story[third.supporting[0]][0] == "sandra"
  # Ids restart at 1: a new story with only its own statement.
  assert fourth.story == [["sandra", "travelled", "to", "the", "office"]]
  assert fourth.supporting == [0]


def test_parse_list_answers_and_several_supporting_facts():
  lines = _lines("qa8_lists-sets_test.txt")
  examples = babi.parse_babi(lines, "qa8_lists-sets_test.txt")
  assert [ex.answer for ex in examples] == ["milk,football", "football", "s,e"]
  assert examples[0].supporting == [0, 2]
  assert examples[1].supporting == [0, 2, 3]  # Line 5 is story row 3 (line 4 was a question).
  assert examples[2].supporting == [] and examples[2].story == []
  assert {ex.task for ex in examples} == {8}
  # Bytes lines (as read from an archive) and an explicit task number.
  from_bytes = babi.parse_babi([ln.encode() + b"\n" for ln in lines], task=19)
  assert [ex[:4] for ex in from_bytes] == [ex[:4] for ex in examples]
  assert {ex.task for ex in from_bytes} == {19}
  assert babi.parse_babi(lines)[0].task is None


@pytest.mark.parametrize(
  "name, line, message",
  [
    ("bad_no_id.txt", 3, "expected 'id text'"),
    ("bad_supporting.txt", 3, "supporting fact id 2 is not a statement"),
    ("bad_fields.txt", 2, "expected .id question<TAB>answer<TAB>supporting ids., found 4"),
    ("bad_ids.txt", 3, "line id 4 does not follow 2"),
  ],
)
def test_parse_malformed_names_file_and_line(name, line, message):
  with pytest.raises(ValueError, match=f"^{name}:{line}: {message}"):
    babi.parse_babi(_lines(name), filename=str(TESTDATA / name))


# ----------------------------------------------------------------------------------------
# A fake archive layout.


def _story_lines(rng: np.random.Generator, places: tuple[str, ...]) -> list[str]:
  """A bAbI task-1 style story: statements, with a question after some of them."""
  where: dict[str, tuple[int, str]] = {}
  lines, line_id = [], 0
  for _ in range(int(rng.integers(1, 9))):
    person, place = str(rng.choice(PEOPLE)), str(rng.choice(places))
    line_id += 1
    lines.append(f"{line_id} {person.title()} went to the {place}.")
    where[person] = (line_id, place)
    if rng.random() < 0.5:
      asked = str(rng.choice(sorted(where)))
      line_id += 1
      fact, answer = where[asked]
      lines.append(f"{line_id} Where is {asked.title()}? \t{answer}\t{fact}")
  if not any("\t" in ln for ln in lines):
    line_id += 1
    fact, answer = where[person]
    lines.append(f"{line_id} Where is {person.title()}?\t{answer}\t{fact}")
  return lines


def _fake_root(path: pathlib.Path, tasks=(1, 2), langs=("en",), stories=12) -> pathlib.Path:
  """``path/babi/tasks_1-20_v1-2/<lang>/qaN_*_{train,test}.txt``; the test split has the
  test-only place 'cellar'."""
  folder = path / "babi" / "tasks_1-20_v1-2"
  for lang in langs:
    for task in tasks:
      for split in ("train", "test"):
        rng = np.random.default_rng([task, split == "test", len(lang)])
        places = PLACES + (("cellar",) if split == "test" else ())
        lines = [ln for _ in range(stories) for ln in _story_lines(rng, places)]
        file = folder / task_filename(lang, task, split)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("\n".join(lines) + "\n")
  return path


def _expected(root: pathlib.Path, lang: str, task: int, split: str):
  name = task_filename(lang, task, split)
  return babi.parse_babi((root / "babi" / "tasks_1-20_v1-2" / name).read_text().splitlines(), name)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
  return _fake_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def arrays(fake_root, tmp_path_factory):
  return babi.load_arrays(
    [1, 2], data_dir=str(fake_root), memory_size=3, tfds_dir=str(tmp_path_factory.mktemp("tfds"))
  )


# ----------------------------------------------------------------------------------------
# TFDS builder.


def test_builder_configs():
  names = {c.name for c in babi.Babi.BUILDER_CONFIGS}
  assert len(names) == 6 * 21
  assert {"en_qa1", "en_qa20", "en_joint", "en-10k_qa3", "hn-10k_joint", "shuffled_qa7"} <= names
  with pytest.raises(ValueError, match="task must be"):
    babi.config_name("en", 21)
  with pytest.raises(ValueError, match="lang must be"):
    babi.config_name("fr", 1)


def test_builder_builds_without_tensorflow_and_reads_back(fake_root, tmp_path):
  builder = babi.Babi(config="en_qa2", data_dir=str(tmp_path), allow_download=False)
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=str(fake_root)),
  )
  assert "tensorflow" not in sys.modules
  for split in ("train", "test"):
    source = tfds.data_source("babi/en_qa2", data_dir=str(tmp_path), split=split)
    want = _expected(fake_root, "en", 2, split)
    assert len(source) == len(want) > 0
    for i in (0, len(want) - 1):  # File order is kept.
      got = source[i]
      assert [babi.tokenize(s.decode()) for s in got["story"]] == want[i].story
      assert babi.tokenize(got["question"].decode()) == want[i].question
      assert got["answer"].decode() == want[i].answer
      assert got["supporting"].tolist() == want[i].supporting
      assert int(got["task"]) == 2
  assert builder.info.metadata["fallback_tasks"] == []


def test_builder_reads_tar_gz_and_falls_back_to_1k(tmp_path, caplog):
  """An archive with en/ and an en-10k/ lacking the qa1 training file."""
  root = _fake_root(tmp_path / "src", tasks=(1,), langs=("en", "en-10k"))
  (root / "babi" / "tasks_1-20_v1-2" / task_filename("en-10k", 1, "train")).unlink()
  archive = tmp_path / "data" / "tasks_1-20_v1-2.tar.gz"  # The <root>/<archive> layout.
  archive.parent.mkdir()
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(root / "babi" / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
  with caplog.at_level(logging.WARNING, logger="memjax.data.babi"):
    train = babi.load_examples(
      1, "train", lang="en-10k", data_dir=str(archive.parent), tfds_dir=str(tmp_path / "tfds")
    )
  assert train == _expected(root, "en", 1, "train")
  assert train.fallback_tasks == (1,)
  assert "1k file" in caplog.text
  test = babi.load_examples(
    1, "test", lang="en-10k", data_dir=str(archive.parent), tfds_dir=str(tmp_path / "tfds")
  )
  assert test == _expected(root, "en-10k", 1, "test") and test.fallback_tasks == ()


def test_fast_record_parse_equals_tfds_decoding(tmp_path):
  """The direct proto parse used by the loaders equals TFDS's own decoding, including
  an empty story and empty supporting facts (the last question of the qa8 test file)."""
  folder = tmp_path / "babi" / "tasks_1-20_v1-2" / "en"
  folder.mkdir(parents=True)
  text = (TESTDATA / "qa8_lists-sets_test.txt").read_text()
  for split in ("train", "test"):
    (tmp_path / "babi" / "tasks_1-20_v1-2" / task_filename("en", 8, split)).write_text(text)
  builder = babi.Babi(config="en_qa8", data_dir=str(tmp_path / "tfds"), data_root=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  raw_bytes = tfds.decode.DeserializeMethod.RAW_BYTES
  records = builder.as_data_source(split="test", deserialize_method=raw_bytes)
  fast = [babi._proto_to_raw(records[i]) for i in range(len(records))]
  slow = babi._read_raw(builder, "test", fast=False)
  assert fast == slow == babi._read_raw(builder, "test") == parse_raw(text.splitlines(), task=8)
  assert fast[-1].story == () and fast[-1].supporting == ()


def test_builder_keeps_unicode_text(tmp_path):
  """Non-ASCII text (the hn/ folder is Hindi) survives the TFDS round trip."""
  folder = tmp_path / "babi" / "tasks_1-20_v1-2" / "hn"
  folder.mkdir(parents=True)
  lines = ["1 मैरी बाथरूम में गयी.", "2 मैरी कहाँ है? \tबाथरूम\t1"]
  for split in ("train", "test"):
    (folder / task_filename("hn", 1, split).split("/")[1]).write_text(
      "\n".join(lines) + "\n", encoding="utf-8"
    )
  got = babi.load_examples(1, "test", lang="hn", data_dir=str(tmp_path), tfds_dir=str(tmp_path))
  assert got == babi.parse_babi(lines, task=1)
  assert got[0].story == [["मैरी", "बाथरूम", "में", "गयी"]] and got[0].answer == "बाथरूम"


def test_missing_data_error_says_what_to_put_where(tmp_path, monkeypatch):
  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  monkeypatch.setattr(babi, "_reachable", lambda url: (False, "offline (test)"))
  with pytest.raises(babi.BabiDataNotFoundError) as info:
    babi.load_examples(1, "train", data_dir=str(tmp_path / "root"), tfds_dir=str(tmp_path / "tfds"))
  message = str(info.value)
  assert str(tmp_path / "root" / "babi" / "tasks_1-20_v1-2.tar.gz") in message
  assert "MEMJAX_DATA_DIR" in message and "offline (test)" in message
  # A folder missing one needed file names the file.
  root = _fake_root(tmp_path / "partial", tasks=(1,))
  with pytest.raises(babi.BabiDataNotFoundError, match="en/qa2_two-supporting-facts_train"):
    babi.Babi(
      config="en_qa2", data_dir=str(tmp_path / "tfds"), data_root=str(root), allow_download=False
    ).download_and_prepare(file_format="array_record")


# ----------------------------------------------------------------------------------------
# Arrays and vocabulary.


def test_load_arrays_shapes_and_padding(arrays):
  m, s = arrays.memory_size, arrays.sentence_size
  assert m == 3 and s == 5  # "where is mary" / "mary went to the kitchen".
  for split in (arrays.train, arrays.validation, arrays.test):
    e = len(split["answer"])
    assert split["story"].shape == (e, m, s) and split["query"].shape == (e, s)
    assert split["supporting"].shape == (e, 3)
    for key in ("story", "query", "answer", "task", "supporting"):
      assert split[key].dtype == np.int32, key
    assert set(np.unique(split["task"])) == {1, 2}
    assert (split["answer"] > 0).all()
    # Padding rows only at the end of each story (left-aligned).
    filled = (split["story"] != 0).any(-1)
    assert (np.diff(filled.astype(int), axis=1) <= 0).all()


def test_load_arrays_match_independent_parse(arrays, fake_root):
  """Decoding the arrays gives the last M statements of the parsed files."""
  vocab, m = arrays.vocab, arrays.memory_size
  want = [ex for t in (1, 2) for ex in _expected(fake_root, "en", t, "test")]
  test = arrays.test
  assert len(want) == len(test["answer"])
  truncated = dropped = 0
  for i, ex in enumerate(want):
    offset = max(0, len(ex.story) - m)
    truncated += offset > 0
    rows = [vocab.decode(row, skip_padding=True) for row in test["story"][i]]
    assert rows == ex.story[offset:] + [[]] * (m - len(ex.story[offset:]))
    assert vocab.decode(test["query"][i], skip_padding=True) == ex.question
    assert vocab.decode([test["answer"][i]]) == [ex.answer]
    assert test["task"][i] == ex.task
    facts = [j - offset for j in ex.supporting if j >= offset]
    dropped += len(facts) < len(ex.supporting)
    assert test["supporting"][i].tolist() == facts + [-1] * (3 - len(facts))
  assert truncated > 0  # The fake stories are longer than M = 3 sometimes.
  assert arrays.metadata["truncation"]["test"]["truncated_stories"] == truncated
  assert arrays.metadata["truncation"]["test"]["dropped_supporting"] == dropped > 0


def _decode_rows(arrays, split):
  vocab = arrays.vocab
  return [
    (
      [vocab.decode(r, skip_padding=True) for r in split["story"][i]],
      vocab.decode(split["query"][i]),
      int(split["task"][i]),
    )
    for i in range(len(split["answer"]))
  ]


def _parsed_rows(examples, m, s):
  out = []
  for ex in examples:
    story = ex.story[-m:]
    out.append(
      (story + [[]] * (m - len(story)), ex.question + ["<pad>"] * (s - len(ex.question)), ex.task)
    )
  return out


def test_validation_split_is_seeded_disjoint_and_per_task(arrays, fake_root, tmp_path):
  m, s = arrays.memory_size, arrays.sentence_size
  counts, chosen = arrays.metadata["num_examples"], arrays.metadata["validation_indices"]
  want_train, want_val = [], []
  for t in (1, 2):
    parsed = _expected(fake_root, "en", t, "train")
    n = len(parsed)
    assert counts["validation"][t] == len(chosen[t]) == round(0.1 * n) > 0
    assert counts["train"][t] == n - len(chosen[t])
    assert len(set(chosen[t])) == len(chosen[t]) and set(chosen[t]) <= set(range(n))
    want_val += [parsed[i] for i in chosen[t]]
    want_train += [ex for i, ex in enumerate(parsed) if i not in set(chosen[t])]
  # Validation holds exactly the chosen questions, train exactly the others (disjoint).
  assert _decode_rows(arrays, arrays.validation) == _parsed_rows(want_val, m, s)
  assert _decode_rows(arrays, arrays.train) == _parsed_rows(want_train, m, s)
  # Same seed, same split; another seed, another split.
  root = str(fake_root)
  again = babi.load_arrays([1, 2], data_dir=root, memory_size=3, tfds_dir=str(tmp_path))
  assert again.metadata["validation_indices"] == chosen
  np.testing.assert_array_equal(again.validation["story"], arrays.validation["story"])
  other = babi.load_arrays([1, 2], data_dir=root, memory_size=3, seed=1, tfds_dir=str(tmp_path))
  assert other.metadata["validation_indices"] != chosen


def test_vocab_covers_test_words_and_round_trips(arrays):
  vocab = arrays.vocab
  assert vocab.words[0] == "<pad>" and len(vocab) == len(set(vocab.words))
  assert "cellar" in vocab  # Only in the test split: the vocabulary spans train + test.
  assert arrays.metadata["vocab_source"] == "train+test"
  restored = babi.Vocab.from_json(vocab.to_json())
  assert restored == vocab and len(restored) == len(vocab)
  words = ["where", "is", "mary", "cellar"]
  ids = restored.encode(words)
  assert ids.dtype == np.int32 and ids.shape == (4,) and 0 not in ids
  assert restored.decode(ids) == words
  assert restored.decode([ids[0], 0, 0], skip_padding=True) == ["where"]
  with pytest.raises(babi.OutOfVocabularyError, match=r"\['zebra', 'moon'\]"):
    restored.encode(["zebra", "is", "moon", "zebra"])


def test_vocab_build_known_answer():
  name = "qa1_single-supporting-fact_train.txt"
  vocab = babi.Vocab.build(babi.parse_babi(_lines(name), name))
  assert vocab.words == ["<pad>", "back", "bathroom", "daniel", "garden", "hallway", "is",
                         "john", "mary", "moved", "office", "sandra", "the", "to",
                         "travelled", "went", "where"]  # fmt: skip
  assert vocab.encode(["<pad>", "where"]).tolist() == [0, 16]
  with pytest.raises(IndexError, match="id 17 is outside"):
    vocab.decode([17])
  with pytest.raises(ValueError, match="must start with '<pad>'"):
    babi.Vocab.from_json('{"words": ["mary"]}')


def test_load_arrays_with_given_vocab(arrays, fake_root, tmp_path):
  again = babi.load_arrays(
    [2], data_dir=str(fake_root), memory_size=3, vocab=arrays.vocab, tfds_dir=str(tmp_path)
  )
  assert again.vocab is arrays.vocab and again.metadata["vocab_source"] == "given"
  with pytest.raises(KeyError, match="not in the vocabulary"):
    babi.load_arrays(
      [2], data_dir=str(fake_root), vocab=babi.Vocab(["mary"]), tfds_dir=str(tmp_path)
    )


def test_load_arrays_argument_errors(fake_root):
  with pytest.raises(ValueError, match="tasks must be"):
    babi.load_arrays([0], data_dir=str(fake_root))
  with pytest.raises(ValueError, match="tasks must be"):
    babi.load_arrays([1, 1], data_dir=str(fake_root))
  with pytest.raises(ValueError, match="memory_size"):
    babi.load_arrays([1], data_dir=str(fake_root), memory_size=0)
  with pytest.raises(ValueError, match="validation_fraction"):
    babi.load_arrays([1], data_dir=str(fake_root), validation_fraction=1.0)


def test_encode_story(arrays):
  vocab, m, s = arrays.vocab, arrays.memory_size, arrays.sentence_size
  sentences = [
    "Mary went to the kitchen.",
    "John went to the garden.",
    "Mary went to the office.",
    "Sandra went to the cellar.",
  ]
  story, query = babi.encode_story(sentences, "Where is Mary?", vocab, m, s)
  assert story.shape == (m, s) and query.shape == (s,) and story.dtype == np.int32
  assert [vocab.decode(r, skip_padding=True) for r in story] == [
    babi.tokenize(x) for x in sentences[-m:]
  ]
  assert vocab.decode(query) == ["where", "is", "mary", "<pad>", "<pad>"]
  short, _ = babi.encode_story(sentences[:1], "Where is Mary?", vocab, m, s)
  assert (short[1:] == 0).all()
  np.testing.assert_array_equal(short[0], vocab.encode(babi.tokenize(sentences[0])))
  with pytest.raises(babi.OutOfVocabularyError, match=r"\['zebra', 'moon'\]"):
    babi.encode_story(["The zebra went to the moon."], "Where is Mary?", vocab, m, s)
  with pytest.raises(ValueError, match="sentence_size=5"):
    babi.encode_story(["Mary went to the kitchen to the garden."], "Where is Mary?", vocab, m, s)


# ----------------------------------------------------------------------------------------
# Real data (skipped when absent).


def _real_root() -> str | None:
  for root in (
    os.environ.get("MEMJAX_DATA_DIR"),
    str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"),
  ):
    if root and (pathlib.Path(root) / "babi" / "tasks_1-20_v1-2" / "en").is_dir():
      return root
  return None


@pytest.mark.skipif(_real_root() is None, reason="bAbI data not available (MEMJAX_DATA_DIR)")
def test_real_en_task1_counts_and_10k_task3_fallback(tmp_path):
  root = _real_root()
  train = babi.load_examples(1, "train", data_dir=root, tfds_dir=str(tmp_path))
  test = babi.load_examples(1, "test", data_dir=root, tfds_dir=str(tmp_path))
  assert len(train) == len(test) == 1000
  assert train[0].story[0] == ["mary", "moved", "to", "the", "bathroom"]
  assert (train[0].question, train[0].answer, train[0].supporting) == (
    ["where", "is", "mary"],
    "bathroom",
    [0],
  )
  folder = pathlib.Path(root) / "babi" / "tasks_1-20_v1-2"
  ten_k_qa3 = babi.load_examples(3, "train", lang="en-10k", data_dir=root, tfds_dir=str(tmp_path))
  if (folder / task_filename("en-10k", 3, "train")).exists():
    assert len(ten_k_qa3) == 10000 and ten_k_qa3.fallback_tasks == ()
  else:
    assert len(ten_k_qa3) == 1000 and ten_k_qa3.fallback_tasks == (3,)
    assert ten_k_qa3 == babi.load_examples(3, "train", data_dir=root, tfds_dir=str(tmp_path))
