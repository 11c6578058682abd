"""Generated task-1-like bAbI data ("Where is Mary?") in the arrays of memjax.data.babi.

For tests, the notebook and smoke runs without the real files: the stories follow
bAbI task 1 (single supporting fact): people move between places, and the question
asks where one of them is now. The arrays have the layout of
``memjax.data.babi.load_arrays``: ``story [E, M, S]`` (last M sentences oldest first,
left-aligned, empty rows after), ``query [E, S]``, ``answer [E]``, ``task [E]``,
``supporting [E, 3]``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

PEOPLE = ("mary", "john", "sandra", "daniel")
VERBS = ("moved", "went", "journeyed", "travelled")
PLACES = ("bathroom", "hallway", "kitchen", "office", "garden", "bedroom")


class WordVocab:
  """Words <-> ids with id 0 = ``'<pad>'`` (the interface of ``memjax.data.babi.Vocab``)."""

  def __init__(self, words=()):
    self.words = ["<pad>"] + sorted(set(words) - {"<pad>"})
    self._ids = {w: i for i, w in enumerate(self.words)}

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, words) -> np.ndarray:
    """int32 ids [L] of a sequence of words (KeyError names an unknown word)."""
    return np.asarray([self._ids[w] for w in words], np.int32).reshape(-1)

  def decode(self, ids, skip_padding: bool = False) -> list[str]:
    """Words of ids [L]; ``skip_padding`` drops id 0."""
    ids = np.asarray(ids, np.int64).reshape(-1).tolist()
    return [self.words[i] for i in ids if i or not skip_padding]

  def to_json(self) -> str:
    return json.dumps({"words": self.words})

  @classmethod
  def from_json(cls, text: str) -> WordVocab:
    return cls(json.loads(text)["words"])


@dataclasses.dataclass
class SyntheticArrays:
  """Train/validation/test splits with the fields of ``memjax.data.babi.BabiArrays``."""

  train: dict
  validation: dict
  test: dict
  vocab: WordVocab
  sentence_size: int
  memory_size: int
  metadata: dict


def tokenize(text: str) -> list[str]:
  """Lower-case words, with '.' and '?' dropped."""
  return text.lower().replace(".", " ").replace("?", " ").split()


def _story(rng: np.random.Generator, max_sentences: int):
  n = int(rng.integers(2, max_sentences + 1))
  sentences, where, last = [], {}, {}
  for i in range(n):
    person = PEOPLE[rng.integers(len(PEOPLE))]
    place = PLACES[rng.integers(len(PLACES))]
    sentences.append(f"{person} {VERBS[rng.integers(len(VERBS))]} to the {place}")
    where[person], last[person] = place, i
  person = list(where)[rng.integers(len(where))]
  return sentences, f"where is {person}", where[person], last[person]


def generate(
  num_examples: int,
  memory_size: int = 10,
  max_sentences: int = 10,
  seed: int = 0,
  vocab: WordVocab | None = None,
) -> tuple[dict, WordVocab]:
  """``num_examples`` task-1-like examples as arrays (and the vocabulary).

  Args:
    num_examples: E.
    memory_size: M, memory rows kept (the last M sentences).
    max_sentences: the longest story (stories have 2..max_sentences sentences).
    seed: numpy seed.
    vocab: a vocabulary to reuse (default: every word of the generator).

  Returns:
    ``(arrays, vocab)`` with ``story [E, M, 6]``, ``query [E, 6]``, ``answer [E]``,
    ``task [E]`` (all 1) and ``supporting [E, 3]`` (the supporting row, then -1s).
  """
  vocab = vocab or WordVocab(
    list(PEOPLE) + list(VERBS) + list(PLACES) + ["to", "the", "where", "is"]
  )
  sentence_size = 6
  rng = np.random.default_rng(seed)
  story = np.zeros((num_examples, memory_size, sentence_size), np.int32)
  query = np.zeros((num_examples, sentence_size), np.int32)
  answer = np.zeros((num_examples,), np.int32)
  supporting = np.full((num_examples, 3), -1, np.int32)
  for e in range(num_examples):
    sentences, question, ans, support = _story(rng, max_sentences)
    kept = sentences[-memory_size:]
    for i, s in enumerate(kept):
      ids = vocab.encode(tokenize(s))
      story[e, i, : len(ids)] = ids
    q = vocab.encode(tokenize(question))
    query[e, : len(q)] = q
    answer[e] = vocab.encode([ans])[0]
    supporting[e, 0] = support - (len(sentences) - len(kept))
  arrays = {
    "story": story,
    "query": query,
    "answer": answer,
    "task": np.ones((num_examples,), np.int32),
    "supporting": supporting,
  }
  return arrays, vocab


def load_arrays(
  num_train: int = 1000,
  num_test: int = 1000,
  memory_size: int = 10,
  max_sentences: int = 10,
  validation_fraction: float = 0.1,
  seed: int = 0,
) -> SyntheticArrays:
  """Train (less a validation share), validation and test splits of generated data."""
  train, vocab = generate(num_train, memory_size, max_sentences, seed)
  test, _ = generate(num_test, memory_size, max_sentences, seed + 1, vocab)
  n_val = int(round(num_train * validation_fraction))
  validation = {k: v[:n_val] for k, v in train.items()}
  train = {k: v[n_val:] for k, v in train.items()}
  return SyntheticArrays(
    train=train,
    validation=validation,
    test=test,
    vocab=vocab,
    sentence_size=train["story"].shape[-1],
    memory_size=memory_size,
    metadata={"source": "synthetic task-1-like generator"},
  )


def encode(text_sentences, question, vocab, memory_size, sentence_size):
  """Encodes free text into ``(story [M, S], query [S])`` with this vocabulary."""
  story = np.zeros((memory_size, sentence_size), np.int32)
  for i, s in enumerate(list(text_sentences)[-memory_size:]):
    ids = vocab.encode(tokenize(s))[:sentence_size]
    story[i, : len(ids)] = ids
  query = np.zeros((sentence_size,), np.int32)
  q = vocab.encode(tokenize(question))[:sentence_size]
  query[: len(q)] = q
  return story, query
