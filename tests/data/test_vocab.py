"""Tests for memjax.data.vocab."""

from __future__ import annotations

import numpy as np
import pytest

from memjax.data.vocab import PAD, OutOfVocabularyError, Vocab


def test_ids_follow_the_given_order_after_padding():
  vocab = Vocab(["the", "cat", PAD, "the", "sat"])
  assert vocab.words == [PAD, "the", "cat", "sat"] and len(vocab) == 4
  assert vocab.encode(["sat", "the", PAD]).tolist() == [3, 1, 0]
  assert "cat" in vocab and "dog" not in vocab
  assert Vocab().words == [PAD] and repr(vocab) == "Vocab(4 words)"


def test_from_sequences_sorts_distinct_words():
  vocab = Vocab.from_sequences([["b", "a"], [], ("c", "a")])
  assert vocab.words == [PAD, "a", "b", "c"]
  assert vocab == Vocab(["a", "b", "c"]) and vocab != Vocab(["b", "a", "c"])


def test_encode_decode_round_trip_and_errors():
  vocab = Vocab(["where", "is", "mary"])
  ids = vocab.encode(["where", "is", "mary"])
  assert ids.dtype == np.int32 and ids.shape == (3,) and vocab.encode([]).shape == (0,)
  assert vocab.decode(ids) == ["where", "is", "mary"]
  assert vocab.decode(np.array([[1, 0], [0, 3]])) == ["where", PAD, PAD, "mary"]
  assert vocab.decode([1, 0, 0], skip_padding=True) == ["where"]
  with pytest.raises(OutOfVocabularyError, match=r"\['zebra', 'moon'\]") as info:
    vocab.encode(["zebra", "is", "moon", "zebra"])
  assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
  assert vocab.missing(["zebra", "is", "zebra"]) == ["zebra"]
  with pytest.raises(IndexError, match="id 4 is outside"):
    vocab.decode([4])
  with pytest.raises(IndexError, match="id -1 is outside"):
    vocab.decode([-1])


def test_json_round_trip():
  vocab = Vocab(["mary", "cellar", "मैरी"])
  restored = Vocab.from_json(vocab.to_json())
  assert restored == vocab and restored.words == vocab.words
  with pytest.raises(ValueError, match="must start with '<pad>'"):
    Vocab.from_json('{"words": ["mary"]}')
  with pytest.raises(ValueError, match="must start with '<pad>'"):
    Vocab.from_json('{"words": []}')
