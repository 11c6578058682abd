"""bAbI as padded int32 arrays for MemN2N: ``load_arrays``, free-text encoding, length buckets.

``load_arrays`` reads the chosen tasks through the TFDS dataset (``examples``; TFDS is
imported on the first call, not with this module), builds the vocabulary, holds out a
seeded per-task validation split and pads every story to ``[M, S]``. ``encode_story``
encodes your own story the same way; ``length_buckets`` groups a split's examples by story
and sentence length (``memjax.data.buckets``) and cuts each group's padding.

Example::

  arrays = load_arrays(tasks=[1], data_dir="/data", memory_size=50)
  arrays.train["story"].shape  # (900, 50, arrays.sentence_size)
  buckets = length_buckets(arrays.train, (4, 8, 16, 32), 50, word_sizes=(6, 8))

References:
  Sukhbaatar, Szlam, Weston, Fergus. "End-To-End Memory Networks", NeurIPS 2015.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from memjax.data.babi.parse import (
  DEFAULT_LIMITS,
  TASK_NAMES,
  BabiExample,
  ParseLimits,
  RawExample,
  tokenize,
)
from memjax.data.buckets import bucket_by_length
from memjax.data.vocab import OutOfVocabularyError, Vocab

__all__ = [
  "BabiArrays",
  "ArraysTooLargeError",
  "build_vocab",
  "encode_story",
  "estimate_bytes",
  "length_buckets",
  "load_arrays",
]

MAX_BYTES = 8 * 2**30  # load_arrays' default cap on the arrays it allocates
MAX_VOCAB_SIZE = 100_000  # load_arrays' default cap on the vocabulary (bAbI en: 178 words)


class ArraysTooLargeError(ValueError):
  """The arrays (or vocabulary) ``load_arrays`` would build exceed its caps."""


def estimate_bytes(
  num_examples: int, memory_size: int, sentence_size: int, supporting_size: int, num_sentences: int
) -> int:
  """The bytes ``load_arrays`` allocates for ``num_examples`` examples in all splits, at
  their peak: the int32 outputs ``story [E, M, S]``, ``query [E, S]``, ``answer``,
  ``task``, ``supporting [E, P]``, and while encoding the int64 row indices ``[E, M + 1]``
  and the table of the ``num_sentences`` distinct sentences ``[N + 1, S]``.

  Example:
    >>> estimate_bytes(1000, 50, 10, 3, 100)
    2472040
  """
  e, m, s = int(num_examples), int(memory_size), int(sentence_size)
  outputs = 4 * e * (m * s + s + 2 + int(supporting_size))
  return outputs + 8 * e * (m + 1) + 4 * (int(num_sentences) + 1) * s


@dataclasses.dataclass
class BabiArrays:
  """Padded bAbI arrays for MemN2N.

  Each of ``train``, ``validation`` and ``test`` maps names to numpy arrays (E examples,
  M = memory_size, S = sentence_size):

  * ``story``: int32 [E, M, S], the last M statements before the question, oldest first,
    left-aligned; rows past the story and words past a sentence are 0 (padding).
  * ``query``: int32 [E, S]; ``answer``: int32 [E]; ``task``: int32 [E], 1..20.
  * ``supporting``: int32 [E, supporting_size], indices into the story rows, -1 padded
    in file order; facts cut off by the truncation to M rows are left out, so the valid
    indices come first.

  Attributes:
    train: the training arrays minus the validation examples.
    validation: a seeded ``validation_fraction`` of each task's training examples.
    test: the test arrays.
    vocab: the vocabulary (id 0 is padding).
    sentence_size: S, the most words in any statement or question of any split.
    memory_size: M.
    metadata: lang, tasks, fallback_tasks (10k tasks trained on the 1k file),
      num_examples per split and task, validation_indices (per task, into the task's
      training file), vocab_source, per split the numbers of examples with truncated
      stories, dropped (truncated away) or truncated supporting facts, estimated_bytes,
      and ``data``: where the data came from (``data_root``, ``source``, and per TFDS
      config read its content key ``fingerprints`` and ``cache_dirs``; ``files``: the MD5
      and SHA-256 of each file read).
  """

  train: dict[str, np.ndarray]
  validation: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  vocab: Vocab
  sentence_size: int
  memory_size: int
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _check_tasks(tasks: Sequence[int] | int | str) -> list[int]:
  if tasks == "joint":
    return list(TASK_NAMES)
  if isinstance(tasks, (int, np.integer)):
    tasks = [int(tasks)]
  tasks = list(tasks)
  bad = [
    t
    for t in tasks
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or int(t) not in TASK_NAMES
  ]
  if bad or not tasks or len(set(tasks)) != len(tasks):
    raise ValueError(f"tasks must be distinct ints in 1..20 (or 'joint'), got {tasks!r}")
  return [int(t) for t in tasks]


def _encode_split(
  raws: list[RawExample],
  vocab: Vocab,
  memory_size: int,
  sentence_size: int,
  supporting_size: int,
  tokens: dict[str, list[str]],
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
  """Encodes examples; each distinct sentence is tokenized and encoded once."""
  sentence_ids: dict[str, int] = {}
  table_rows: list[np.ndarray] = []

  def sentence_id(sentence: str) -> int:
    if sentence not in sentence_ids:
      ids = vocab.encode(tokens[sentence])
      row = np.zeros(sentence_size, np.int32)
      row[: len(ids)] = ids
      sentence_ids[sentence] = len(table_rows) + 1  # Row 0 is the padding row.
      table_rows.append(row)
    return sentence_ids[sentence]

  n = len(raws)
  story_rows = np.zeros((n, memory_size), np.int64)
  query_rows = np.zeros(n, np.int64)
  answer = np.zeros(n, np.int32)
  task = np.zeros(n, np.int32)
  supporting = np.full((n, supporting_size), -1, np.int32)
  counts = {"truncated_stories": 0, "dropped_supporting": 0, "truncated_supporting": 0}
  for i, raw in enumerate(raws):
    offset = max(0, len(raw.story) - memory_size)
    counts["truncated_stories"] += offset > 0
    kept = raw.story[offset:]
    story_rows[i, : len(kept)] = [sentence_id(s) for s in kept]
    query_rows[i] = sentence_id(raw.question)
    answer[i] = vocab.encode([raw.answer])[0]
    task[i] = raw.task
    facts = [j - offset for j in raw.supporting if j >= offset]
    counts["dropped_supporting"] += len(facts) < len(raw.supporting)
    counts["truncated_supporting"] += len(facts) > supporting_size
    facts = facts[:supporting_size]
    supporting[i, : len(facts)] = facts
  table = np.stack([np.zeros(sentence_size, np.int32), *table_rows])
  arrays = {
    "story": table[story_rows],
    "query": table[query_rows],
    "answer": answer,
    "task": task,
    "supporting": supporting,
  }
  return arrays, counts


def _subset(raws: list[RawExample], indices: Iterable[int]) -> list[RawExample]:
  return [raws[i] for i in indices]


def load_arrays(
  tasks: Sequence[int] | int | str,
  lang: str = "en",
  data_dir: str | os.PathLike | None = None,
  memory_size: int = 50,
  validation_fraction: float = 0.1,
  seed: int = 0,
  vocab: Vocab | None = None,
  *,
  tfds_dir: str | os.PathLike | None = None,
  supporting_size: int = 3,
  limits: ParseLimits = DEFAULT_LIMITS,
  max_bytes: int = MAX_BYTES,
  max_vocab_size: int = MAX_VOCAB_SIZE,
) -> BabiArrays:
  """Loads bAbI tasks as padded int32 arrays for MemN2N (Sukhbaatar et al. 2015, sec. 4).

  The vocabulary, when not given, is built over the training AND test words of the
  chosen tasks, as the reference MemN2N implementations do, so every test word has an
  id (an untrained embedding for test-only words). Answers are one token each: a
  several-word answer (``hn/``: ``'rasoi ghar'``) is one vocabulary entry, its words
  joined by one space.

  Sizes are checked before anything is allocated: the parser caps words per sentence
  and statements per story (``limits``), and the arrays' estimated bytes
  (``estimate_bytes``) and the vocabulary are capped here.

  Args:
    tasks: task numbers in 1..20 (an int or 'joint' = all 20 are accepted too).
    lang: a folder of the archive: en, en-10k, hn, hn-10k, shuffled or shuffled-10k.
    data_dir: the data root; defaults to ``$MEMJAX_DATA_DIR``.
    memory_size: M, the most recent statements kept per question.
    validation_fraction: the fraction of each task's training examples held out (seeded,
      per task, so a joint validation set holds every task).
    seed: the validation split's seed.
    vocab: a vocabulary to encode with (e.g. restored from a checkpoint); it must cover
      every word of the chosen tasks.
    tfds_dir: the cache folder of the prepared data, keyed there by the source files'
      content (``memjax.data.babi.examples``); defaults to ``$TFDS_DATA_DIR``, else
      ~/tensorflow_datasets.
    supporting_size: columns of ``supporting``; examples with more supporting facts keep
      the first ``supporting_size`` in file order (tasks 7 and 8 have up to 8; such
      examples are counted in ``metadata['truncation']``).
    limits: the parser's size caps (``memjax.data.babi.parse.ParseLimits``).
    max_bytes: the most bytes the arrays may take (``estimate_bytes``; default 8 GiB).
    max_vocab_size: the most words the vocabulary may hold (default 100,000).

  Returns:
    BabiArrays.

  Raises:
    BabiDataNotFoundError: the data is neither local nor downloadable.
    BabiFormatError: a malformed file (a ValueError naming its full path and line).
    ArraysTooLargeError: (a ValueError) the arrays would exceed ``max_bytes`` or the
      vocabulary ``max_vocab_size``; raised before allocating them.
    OutOfVocabularyError: ``vocab`` lacks words of the data (all listed).
    ValueError: bad tasks, memory_size or validation_fraction.
  """
  from memjax.data.babi.examples import _load_raw  # TFDS: imported on first use

  tasks = _check_tasks(tasks)
  if isinstance(memory_size, bool) or not isinstance(memory_size, (int, np.integer)):
    raise ValueError(f"memory_size must be a positive int, got {memory_size!r}")
  memory_size = int(memory_size)
  if memory_size < 1:
    raise ValueError(f"memory_size must be a positive int, got {memory_size!r}")
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
  if supporting_size < 0:
    raise ValueError(f"supporting_size must be >= 0, got {supporting_size}")

  train, test, fallback, train_idx, val_idx = [], [], [], [], []
  counts: dict[str, dict[int, int]] = {"train": {}, "validation": {}, "test": {}}
  validation_indices: dict[int, list[int]] = {}
  provenances: dict[str, dict[str, Any]] = {}

  def load(task, split):
    raws, fb, provenance = _load_raw(task, split, lang, data_dir, tfds_dir, limits)
    provenances[f"{lang}_{'joint' if task == 'joint' else f'qa{task}'}"] = provenance
    return raws, list(fb)

  if len(tasks) == len(TASK_NAMES):  # One joint build and read instead of 20.
    joint_train, fallback = load("joint", "train")
    joint_test, _ = load("joint", "test")
  for t in tasks:
    if len(tasks) == len(TASK_NAMES):
      task_train = [raw for raw in joint_train if raw.task == t]
      task_test = [raw for raw in joint_test if raw.task == t]
    else:
      task_train, fb = load(t, "train")
      task_test, _ = load(t, "test")
      fallback += fb
    n = len(task_train)
    n_val = int(round(validation_fraction * n))
    perm = np.random.default_rng([seed, t]).permutation(n)
    val = set(perm[:n_val].tolist())
    validation_indices[t] = sorted(val)
    train_idx += [len(train) + i for i in range(n) if i not in val]
    val_idx += sorted(len(train) + i for i in val)
    counts["train"][t], counts["validation"][t], counts["test"][t] = (
      n - n_val,
      n_val,
      len(task_test),
    )
    train += task_train
    test += task_test

  tokens: dict[str, list[str]] = {}
  for raw in (*train, *test):
    for sentence in (*raw.story, raw.question):
      if sentence not in tokens:
        tokens[sentence] = tokenize(sentence)
  vocab_source = "given"
  if vocab is None:
    vocab_source = "train+test"
    words = {w for ws in tokens.values() for w in ws} | {raw.answer for raw in (*train, *test)}
    if len(words) + 1 > max_vocab_size:
      raise ArraysTooLargeError(
        f"the vocabulary of bAbI {lang} tasks {tasks} would hold {len(words) + 1} words, "
        f"over max_vocab_size={max_vocab_size}; raise max_vocab_size if that is meant"
      )
    vocab = Vocab(sorted(words))
  longest = max(tokens, key=lambda sentence: len(tokens[sentence]))
  sentence_size = len(tokens[longest])
  needed = estimate_bytes(
    len(train) + len(test), memory_size, sentence_size, supporting_size, len(tokens)
  )
  if needed > max_bytes:
    raise ArraysTooLargeError(
      f"the arrays of bAbI {lang} tasks {tasks} would take {needed / 2**30:.2f} GiB "
      f"({len(train) + len(test)} examples x memory_size={memory_size} x "
      f"sentence_size={sentence_size} words, the longest sentence being "
      f"{' '.join(tokens[longest][:8])!r}...), over max_bytes={max_bytes / 2**30:.2f} GiB; "
      "lower memory_size, fix the data, or raise max_bytes"
    )

  splits, truncation = {}, {}
  for name, raws in (
    ("train", _subset(train, train_idx)),
    ("validation", _subset(train, val_idx)),
    ("test", test),
  ):
    splits[name], truncation[name] = _encode_split(
      raws, vocab, memory_size, sentence_size, supporting_size, tokens
    )
  metadata = {
    "lang": lang,
    "tasks": tasks,
    "fallback_tasks": sorted(set(fallback)),
    "num_examples": counts,
    "vocab_source": vocab_source,
    "validation_fraction": validation_fraction,
    "validation_indices": validation_indices,
    "seed": seed,
    "supporting_size": supporting_size,
    "truncation": truncation,
    "estimated_bytes": needed,
    "data": _merge_provenance(provenances),
  }
  return BabiArrays(
    train=splits["train"],
    validation=splits["validation"],
    test=splits["test"],
    vocab=vocab,
    sentence_size=sentence_size,
    memory_size=memory_size,
    metadata=metadata,
  )


def _merge_provenance(provenances: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """One record of where the data came from, for every TFDS config read."""
  first = next(iter(provenances.values()))
  files: dict[str, Any] = {}
  for provenance in provenances.values():
    files.update(provenance["files"])
  out = {
    "data_root": first["data_root"],
    "source": first["source"],
    "source_kind": first["source_kind"],
    "fingerprints": {name: p["fingerprint"] for name, p in sorted(provenances.items())},
    "cache_dirs": {name: p["cache_dir"] for name, p in sorted(provenances.items())},
    "files": dict(sorted(files.items())),
  }
  if "archive_sha256" in first:
    out["archive_sha256"] = first["archive_sha256"]
  return out


def build_vocab(examples: Iterable[BabiExample]) -> Vocab:
  """The sorted words of the stories, questions and answers of ``examples``."""

  def sequences():
    for ex in examples:
      yield from ex.story
      yield ex.question
      yield [ex.answer]

  return Vocab.from_sequences(sequences())


def encode_story(
  sentences: Sequence[str],
  question: str,
  vocab: Vocab,
  memory_size: int,
  sentence_size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Encodes a free-text story and question like ``load_arrays`` does, for interactive use.

  Args:
    sentences: the statements, oldest first (``'Mary went to the kitchen.'``); only the
      last ``memory_size`` are kept.
    question: e.g. ``'Where is Mary?'``.
    vocab: the vocabulary of the trained model.
    memory_size: M.
    sentence_size: S.

  Returns:
    ``(story [M, S], query [S])`` int32, zero padded.

  Raises:
    OutOfVocabularyError: (a KeyError and ValueError) listing the unknown words.
    ValueError: a sentence or the question has more than ``sentence_size`` words.
  """
  story_words = [tokenize(s) for s in sentences][-memory_size:] if memory_size else []
  query_words = tokenize(question)
  missing = vocab.missing([w for ws in (*story_words, query_words) for w in ws])
  if missing:
    raise OutOfVocabularyError(f"words not in the vocabulary ({len(vocab)} words): {missing}")
  too_long = [" ".join(ws) for ws in (*story_words, query_words) if len(ws) > sentence_size]
  if too_long:
    raise ValueError(f"sentences longer than sentence_size={sentence_size}: {too_long}")
  story = np.zeros((memory_size, sentence_size), np.int32)
  for i, ws in enumerate(story_words):
    story[i, : len(ws)] = vocab.encode(ws)
  query = np.zeros(sentence_size, np.int32)
  query[: len(query_words)] = vocab.encode(query_words)
  return story, query


def length_buckets(
  split: dict[str, np.ndarray],
  sizes: Sequence[int],
  memory_size: int,
  word_sizes: Sequence[int] = (),
) -> list[dict[str, np.ndarray]]:
  """Splits examples by story length (and sentence length): cuts each bucket's padding.

  Stories are left-aligned, so a story of n <= M_b sentences loses nothing when cut to
  M_b rows, and the model's answer is unchanged; most bAbI stories are short (median 7
  sentences in en), so this saves most of the work on empty memory rows. Sentences and
  questions are left-aligned too: each bucket is cut to its longest one, and
  ``word_sizes`` splits the buckets further by that length (bAbI en: half the examples
  have no sentence over 7 words, a tenth have one of 10-11), so short sentences are not
  padded to the longest in the data. The grouping is ``memjax.data.buckets``'s
  ``bucket_by_length`` over (story rows, longest sentence or question).

  Args:
    split: arrays with ``story [E, M, S]``, ``query [E, S]``, ``answer [E]``.
    sizes: bucket row counts (those >= memory_size are dropped; memory_size is added).
    memory_size: M.
    word_sizes: bucket sentence lengths (words); () = one per row bucket.

  Returns:
    The non-empty buckets, ordered by (rows, words), each a dict of numpy arrays
    ``story [E_b, M_b, S_b]``, ``query [E_b, S_b]``, ``answer [E_b]`` (examples in their
    order in ``split``; M_b, S_b >= 1 the bucket's longest story and sentence).

  Raises:
    ValueError: a story has more than ``memory_size`` non-empty rows.
  """
  story, query = split["story"], split["query"]
  sizes = sorted({int(x) for x in sizes if 0 < x < memory_size} | {memory_size})
  longest = story.shape[-1]
  word_sizes = sorted({int(x) for x in word_sizes if 0 < x < longest} | {longest})
  rows = np.sum(np.any(story != 0, axis=-1), axis=-1)  # [E] non-empty story rows
  words = np.maximum(  # [E] the longest sentence or question
    np.max(np.sum(story != 0, axis=-1), axis=-1), np.sum(query != 0, axis=-1)
  )
  out = []
  for indices, (max_rows, max_words) in bucket_by_length(
    np.stack([rows, words], axis=1), [sizes, word_sizes]
  ):
    m, s = max(1, max_rows), max(1, max_words)  # no bucket keeps an axis empty in all
    out.append(
      {
        "story": story[indices, :m, :s],
        "query": query[indices, :s],
        "answer": split["answer"][indices],
      }
    )
  return out
