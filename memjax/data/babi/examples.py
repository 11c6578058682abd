"""bAbI examples read back from the TFDS dataset: ``load_examples``.

The ``Babi`` builder prepares the dataset on first use (from ``data_dir`` or
``$MEMJAX_DATA_DIR``, else the official archive, downloaded once into the cache folder);
its records are read through ``builder.as_data_source`` and parsed straight from their
protos (checked against TFDS's own decoding), then tokenized.

The prepared data is keyed by the content of its source files, never by the config name
alone: it lives in ``<cache>/babi_by_content/<key>/babi/<config>/<version>/``, where
``<cache>`` is ``tfds_dir`` (default ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``)
and ``<key>`` the first 16 hex digits of ``parse.fingerprint`` (the SHA-256 of the files'
SHA-256s for a folder, of the archive for a tar.gz). Files that change get a new build;
with no data root and no archive to download, loading fails (a cache is never used
without its source). ``BabiExamples.provenance`` tells what was read.

Example::

  examples = load_examples(task=1, split="test", data_dir="/data")
  examples[0].question  # ['where', 'is', 'mary']
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from memjax.data.babi import builder as builder_lib
from memjax.data.babi.builder import Babi, config_name
from memjax.data.babi.parse import (
  ARCHIVE_NAME,
  DEFAULT_LIMITS,
  ENV_VAR,
  TASK_NAMES,
  URL,
  BabiDataNotFoundError,
  BabiSource,
  ParseLimits,
  RawExample,
  find_source,
  fingerprint,
  missing_data_message,
  to_example,
)

__all__ = ["BabiExamples", "cache_dir", "load_examples", "resolve_source"]

_log = logging.getLogger(__name__)


class BabiExamples(list):
  """A list of BabiExample with ``fallback_tasks``: tasks whose training data came from
  the 1k file because the 10k file was missing (empty when none), and ``provenance``:
  ``data_root`` (None: the downloaded archive), ``source`` (the folder or archive read),
  ``source_kind``, ``fingerprint`` (the content key), ``cache_dir`` (where the prepared
  data is) and ``files`` (the MD5 and SHA-256 of each file read)."""

  fallback_tasks: tuple[int, ...] = ()
  provenance: dict[str, Any] | None = None


CONTENT_FOLDER = "babi_by_content"  # <cache>/babi_by_content/<key>/babi/<config>/<version>
DOWNLOAD_FOLDER = os.path.join(CONTENT_FOLDER, "downloads")  # the official archive, once


def cache_dir(tfds_dir: str | os.PathLike | None = None) -> str:
  """The cache folder: ``tfds_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  if tfds_dir:
    return os.path.abspath(os.fspath(tfds_dir))
  return os.path.abspath(
    os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
  )


def resolve_source(
  data_dir: str | os.PathLike | None, tfds_dir: str | os.PathLike | None, allow_download: bool
) -> tuple[BabiSource, str | None]:
  """The bAbI source to build from, and the data root it was found in.

  Looks in ``data_dir`` (else ``$MEMJAX_DATA_DIR``), then for the official archive
  downloaded before into ``<cache>/babi_by_content/downloads/``; else downloads it there
  (when ``allow_download`` and online).

  Raises:
    BabiDataNotFoundError: none of these, saying what to put where.
  """
  root = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
  source, looked_in = find_source(root)
  if source is not None:
    return source, os.path.abspath(os.fspath(root))
  downloads = os.path.join(cache_dir(tfds_dir), DOWNLOAD_FOLDER)
  archive = os.path.join(downloads, ARCHIVE_NAME)
  if root is not None:
    _log.warning(
      "bAbI: no data under %s (looked in %s); using the official archive (%s) instead.",
      root,
      ", ".join(looked_in),
      archive if os.path.isfile(archive) else URL,
    )
  if os.path.isfile(archive):
    return BabiSource(archive), None
  why = "downloading is off (allow_download=False)"
  if allow_download:
    reachable, why = builder_lib._reachable(URL)
    if reachable:
      try:
        return BabiSource(builder_lib.download_archive(downloads)), None
      except OSError as e:
        why = f"download of {URL} failed: {e}"
  raise BabiDataNotFoundError(
    missing_data_message(
      None if root is None else os.fspath(root),
      [*looked_in, archive],
      f"Cannot download {URL}: {why}. Data prepared before is not used without its source "
      "files: the cache is keyed by their content.",
    )
  )


def _prepared_builder(
  lang: str,
  task: int | str,
  data_dir,
  tfds_dir,
  limits: ParseLimits = DEFAULT_LIMITS,
  allow_download: bool = True,
) -> tuple[Babi, dict[str, Any]]:
  """The prepared builder of the data's content, and the data's provenance."""
  name = config_name(lang, task)
  source, root = resolve_source(data_dir, tfds_dir, allow_download)
  tasks = list(TASK_NAMES) if task == "joint" else [int(task)]
  key = fingerprint(source, lang, tasks)
  directory = os.path.join(cache_dir(tfds_dir), CONTENT_FOLDER, key["fingerprint"][:16])
  builder = Babi(
    config=name, data_dir=directory, data_root=source.path, allow_download=False, limits=limits
  )
  if not builder.is_prepared():
    builder.download_and_prepare(file_format="array_record")
  metadata = builder.info.metadata or {}
  files = {str(k): dict(v) for k, v in (metadata.get("files") or {}).items()}
  if key["kind"] == "folder":
    built = "".join(f"{n}: {files[n]['sha256']}\n" for n in sorted(files))
    if hashlib.sha256(built.encode()).hexdigest() != key["fingerprint"]:
      raise RuntimeError(
        f"the bAbI data prepared in {builder.data_dir} does not match the files in "
        f"{source.path} (they changed while it was built, or the folder was altered): "
        "delete that folder and load again"
      )
  provenance = {
    "data_root": root,
    "source": source.path,
    "source_kind": key["kind"] if root is not None else "download",
    "fingerprint": key["fingerprint"],
    "cache_dir": str(builder.data_dir),
    "files": files,
  }
  if "archive_sha256" in key:
    provenance["archive_sha256"] = key["archive_sha256"]
  return builder, provenance


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


def _load_raw(
  task, split, lang, data_dir, tfds_dir, limits: ParseLimits = DEFAULT_LIMITS
) -> tuple[list[RawExample], tuple[int, ...], dict[str, Any]]:
  """``(raw examples, fallback tasks, provenance)`` of one split (see ``load_examples``)."""
  builder, provenance = _prepared_builder(lang, task, data_dir, tfds_dir, limits)
  fallback = _fallback_tasks(builder)
  if fallback and split.startswith("train"):
    _log.warning(
      "bAbI %s: training data of task(s) %s come from the 1k file (10k file missing).",
      builder.builder_config.name,
      ", ".join(map(str, fallback)),
    )
  fallback = fallback if split.startswith("train") else ()
  return _read_raw(builder, split), fallback, provenance


def load_examples(
  task: int | str,
  split: str,
  lang: str = "en",
  data_dir: str | os.PathLike | None = None,
  tfds_dir: str | os.PathLike | None = None,
  *,
  limits: ParseLimits = DEFAULT_LIMITS,
) -> BabiExamples:
  """Loads tokenized bAbI examples through the TFDS data source (built on first use).

  Args:
    task: 1..20, or 'joint' for all tasks in task order.
    split: 'train' or 'test' (TFDS slices such as 'train[:10%]' work too).
    lang: a folder of the archive: en, en-10k, hn, hn-10k, shuffled or shuffled-10k.
    data_dir: the data root; defaults to ``$MEMJAX_DATA_DIR``.
    tfds_dir: the cache folder of the prepared data (keyed by the files' content, see
      the module docstring); defaults to ``$TFDS_DATA_DIR``, else ~/tensorflow_datasets.
    limits: the parser's size caps (``memjax.data.babi.parse.ParseLimits``).

  Returns:
    BabiExamples (a list of BabiExample, file order) with ``fallback_tasks`` set when a
    10k training file was missing and the 1k file was used (a warning is logged too),
    and ``provenance`` (the data root, the files' checksums, the cache folder).

  Raises:
    BabiDataNotFoundError: the data is neither local nor downloadable.
    BabiFormatError: a malformed file (a ValueError naming its full path and line).
  """
  raws, fallback, provenance = _load_raw(task, split, lang, data_dir, tfds_dir, limits)
  cache: dict[str, list[str]] = {}
  out = BabiExamples(to_example(raw, cache) for raw in raws)
  out.fallback_tasks = fallback
  out.provenance = provenance
  return out
