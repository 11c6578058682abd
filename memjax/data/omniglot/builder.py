"""Omniglot as a TFDS dataset (ArrayRecord, no TensorFlow): the ``Omniglot`` builder.

One example per character (de-duplicated across the zips, see ``source``), keyed and
ordered by ``<Alphabet>/<character>``, in the single split ``train``. The builder reads
the official zips present in a folder (``zip_dir``, else the download config's
``manual_dir``, else ``$MEMJAX_DATA_DIR/omniglot``), or downloads ``images_background.zip``
and ``images_evaluation.zip`` through the TFDS download manager.

Registered as ``memjax_omniglot`` (TFDS's own ``omniglot`` builder, which needs
TensorFlow, keeps its name).

Example::

  builder = Omniglot(data_dir="/tmp/tfds", zip_dir="/data/omniglot")
  builder.download_and_prepare(file_format="array_record")
  source = tfds.data_source("memjax_omniglot", data_dir="/tmp/tfds", split="train")
  source[0]["images"].shape  # (20, 105, 105) uint8, 1 = ink

References:
  Lake, Salakhutdinov, Tenenbaum. "Human-level concept learning through probabilistic
  program induction", Science 350 (2015).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from memjax.data.omniglot import source as source_lib
from memjax.data.omniglot.source import (
  BASE_URL,
  DOWNLOAD_NAMES,
  IMAGE_SIZE,
  NUM_DRAWERS,
  ZIP_NAMES,
  OmniglotDataNotFoundError,
)

__all__ = ["Omniglot"]

_CITATION = """\
@article{lake2015human,
  title={Human-level concept learning through probabilistic program induction},
  author={Lake, Brenden M and Salakhutdinov, Ruslan and Tenenbaum, Joshua B},
  journal={Science},
  volume={350},
  number={6266},
  pages={1332--1338},
  year={2015}
}"""


class Omniglot(tfds.core.GeneratorBasedBuilder):
  """Omniglot characters from the official zips, one example per character.

  Features: ``images`` uint8 [20, 105, 105] (1 = ink, drawers 1..20 in order; zlib
  compressed on disk), ``files`` the 20 PNG names, ``alphabet``, ``character`` (folder
  names) and ``sources`` (the zips holding the character). ``info.metadata`` records the
  SHA-256 of every zip read (``files``) and the characters found in several zips
  (``duplicates``).

  Args:
    zip_dir: the folder holding the zips, looked in before ``download_config.manual_dir``
      and ``$MEMJAX_DATA_DIR/omniglot``.
    allow_download: download the official zips when none is found locally.
    **kwargs: ``data_dir``, ... as for any TFDS builder.
  """

  name = "memjax_omniglot"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Characters of the official zips, de-duplicated, 105x105 ink."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Put any of {', '.join(ZIP_NAMES)} (from {BASE_URL}) in the manual dir, or set "
    f"${source_lib.ENV_VAR} to a root holding omniglot/<those zips>."
  )

  def __init__(
    self,
    *,
    zip_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    **kwargs: Any,
  ):
    self._zip_dir = zip_dir
    self._allow_download = allow_download
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file (TFDS 4.9.10 resolves it through a backport it does not install)."""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    shape = (NUM_DRAWERS, IMAGE_SIZE, IMAGE_SIZE)
    return self.dataset_info_from_configs(
      description="Omniglot (Lake et al. 2015): 20 drawings of each handwritten character.",
      features=tfds.features.FeaturesDict(
        {
          "images": tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding="zlib"),
          "files": tfds.features.Tensor(shape=(NUM_DRAWERS,), dtype=np.str_),
          "alphabet": tfds.features.Text(),
          "character": tfds.features.Text(),
          "sources": tfds.features.Tensor(shape=(None,), dtype=np.str_),
        }
      ),
      supervised_keys=None,
      homepage="https://github.com/brendenlake/omniglot",
      citation=_CITATION,
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=True,
    )

  def _find_zips(self, dl_manager: tfds.download.DownloadManager) -> dict[str, str]:
    folders = [self._zip_dir]
    try:
      folders.append(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # No or empty manual dir.
      pass
    folders.append(source_lib.default_folder())
    looked_in = []
    for folder in folders:
      if folder is None:
        continue
      paths = source_lib.find_zips(folder)
      if paths:
        return {os.path.basename(p): p for p in paths}
      looked_in.append(os.fspath(folder))
    zip_dir = None if self._zip_dir is None else os.fspath(self._zip_dir)
    if not self._allow_download:
      raise OmniglotDataNotFoundError(source_lib.missing_data_message(zip_dir, looked_in))
    ok, why = source_lib.reachable(BASE_URL)
    if not ok:  # Fail in seconds, not after minutes of download retries.
      raise OmniglotDataNotFoundError(
        source_lib.missing_data_message(zip_dir, looked_in, f"Cannot download: {why}")
      )
    try:
      paths = dl_manager.download({n: BASE_URL + n for n in DOWNLOAD_NAMES})
    except Exception as e:  # Offline, blocked, ...: say what to put where.
      raise OmniglotDataNotFoundError(
        source_lib.missing_data_message(zip_dir, looked_in, f"Download failed: {e}")
      ) from e
    return {n: os.fspath(p) for n, p in paths.items()}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    zips = self._find_zips(dl_manager)
    # Read and check every zip now: a bad one fails here, naming the file, before TFDS
    # writes anything.
    characters, duplicates = source_lib.read_characters(zips)
    self.info.metadata["files"] = {n: source_lib.file_sha256(p) for n, p in zips.items()}
    self.info.metadata["duplicates"] = duplicates
    self.info.metadata["source_paths"] = dict(zips)
    return {"train": self._generate_examples(characters)}

  def _generate_examples(self, characters: list[source_lib.Character]):
    for c in characters:
      yield (
        c.name,
        {
          "images": c.ink,
          "files": np.asarray(c.files, dtype=object),
          "alphabet": c.alphabet,
          "character": c.character,
          "sources": np.asarray(c.sources, dtype=object),
        },
      )
