"""Tests for memjax.data.babi.synthetic: generated task-1-like data."""

from __future__ import annotations

import numpy as np

from memjax.data import babi
from memjax.data.babi import synthetic


def test_synthetic_arrays_layout_and_vocab():
  data = synthetic.load_arrays(num_train=100, num_test=30, memory_size=4, seed=5)
  assert isinstance(data, babi.BabiArrays) and isinstance(data.vocab, babi.Vocab)
  words = {*synthetic.PEOPLE, *synthetic.VERBS, *synthetic.PLACES, "to", "the", "where", "is"}
  assert data.vocab.words == ["<pad>", *sorted(words)]
  assert (data.sentence_size, data.memory_size) == (6, 4)
  for split, n in ((data.train, 90), (data.validation, 10), (data.test, 30)):
    assert split["story"].shape == (n, 4, 6) and split["query"].shape == (n, 6)
    assert split["supporting"].shape == (n, 3) and (split["task"] == 1).all()
    for key in ("story", "query", "answer", "task", "supporting"):
      assert split[key].dtype == np.int32, key
    filled = (split["story"] != 0).any(-1)
    assert (np.diff(filled.astype(int), axis=1) <= 0).all()  # left-aligned
    assert (split["supporting"][:, 1:] == -1).all()


def test_synthetic_answer_is_the_last_place_of_the_asked_person():
  data = synthetic.load_arrays(num_train=200, num_test=10, memory_size=10, seed=1)
  vocab, train = data.vocab, data.train
  for i in range(len(train["answer"])):
    story = [vocab.decode(row, skip_padding=True) for row in train["story"][i]]
    story = [s for s in story if s]
    where, is_, who = vocab.decode(train["query"][i], skip_padding=True)
    assert (where, is_) == ("where", "is")
    last = max(j for j, s in enumerate(story) if s[0] == who)
    assert train["supporting"][i, 0] == last
    assert vocab.decode([train["answer"][i]]) == [story[last][-1]]


def test_synthetic_is_seeded_and_test_reuses_the_vocab():
  a = synthetic.load_arrays(num_train=50, num_test=20, seed=2)
  b = synthetic.load_arrays(num_train=50, num_test=20, seed=2)
  c = synthetic.load_arrays(num_train=50, num_test=20, seed=3)
  np.testing.assert_array_equal(a.train["story"], b.train["story"])
  assert not np.array_equal(a.train["story"], c.train["story"])
  test, vocab = synthetic.generate(20, seed=3, vocab=a.vocab)
  assert vocab is a.vocab
  np.testing.assert_array_equal(test["story"], a.test["story"])
