"""bAbI examples read back from the TFDS dataset: ``load_examples``.

The ``Babi`` builder prepares the dataset on first use (from ``data_dir`` or
``$MEMJAX_DATA_DIR``, else the official archive's URL); its records are read through
``builder.as_data_source`` and parsed straight from their protos (checked against TFDS's
own decoding), then tokenized.

Example::

  examples = load_examples(task=1, split="test", data_dir="/data")
  examples[0].question  # ['where', 'is', 'mary']
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from memjax.data.babi.builder import Babi, config_name
from memjax.data.babi.parse import ENV_VAR, RawExample, to_example

__all__ = ["BabiExamples", "load_examples"]

_log = logging.getLogger(__name__)


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
