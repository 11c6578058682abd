"""A word vocabulary: words <-> int32 ids, id 0 the padding word ``'<pad>'``.

Shared by the datasets that feed token ids to a model (bAbI, text corpora): the ids
are positions in a word list, saved as JSON next to a checkpoint and restored with it.

Example:
  >>> vocab = Vocab.from_sequences([["mary", "went", "home"], ["where", "is", "mary"]])
  >>> vocab.words
  ['<pad>', 'home', 'is', 'mary', 'went', 'where']
  >>> vocab.encode(["where", "is", "mary"])
  array([5, 2, 3], dtype=int32)
  >>> vocab.decode([5, 2, 3, 0], skip_padding=True)
  ['where', 'is', 'mary']
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

PAD = "<pad>"


class OutOfVocabularyError(KeyError, ValueError):
  """Words missing from a Vocab (all listed in the message)."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


class Vocab:
  """Words <-> ids; id 0 is the padding word ``'<pad>'``.

  Args:
    words: the words in id order starting at id 1 (duplicates and ``'<pad>'`` are skipped).
  """

  def __init__(self, words: Iterable[str] = ()):
    self._words = [PAD]
    self._ids = {PAD: 0}
    for word in words:
      if word not in self._ids:
        self._ids[word] = len(self._words)
        self._words.append(word)

  @classmethod
  def from_sequences(cls, sequences: Iterable[Iterable[str]]) -> Vocab:
    """The sorted distinct words of token sequences (sentences, documents, ...).

    Args:
      sequences: sequences of words, e.g. ``[['mary', 'went'], ['where', 'is', 'mary']]``.

    Returns:
      A Vocab with ids 1.. in sorted word order.
    """
    words: set[str] = set()
    for sequence in sequences:
      words.update(sequence)
    return cls(sorted(words))

  @property
  def words(self) -> list[str]:
    """All words in id order (``words[0] == '<pad>'``)."""
    return list(self._words)

  def __len__(self) -> int:
    return len(self._words)

  def __contains__(self, word: str) -> bool:
    return word in self._ids

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Vocab) and self._words == other._words

  def __repr__(self) -> str:
    return f"Vocab({len(self)} words)"

  def missing(self, words: Iterable[str]) -> list[str]:
    """The distinct words not in the vocabulary, in first-seen order."""
    return list(dict.fromkeys(w for w in words if w not in self._ids))

  def encode(self, words: Iterable[str]) -> np.ndarray:
    """Maps words to ids.

    Args:
      words: a sequence of L words.

    Returns:
      int32 ids, shape [L].

    Raises:
      OutOfVocabularyError: (a KeyError and ValueError) listing every unknown word.
    """
    words = list(words)
    missing = self.missing(words)
    if missing:
      raise OutOfVocabularyError(f"words not in the vocabulary ({len(self)} words): {missing}")
    return np.asarray([self._ids[w] for w in words], np.int32).reshape(len(words))

  def decode(self, ids: Iterable[int] | np.ndarray, skip_padding: bool = False) -> list[str]:
    """Maps ids to words.

    Args:
      ids: [L] ids (any shape is flattened).
      skip_padding: drop id 0.

    Returns:
      The words.

    Raises:
      IndexError: an id outside ``[0, len(self))``.
    """
    out = []
    for i in np.asarray(ids, np.int64).reshape(-1).tolist():
      if not 0 <= i < len(self._words):
        raise IndexError(f"id {i} is outside the vocabulary of {len(self)} words")
      if i or not skip_padding:
        out.append(self._words[i])
    return out

  def to_json(self) -> str:
    """A JSON string ``{"words": [...]}`` (id order) to save next to a checkpoint."""
    return json.dumps({"words": self._words})

  @classmethod
  def from_json(cls, text: str) -> Vocab:
    """Inverse of ``to_json``.

    Raises:
      ValueError: the word list does not start with ``'<pad>'``.
    """
    words = json.loads(text)["words"]
    if not words or words[0] != PAD:
      raise ValueError(f"a Vocab JSON must start with {PAD!r}, got {words[:1]}")
    return cls(words[1:])
