"""bAbI QA tasks v1.2 as a TFDS dataset (ArrayRecord, no TensorFlow): the ``Babi`` builder.

One config per language folder of the official archive and per task (``en_qa1`` ..
``en_qa20``, ``en_joint``, ``en-10k_qa3``, ``hn_joint``, ``shuffled-10k_qa19``, ...). The
builder reads the extracted folder or the tar.gz from a data root (``parse.find_source``),
or downloads the official archive through the TFDS download manager; it writes ArrayRecord
files read with ``tfds.data_source`` (``examples.load_examples`` does that for you).

Example::

  builder = Babi(config="en_qa1", data_dir="/tmp/tfds", data_root="/data")
  builder.download_and_prepare(file_format="array_record")
  source = tfds.data_source("babi/en_qa1", data_dir="/tmp/tfds", split="train")

References:
  Weston et al. "Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks",
  arXiv:1502.05698 (2015).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import socket
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from memjax.data.babi.parse import (
  ARCHIVE_NAME,
  DEFAULT_LIMITS,
  ENV_VAR,
  LANGUAGES,
  SPLITS,
  TASK_NAMES,
  URL,
  BabiDataNotFoundError,
  BabiSource,
  ParseLimits,
  RawExample,
  file_digests,
  find_source,
  missing_data_message,
  parse_raw,
  split_lines,
  task_filename,
)

__all__ = ["Babi", "BabiConfig", "config_name", "download_archive"]

_log = logging.getLogger(__name__)

_CITATION = """\
@article{weston2015towards,
  title={Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks},
  author={Weston, Jason and Bordes, Antoine and Chopra, Sumit and Rush, Alexander M and
          van Merri{\\"e}nboer, Bart and Joulin, Armand and Mikolov, Tomas},
  journal={arXiv preprint arXiv:1502.05698},
  year={2015}
}"""


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


def download_archive(directory: str | os.PathLike, timeout: float = 60.0) -> str:
  """Downloads the official archive to ``<directory>/tasks_1-20_v1-2.tar.gz`` (written
  to a temporary name, then renamed: an interrupted download leaves no archive).

  Returns:
    The archive's path.

  Raises:
    OSError: the download failed.
  """
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, ARCHIVE_NAME)
  partial = f"{path}.incomplete-{os.getpid()}"
  try:
    with urllib.request.urlopen(URL, timeout=timeout) as response, open(partial, "wb") as f:
      shutil.copyfileobj(response, f)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return path


class Babi(tfds.core.GeneratorBasedBuilder):
  """bAbI QA v1.2 (20 tasks) as a TFDS dataset: one example per question.

  Features: ``story`` (the statements before the question, as written, oldest first),
  ``question``, ``answer`` (lower-cased; list answers such as ``n,w`` stay one string),
  ``supporting`` (0-based indices into ``story``) and ``task`` (1..20). Examples keep file
  order (shuffling disabled), tasks in increasing order for joint configs.

  Where a ``*-10k`` training file is missing (``en-10k/qa3`` in some copies), the 1k file
  of the same language is used instead, a warning is logged and the task is listed in
  ``info.metadata['fallback_tasks']``.

  ``info.metadata`` records the source (``source``) and the MD5 and SHA-256 of every file
  read (``files``). A malformed file fails the build with a ``BabiFormatError`` naming its
  full path and line (``memjax.data.babi.parse``).

  The prepared data is cached in ``data_dir`` under the config name, as for any TFDS
  builder; ``memjax.data.babi.load_examples`` and ``load_arrays`` give each content of the
  source files its own ``data_dir`` (so data from another root is never mistaken for it).

  Args:
    data_root: where to look for the data before ``download_config.manual_dir`` and
      ``$MEMJAX_DATA_DIR`` (see ``memjax.data.babi.parse.find_source`` for the layouts).
    allow_download: download the official archive when nothing is found locally.
    limits: the parser's size caps (``memjax.data.babi.parse.ParseLimits``).
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
    self,
    *,
    data_root: str | os.PathLike | None = None,
    allow_download: bool = True,
    limits: ParseLimits = DEFAULT_LIMITS,
    **kwargs: Any,
  ):
    self._data_root = data_root
    self._allow_download = allow_download
    self._limits = limits
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
    files = source.read_bytes(list(wanted.values()))
    fallback = _fallback_lang(lang)
    missing_train = [t for t in tasks if files[wanted[t, "train"]] is None]
    fallback_tasks = []
    if missing_train and fallback:
      names = {t: task_filename(fallback, t, "train") for t in missing_train}
      found = source.read_bytes(list(names.values()))
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
    # Parse every file now: a malformed one fails here, naming its full path and line,
    # before TFDS writes anything.
    parsed = {
      name: parse_raw(split_lines(files[name]), source.display_path(name), task, self._limits)
      for (task, _), name in wanted.items()
    }
    self.info.metadata["fallback_tasks"] = fallback_tasks
    self.info.metadata["source"] = str(source.path)
    self.info.metadata["files"] = {
      name: file_digests(files[name]) for name in sorted(set(wanted.values()))
    }
    return {
      split: self._generate_examples([(t, parsed[wanted[t, split]]) for t in tasks])
      for split in SPLITS
    }

  def _generate_examples(self, files: list[tuple[int, list[RawExample]]]):
    for task, raws in files:
      for i, raw in enumerate(raws):
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
