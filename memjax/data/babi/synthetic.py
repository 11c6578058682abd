"""Generated task-1-like bAbI data ("Where is Mary?") in the arrays of ``load_arrays``.

For tests, notebooks and smoke runs without the real files: the stories follow bAbI
task 1 (single supporting fact): people move between places, and the question asks
where one of them is now. The result is a ``BabiArrays`` with the layout of
``memjax.data.babi.load_arrays``: ``story [E, M, S]`` (last M sentences oldest first,
left-aligned, empty rows after), ``query [E, S]``, ``answer [E]``, ``task [E]``,
``supporting [E, 3]``, and a ``Vocab`` of the generator's words in sorted order.

Example::

  data = load_arrays(num_train=1000, num_test=500, memory_size=10, seed=0)
  data.train["story"].shape  # (900, 10, 6)
"""

from __future__ import annotations

import numpy as np

from memjax.data.babi.arrays import BabiArrays
from memjax.data.babi.parse import tokenize
from memjax.data.vocab import Vocab

__all__ = ["PEOPLE", "PLACES", "VERBS", "generate", "load_arrays"]

PEOPLE = ("mary", "john", "sandra", "daniel")
VERBS = ("moved", "went", "journeyed", "travelled")
PLACES = ("bathroom", "hallway", "kitchen", "office", "garden", "bedroom")
_OTHER_WORDS = ("to", "the", "where", "is")
_SENTENCE_SIZE = 6  # "<person> <verb> to the <place>", "where is <person>"


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
  vocab: Vocab | None = None,
) -> tuple[dict[str, np.ndarray], Vocab]:
  """``num_examples`` task-1-like examples as arrays (and the vocabulary).

  Args:
    num_examples: E.
    memory_size: M, memory rows kept (the last M sentences).
    max_sentences: the longest story (stories have 2..max_sentences sentences).
    seed: numpy seed.
    vocab: a vocabulary to reuse (default: every word of the generator, sorted).

  Returns:
    ``(arrays, vocab)`` with ``story [E, M, 6]``, ``query [E, 6]``, ``answer [E]``,
    ``task [E]`` (all 1) and ``supporting [E, 3]`` (the supporting row, then -1s).
  """
  if vocab is None:
    vocab = Vocab(sorted({*PEOPLE, *VERBS, *PLACES, *_OTHER_WORDS}))
  rng = np.random.default_rng(seed)
  story = np.zeros((num_examples, memory_size, _SENTENCE_SIZE), np.int32)
  query = np.zeros((num_examples, _SENTENCE_SIZE), np.int32)
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
) -> BabiArrays:
  """Train (less a validation share), validation and test splits of generated data.

  Args:
    num_train: examples generated for training; the first
      ``round(num_train * validation_fraction)`` of them are the validation split.
    num_test: test examples (generated with ``seed + 1``).
    memory_size: M, memory rows kept (the last M sentences).
    max_sentences: the longest story (stories have 2..max_sentences sentences).
    validation_fraction: the share of ``num_train`` held out.
    seed: numpy seed of the training examples.

  Returns:
    BabiArrays with ``sentence_size`` 6 and ``metadata['source']`` saying it is generated.
  """
  train, vocab = generate(num_train, memory_size, max_sentences, seed)
  test, _ = generate(num_test, memory_size, max_sentences, seed + 1, vocab)
  n_val = int(round(num_train * validation_fraction))
  validation = {k: v[:n_val] for k, v in train.items()}
  train = {k: v[n_val:] for k, v in train.items()}
  return BabiArrays(
    train=train,
    validation=validation,
    test=test,
    vocab=vocab,
    sentence_size=train["story"].shape[-1],
    memory_size=memory_size,
    metadata={"source": "synthetic task-1-like generator"},
  )
