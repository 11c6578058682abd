"""Tests for memjax.data.babi.arrays: MemN2N arrays, vocabulary, free text, length buckets."""

from __future__ import annotations

import numpy as np
import pytest

from memjax.data import babi
from memjax.data.babi import synthetic


@pytest.fixture(scope="module")
def arrays(fake_root, tmp_path_factory):
  return babi.load_arrays(
    [1, 2], data_dir=str(fake_root), memory_size=3, tfds_dir=str(tmp_path_factory.mktemp("tfds"))
  )


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


def test_load_arrays_match_independent_parse(arrays, fake_root, expected):
  """Decoding the arrays gives the last M statements of the parsed files."""
  vocab, m = arrays.vocab, arrays.memory_size
  want = [ex for t in (1, 2) for ex in expected(fake_root, "en", t, "test")]
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


def test_validation_split_is_seeded_disjoint_and_per_task(arrays, fake_root, expected, tmp_path):
  m, s = arrays.memory_size, arrays.sentence_size
  counts, chosen = arrays.metadata["num_examples"], arrays.metadata["validation_indices"]
  want_train, want_val = [], []
  for t in (1, 2):
    parsed = expected(fake_root, "en", t, "train")
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
  assert isinstance(vocab, babi.Vocab)
  assert vocab.words[0] == "<pad>" and len(vocab) == len(set(vocab.words))
  assert "cellar" in vocab  # Only in the test split: the vocabulary spans train + test.
  assert arrays.metadata["vocab_source"] == "train+test"
  restored = babi.Vocab.from_json(vocab.to_json())
  assert restored == vocab and restored.encode(["cellar"]) == vocab.encode(["cellar"])


def test_build_vocab_known_answer(testdata):
  name = "qa1_single-supporting-fact_train.txt"
  examples = babi.parse_babi((testdata / name).read_text().splitlines(), name)
  vocab = babi.build_vocab(examples)
  assert vocab.words == ["<pad>", "back", "bathroom", "daniel", "garden", "hallway", "is",
                         "john", "mary", "moved", "office", "sandra", "the", "to",
                         "travelled", "went", "where"]  # fmt: skip
  assert vocab.encode(["<pad>", "where"]).tolist() == [0, 16]


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
# Length buckets.


def _reference_length_buckets(split, sizes, memory_size, word_sizes=()):
  """experiments/babi/train.py's length_buckets as of commit 2c3bfca, verbatim."""
  sizes = sorted({int(x) for x in sizes if 0 < x < memory_size} | {memory_size})
  count = np.sum(np.any(split["story"] != 0, axis=-1), axis=-1)
  words = np.maximum(
    np.max(np.sum(split["story"] != 0, axis=-1), axis=-1), np.sum(split["query"] != 0, axis=-1)
  )
  longest = split["story"].shape[-1]
  word_sizes = sorted({int(x) for x in word_sizes if 0 < x < longest} | {longest})
  bucket = np.searchsorted(np.asarray(sizes), count)  # smallest size >= count
  word_bucket = np.searchsorted(np.asarray(word_sizes), words)
  out = []
  for b in range(len(sizes)):
    for w in range(len(word_sizes)):
      idx = np.flatnonzero((bucket == b) & (word_bucket == w))
      if idx.size:
        rows = max(1, int(count[idx].max()))  # no bucket keeps rows that are empty in all
        cols = max(1, int(words[idx].max()))  # words are left-aligned too: cut S as well
        out.append(
          {
            "story": split["story"][idx, :rows, :cols],
            "query": split["query"][idx, :cols],
            "answer": split["answer"][idx],
          }
        )
  return out


_BUCKET_SETTINGS = [
  ((), ()),
  ((4, 8, 16, 32), ()),
  ((4, 8, 16, 32), (6, 8)),
  ((), (6, 8)),
  ((3, 6), (4,)),
  ((0, 1, 2, 50, 99), (0, 3, 99)),  # out-of-range sizes are dropped
]


def _assert_same_buckets(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want, strict=True):
    assert g.keys() == w.keys()
    for key in w:
      assert g[key].dtype == w[key].dtype and g[key].shape == w[key].shape, key
      np.testing.assert_array_equal(g[key], w[key])


@pytest.mark.parametrize("sizes, word_sizes", _BUCKET_SETTINGS)
@pytest.mark.parametrize("seed", [0, 3])
def test_length_buckets_equal_reference_on_synthetic_data(seed, sizes, word_sizes):
  data = synthetic.load_arrays(num_train=400, num_test=10, memory_size=10, seed=seed)
  split = {k: v.copy() for k, v in data.train.items()}
  split["story"][:100, :, 4:] = 0  # sentences of <= 4 words in a quarter of the stories
  split["query"][:100, 4:] = 0
  split["story"][100:110] = 0  # empty stories
  for s in (data.train, data.test, split):
    want = _reference_length_buckets(s, sizes, 10, word_sizes)
    _assert_same_buckets(babi.length_buckets(s, sizes, 10, word_sizes), want)


def test_length_buckets_equal_reference_on_real_babi(real_root, tmp_path):
  data = babi.load_arrays([1, 3, 8, 19], data_dir=real_root, memory_size=50, tfds_dir=str(tmp_path))
  for split in (data.train, data.validation, data.test):
    for sizes, word_sizes in [((4, 8, 16, 32), (6, 8)), ((4, 8, 16, 32), ()), ((), ())]:
      want = _reference_length_buckets(split, sizes, 50, word_sizes)
      assert len(want) > (1 if sizes else 0)
      _assert_same_buckets(babi.length_buckets(split, sizes, 50, word_sizes), want)


def test_length_buckets_keep_every_example_and_word():
  data = synthetic.load_arrays(num_train=200, num_test=10, memory_size=10, seed=3)
  buckets = babi.length_buckets(data.train, (3, 6), 10)
  assert sum(b["answer"].shape[0] for b in buckets) == data.train["answer"].shape[0]
  words = sum(int(np.sum(b["story"] != 0)) for b in buckets)
  assert words == int(np.sum(data.train["story"] != 0))
  assert [b["story"].shape[1] for b in buckets] == [3, 6, 10][-len(buckets) :]


def test_word_buckets_cut_sentences_and_keep_every_word():
  data = synthetic.load_arrays(num_train=300, num_test=10, memory_size=10, seed=4)
  split = {k: v.copy() for k, v in data.train.items()}
  split["story"][:100, :, 4:] = 0  # a third of the stories: sentences of <= 4 words
  split["query"][:100, 4:] = 0
  rows_only = babi.length_buckets(split, (6,), 10)
  buckets = babi.length_buckets(split, (6,), 10, word_sizes=(4,))
  assert len(buckets) > len(rows_only)
  n = split["answer"].shape[0]
  assert sum(b["answer"].shape[0] for b in buckets) == n
  assert sum(int(np.sum(b["story"] != 0)) for b in buckets) == int(np.sum(split["story"] != 0))
  assert sum(int(np.sum(b["query"] != 0)) for b in buckets) == int(np.sum(split["query"] != 0))
  longest = np.maximum((split["story"] != 0).sum(-1).max(-1), (split["query"] != 0).sum(-1))
  short = [b for b in buckets if b["story"].shape[2] <= 4]
  assert sum(b["answer"].shape[0] for b in short) == np.sum(longest <= 4) >= 100
  # Every example's words and answer survive the cut, in order.
  got = {
    (tuple(q[q != 0]), int(a), tuple(s[s != 0]))
    for b in buckets
    for q, a, s in zip(b["query"], b["answer"], b["story"], strict=True)
  }
  want = {
    (tuple(q[q != 0]), int(a), tuple(s[s != 0]))
    for q, a, s in zip(split["query"], split["answer"], split["story"], strict=True)
  }
  assert got == want


def test_length_buckets_reject_stories_longer_than_memory_size():
  data = synthetic.load_arrays(num_train=50, num_test=10, memory_size=10, seed=0)
  with pytest.raises(ValueError, match="longer along axis 0"):
    babi.length_buckets(data.train, (4,), 1)


# ----------------------------------------------------------------------------- issue 12


def _write_task(root, lang, task, train_lines, test_lines=None):
  from memjax.data.babi import parse

  for split, lines in (("train", train_lines), ("test", test_lines or train_lines)):
    path = root / "babi" / "tasks_1-20_v1-2" / parse.task_filename(lang, task, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return root


def test_several_word_answers_are_one_vocabulary_entry(tmp_path):
  """hn/: 'rasoi ghar' is one answer class (one id), apart from its words in stories."""
  lines = [
    "1 Mary rasoi ghar mein gayi.",
    "2 Mary kahan hai? \trasoi ghar\t1",
    "3 John chalchitra ghar gaya.",
    "4 John kahan hai?\tchalchitra ghar\t3",
    "5 Mary kahan hai?\trasoi ghar\t1",
  ]
  root = _write_task(tmp_path / "root", "hn", 1, lines * 5)
  arrays = babi.load_arrays(
    [1], lang="hn", data_dir=str(root), tfds_dir=str(tmp_path / "tfds"), validation_fraction=0
  )
  vocab = arrays.vocab
  assert {"rasoi ghar", "chalchitra ghar", "rasoi", "ghar", "chalchitra"} <= set(vocab.words)
  answers = vocab.decode(arrays.test["answer"])
  assert answers == ["rasoi ghar", "chalchitra ghar", "rasoi ghar"] * 5
  assert len(set(arrays.test["answer"].tolist())) == 2  # one id per answer class
  row = vocab.decode(arrays.test["story"][0, 0], skip_padding=True)
  assert row == ["mary", "rasoi", "ghar", "mein", "gayi"]


def test_arrays_over_max_bytes_are_refused_before_allocating(tmp_path, monkeypatch):
  """A 200,000-word line once parsed and made load_arrays allocate 37 GiB: the parser caps
  words per line, and load_arrays refuses arrays over max_bytes from their sizes alone."""
  from memjax.data.babi import arrays as arrays_lib
  from memjax.data.babi import parse

  def no_allocation(*args, **kwargs):
    raise AssertionError("the arrays were being encoded")

  monkeypatch.setattr(arrays_lib, "_encode_split", no_allocation)
  story = ["1 Mary went " + "to " * 200_000 + "the kitchen.", "2 Where is Mary?\tkitchen\t1"]
  huge = _write_task(tmp_path / "huge", "en", 1, story)
  name = parse.task_filename("en", 1, "train")
  path = str(huge / "babi" / "tasks_1-20_v1-2" / name)
  with pytest.raises(parse.BabiFormatError, match=f"^{path}:1: more than max_sentence_words"):
    babi.load_arrays([1], data_dir=str(huge), tfds_dir=str(tmp_path / "tfds"))
  # Under the parser's cap (151 words), the estimate from the sizes decides.
  lines = [f"{i} Mary went " + "far " * 148 + f"place{i}." for i in range(1, 21)]
  lines += ["21 Where is Mary?\tplace20\t20"]  # 21 distinct sentences, 25 words
  wide = _write_task(tmp_path / "wide", "en", 1, lines * 2)
  kwargs = dict(data_dir=str(wide), tfds_dir=str(tmp_path / "tfds"), memory_size=20)
  want = arrays_lib.estimate_bytes(4, 20, 151, 3, 21)
  assert want == 4 * 4 * (20 * 151 + 151 + 2 + 3) + 8 * 4 * 21 + 4 * 22 * 151
  with pytest.raises(arrays_lib.ArraysTooLargeError, match=r"4 examples x memory_size=20 x s"):
    babi.load_arrays([1], **kwargs, max_bytes=want - 1)
  with pytest.raises(arrays_lib.ArraysTooLargeError, match="26 words, over max_vocab_size=25"):
    babi.load_arrays([1], **kwargs, max_vocab_size=25)
  monkeypatch.undo()
  got = babi.load_arrays([1], **kwargs, max_bytes=want, max_vocab_size=26)
  assert got.sentence_size == 151 and got.metadata["estimated_bytes"] == want
  actual = sum(a.nbytes for split in (got.train, got.validation, got.test) for a in split.values())
  assert actual <= want  # the estimate bounds the outputs


def test_load_arrays_records_where_the_data_came_from(fake_root, tmp_path):
  import hashlib

  from memjax.data.babi import parse

  arrays = babi.load_arrays([1, 2], data_dir=str(fake_root), tfds_dir=str(tmp_path))
  data = arrays.metadata["data"]
  folder = fake_root / "babi" / "tasks_1-20_v1-2"
  assert data["data_root"] == str(fake_root) and data["source"] == str(folder)
  assert set(data["fingerprints"]) == {"en_qa1", "en_qa2"}
  names = [parse.task_filename("en", t, s) for t in (1, 2) for s in ("train", "test")]
  assert sorted(data["files"]) == sorted(names)
  for name in names:
    raw = (folder / name).read_bytes()
    assert data["files"][name] == {
      "md5": hashlib.md5(raw).hexdigest(),
      "sha256": hashlib.sha256(raw).hexdigest(),
    }
  for directory in data["cache_dirs"].values():
    assert directory.startswith(str(tmp_path))
