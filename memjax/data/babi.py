"""bAbI QA tasks v1.2: a TFDS builder (ArrayRecord, no TensorFlow) and MemN2N arrays.

Three levels, each built on the one before:

* ``Babi``: a ``tfds.core.GeneratorBasedBuilder`` with one config per language folder of
  the official archive and per task (``en_qa1`` .. ``en_qa20``, ``en_joint``, ``en-10k_qa3``,
  ``hn_joint``, ``shuffled-10k_qa19``, ...). It reads the extracted folder or the tar.gz
  from a data root, writes ArrayRecord files and is read with ``tfds.data_source``.
* ``load_examples``: tokenized ``BabiExample`` lists read through the TFDS data source
  (built on first use).
* ``load_arrays``: padded int32 arrays for a MemN2N trainer, with a vocabulary and a seeded
  per-task validation split.

The data root comes from the ``data_dir`` argument or the environment variable
``MEMJAX_DATA_DIR``; the bAbI folder is ``<root>/babi/tasks_1-20_v1-2/`` (or the archive
``<root>/babi/tasks_1-20_v1-2.tar.gz`` or ``<root>/tasks_1-20_v1-2.tar.gz``). With nothing
local, the builder downloads the official archive through the TFDS download manager.

Example::

  arrays = load_arrays(tasks=[1], data_dir="/data", memory_size=50)
  arrays.train["story"].shape  # (900, 50, arrays.sentence_size)

References:
  Weston et al. "Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks",
  arXiv:1502.05698 (2015). Sukhbaatar et al. "End-To-End Memory Networks", NeurIPS 2015.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.proto import tf_example_pb2

from memjax.data.babi_parse import (
  ARCHIVE_NAME,
  ENV_VAR,
  LANGUAGES,
  SPLITS,
  TASK_NAMES,
  URL,
  BabiDataNotFoundError,
  BabiExample,
  BabiSource,
  OutOfVocabularyError,
  RawExample,
  Vocab,
  encode_story,
  find_source,
  missing_data_message,
  parse_babi,
  parse_raw,
  task_filename,
  to_example,
  tokenize,
)

__all__ = [
  "Babi",
  "BabiArrays",
  "BabiConfig",
  "BabiDataNotFoundError",
  "BabiExample",
  "BabiExamples",
  "OutOfVocabularyError",
  "Vocab",
  "config_name",
  "encode_story",
  "load_arrays",
  "load_examples",
  "parse_babi",
  "tokenize",
]

_log = logging.getLogger(__name__)

_CITATION = """\
@article{weston2015towards,
  title={Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks},
  author={Weston, Jason and Bordes, Antoine and Chopra, Sumit and Rush, Alexander M and
          van Merri{\\"e}nboer, Bart and Joulin, Armand and Mikolov, Tomas},
  journal={arXiv preprint arXiv:1502.05698},
  year={2015}
}"""


# ----------------------------------------------------------------------------------------
# TFDS builder.


@dataclasses.dataclass
class BabiConfig(tfds.core.BuilderConfig):
  """One language folder and one task (``task=None``: all 20 tasks, the joint setting).

  Attributes:
    lang: a folder of the archive: en, en-10k, hn, hn-10k, shuffled or shuffled-10k.
    task: 1..20, or None for all tasks.
  """

  lang: str = "en"
  task: int | None = None


def config_name(lang: str, task: int | str) -> str:
  """The Babi config name, e.g. ``('en', 1) -> 'en_qa1'``, ``('en-10k', 'joint')``."""
  if lang not in LANGUAGES:
    raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
  if task == "joint" or task is None:
    return f"{lang}_joint"
  if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or task not in TASK_NAMES:
    raise ValueError(f"task must be an int in 1..20 or 'joint', got {task!r}")
  return f"{lang}_qa{int(task)}"


def _configs() -> list[BabiConfig]:
  out = []
  for lang in LANGUAGES:
    for task in [*TASK_NAMES, None]:
      what = f"task {task} ({TASK_NAMES[task]})" if task else "all 20 tasks (joint)"
      out.append(
        BabiConfig(
          name=config_name(lang, task or "joint"),
          description=f"bAbI v1.2 {lang}/, {what}.",
          lang=lang,
          task=task,
        )
      )
  return out


def _fallback_lang(lang: str) -> str | None:
  return lang[: -len("-10k")] if lang.endswith("-10k") else None


def _reachable(url: str, timeout: float = 5.0) -> tuple[bool, str]:
  """Whether a TCP connection to the URL's host opens within ``timeout`` seconds."""
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True, ""
  except OSError as e:
    return False, f"{parts.hostname}:{port} is unreachable ({e}); offline?"


class Babi(tfds.core.GeneratorBasedBuilder):
  """bAbI QA v1.2 (20 tasks) as a TFDS dataset: one example per question.

  Features: ``story`` (the statements before the question, as written, oldest first),
  ``question``, ``answer`` (lower-cased; list answers such as ``n,w`` stay one string),
  ``supporting`` (0-based indices into ``story``) and ``task`` (1..20). Examples keep file
  order (shuffling disabled), tasks in increasing order for joint configs.

  Where a ``*-10k`` training file is missing (``en-10k/qa3`` in some copies), the 1k file
  of the same language is used instead, a warning is logged and the task is listed in
  ``info.metadata['fallback_tasks']``.

  Args:
    data_root: where to look for the data before ``download_config.manual_dir`` and
      ``$MEMJAX_DATA_DIR`` (see ``memjax.data.babi_parse.find_source`` for the layouts).
    allow_download: download the official archive when nothing is found locally.
    **kwargs: ``config``, ``data_dir``, ... as for any TFDS builder.

  Example::

    builder = Babi(config="en_qa1", data_dir="/tmp/tfds", data_root="/data")
    builder.download_and_prepare(file_format="array_record")
    source = tfds.data_source("babi/en_qa1", data_dir="/tmp/tfds", split="train")
  """

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.2.0": "bAbI tasks v1.2 (Hindi versions, task 16 fixes, 10k folders)."}
  BUILDER_CONFIGS = _configs()
  DEFAULT_CONFIG_NAME = "en_joint"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Put {ARCHIVE_NAME} (from {URL}) or its extracted folder in the manual dir, or set "
    f"${ENV_VAR} to a root holding babi/{ARCHIVE_NAME} or babi/tasks_1-20_v1-2/."
  )

  def __init__(
    self, *, data_root: str | os.PathLike | None = None, allow_download: bool = True, **kwargs: Any
  ):
    self._data_root = data_root
    self._allow_download = allow_download
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file. (TFDS 4.9.10 resolves it through the ``importlib_resources`` backport,
    which it does not install on Python >= 3.9.)"""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description="The 20 bAbI QA tasks (Weston et al. 2015), v1.2.",
      features=tfds.features.FeaturesDict(
        {
          # Tensors, not Sequence(Text): the same data, encoded about 4x faster.
          "story": tfds.features.Tensor(shape=(None,), dtype=np.str_),
          "question": tfds.features.Text(),
          "answer": tfds.features.Text(),
          "supporting": tfds.features.Tensor(shape=(None,), dtype=np.int32),
          "task": np.int32,
        }
      ),
      supervised_keys=None,
      homepage="https://research.facebook.com/downloads/babi/",
      citation=_CITATION,
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=True,
    )

  def _find_source(self, dl_manager: tfds.download.DownloadManager) -> BabiSource:
    roots = [self._data_root]
    try:
      roots.append(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # No or empty manual dir.
      pass
    roots.append(os.environ.get(ENV_VAR) or None)
    looked_in: list[str] = []
    for root in roots:
      source, tried = find_source(root)
      if source is not None:
        return source
      looked_in += tried
    if not self._allow_download:
      raise BabiDataNotFoundError(missing_data_message(self._data_root, looked_in))
    reachable, why = _reachable(URL)
    if not reachable:  # Fail in seconds, not after minutes of download retries.
      raise BabiDataNotFoundError(
        missing_data_message(self._data_root, looked_in, f"Cannot download {URL}: {why}")
      )
    try:
      archive = dl_manager.download(URL)
    except Exception as e:  # Offline, blocked, ...: say what to put where.
      raise BabiDataNotFoundError(
        missing_data_message(self._data_root, looked_in, f"Download of {URL} failed: {e}")
      ) from e
    return BabiSource(archive)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    source = self._find_source(dl_manager)
    lang = self.builder_config.lang
    tasks = [self.builder_config.task] if self.builder_config.task else list(TASK_NAMES)
    wanted = {(t, s): task_filename(lang, t, s) for t in tasks for s in SPLITS}
    files = source.read(list(wanted.values()))
    fallback = _fallback_lang(lang)
    missing_train = [t for t in tasks if files[wanted[t, "train"]] is None]
    fallback_tasks = []
    if missing_train and fallback:
      names = {t: task_filename(fallback, t, "train") for t in missing_train}
      found = source.read(list(names.values()))
      for t, name in names.items():
        if found[name] is not None:
          _log.warning(
            "bAbI %s is missing from %s; task %d trains on the 1k file %s instead.",
            wanted[t, "train"],
            source.path,
            t,
            name,
          )
          wanted[t, "train"] = name
          files[name] = found[name]
          fallback_tasks.append(t)
    absent = [name for name in wanted.values() if files.get(name) is None]
    if absent:
      raise BabiDataNotFoundError(
        f"bAbI files missing from {source.path}: {', '.join(absent)}.\n"
        + missing_data_message(self._data_root, [source.path])
      )
    self.info.metadata["fallback_tasks"] = fallback_tasks
    self.info.metadata["source"] = str(source.path)
    return {
      split: self._generate_examples(
        [(t, wanted[t, split], files[wanted[t, split]]) for t in tasks]
      )
      for split in SPLITS
    }

  def _generate_examples(self, files: list[tuple[int, str, list[str]]]):
    for task, name, lines in files:
      for i, raw in enumerate(parse_raw(lines, name, task)):
        yield (
          f"{task:02d}_{i:06d}",
          {
            "story": np.asarray(raw.story, dtype=object).reshape(len(raw.story)),
            "question": raw.question,
            "answer": raw.answer,
            "supporting": np.asarray(raw.supporting, np.int32),
            "task": task,
          },
        )


# ----------------------------------------------------------------------------------------
# Examples through the TFDS data source.


class BabiExamples(list):
  """A list of BabiExample with ``fallback_tasks``: tasks whose training data came from
  the 1k file because the 10k file was missing (empty when none)."""

  fallback_tasks: tuple[int, ...] = ()


def _prepared_builder(lang: str, task: int | str, data_dir, tfds_dir) -> Babi:
  data_dir = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
  builder = Babi(config=config_name(lang, task), data_dir=tfds_dir, data_root=data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(file_format="array_record")
  return builder


def _fallback_tasks(builder: Babi) -> tuple[int, ...]:
  metadata = builder.info.metadata or {}
  return tuple(int(t) for t in metadata.get("fallback_tasks", ()))


def _decoded_to_raw(r: dict[str, Any]) -> RawExample:
  """A record as decoded by TFDS (``deserialize_example_np``) to a RawExample."""
  return RawExample(
    story=tuple(s.decode("utf-8") for s in r["story"]),
    question=r["question"].decode("utf-8"),
    answer=r["answer"].decode("utf-8"),
    supporting=tuple(int(i) for i in r["supporting"]),
    task=int(r["task"]),
  )


def _proto_to_raw(record: bytes) -> RawExample:
  """A serialized record to a RawExample, parsing the tf.train.Example proto directly.

  TFDS's numpy decoding costs about 5x more per record in Python; ``_read_raw`` checks
  this parse against it before trusting it.
  """
  feature = tf_example_pb2.Example.FromString(record).features.feature

  def strings(key: str) -> tuple[str, ...]:
    return tuple(v.decode("utf-8") for v in feature[key].bytes_list.value)

  (question,), (answer,) = strings("question"), strings("answer")
  return RawExample(
    story=strings("story"),
    question=question,
    answer=answer,
    supporting=tuple(feature["supporting"].int64_list.value),
    task=int(feature["task"].int64_list.value[0]),
  )


def _read_raw(builder: Babi, split: str, fast: bool = True) -> list[RawExample]:
  """Reads a split through ``builder.as_data_source``.

  Args:
    builder: a prepared Babi builder.
    split: a TFDS split ('train', 'test', 'train[:10%]', ...).
    fast: parse the raw records' protos directly (checked against TFDS's decoding on the
      first and last record; falls back to it on any difference) instead of TFDS decoding.

  Returns:
    The examples in order.
  """
  decoded = builder.as_data_source(split=split)
  if fast and len(decoded):
    raw = builder.as_data_source(
      split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    ends = sorted({0, len(raw) - 1})
    try:
      fast = all(_proto_to_raw(raw[i]) == _decoded_to_raw(decoded[i]) for i in ends)
    except (KeyError, ValueError, IndexError, TypeError):
      fast = False
    if not fast:
      _log.warning("bAbI: records do not parse as expected; using TFDS decoding (slower).")
  source, convert = (raw, _proto_to_raw) if fast else (decoded, _decoded_to_raw)
  out = []
  batch = 4096
  for start in range(0, len(source), batch):
    out += map(convert, source.__getitems__(range(start, min(start + batch, len(source)))))
  return out


def _load_raw(task, split, lang, data_dir, tfds_dir) -> tuple[list[RawExample], tuple[int, ...]]:
  builder = _prepared_builder(lang, task, data_dir, tfds_dir)
  fallback = _fallback_tasks(builder)
  if fallback and split.startswith("train"):
    _log.warning(
      "bAbI %s: training data of task(s) %s come from the 1k file (10k file missing).",
      builder.builder_config.name,
      ", ".join(map(str, fallback)),
    )
  return _read_raw(builder, split), (fallback if split.startswith("train") else ())


def load_examples(
  task: int | str,
  split: str,
  lang: str = "en",
  data_dir: str | os.PathLike | None = None,
  tfds_dir: str | os.PathLike | None = None,
) -> BabiExamples:
  """Loads tokenized bAbI examples through the TFDS data source (built on first use).

  Args:
    task: 1..20, or 'joint' for all tasks in task order.
    split: 'train' or 'test' (TFDS slices such as 'train[:10%]' work too).
    lang: a folder of the archive: en, en-10k, hn, hn-10k, shuffled or shuffled-10k.
    data_dir: the data root; defaults to ``$MEMJAX_DATA_DIR``.
    tfds_dir: where TFDS caches the built dataset; defaults to TFDS's (~/tensorflow_datasets).

  Returns:
    BabiExamples (a list of BabiExample, file order) with ``fallback_tasks`` set when a
    10k training file was missing and the 1k file was used (a warning is logged too).

  Raises:
    BabiDataNotFoundError: the data is neither built, local nor downloadable.
  """
  raws, fallback = _load_raw(task, split, lang, data_dir, tfds_dir)
  cache: dict[str, list[str]] = {}
  out = BabiExamples(to_example(raw, cache) for raw in raws)
  out.fallback_tasks = fallback
  return out


# ----------------------------------------------------------------------------------------
# Arrays.


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
      training file), vocab_source, and per split the numbers of examples with truncated
      stories, dropped (truncated away) or truncated supporting facts.
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
) -> BabiArrays:
  """Loads bAbI tasks as padded int32 arrays for MemN2N (Sukhbaatar et al. 2015, sec. 4).

  The vocabulary, when not given, is built over the training AND test words of the
  chosen tasks, as the reference MemN2N implementations do, so every test word has an
  id (an untrained embedding for test-only words). Answers are one token each.

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
    tfds_dir: where TFDS caches the built datasets; defaults to TFDS's.
    supporting_size: columns of ``supporting``; examples with more supporting facts keep
      the first ``supporting_size`` in file order (tasks 7 and 8 have up to 8; such
      examples are counted in ``metadata['truncation']``).

  Returns:
    BabiArrays.

  Raises:
    BabiDataNotFoundError: the data is neither built, local nor downloadable.
    OutOfVocabularyError: ``vocab`` lacks words of the data (all listed).
    ValueError: bad tasks, memory_size or validation_fraction.
  """
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
  if len(tasks) == len(TASK_NAMES):  # One joint build and read instead of 20.
    joint_train, fallback = _load_raw("joint", "train", lang, data_dir, tfds_dir)
    joint_test, _ = _load_raw("joint", "test", lang, data_dir, tfds_dir)
    fallback = list(fallback)
  for t in tasks:
    if len(tasks) == len(TASK_NAMES):
      task_train = [raw for raw in joint_train if raw.task == t]
      task_test = [raw for raw in joint_test if raw.task == t]
    else:
      task_train, fb = _load_raw(t, "train", lang, data_dir, tfds_dir)
      task_test, _ = _load_raw(t, "test", lang, data_dir, tfds_dir)
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
    vocab = Vocab(sorted(words))
  sentence_size = max(len(ws) for ws in tokens.values())

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
