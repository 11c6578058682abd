"""Omniglot as numpy arrays: ``load``, ``split_characters``, ``area_resize``.

``load`` prepares the TFDS dataset on first use (``builder.Omniglot``, imported then, not
with this module) and reads every character back as ink images resized by area averaging:
each output pixel is the fraction of its square of the 105x105 image covered by ink, so
values lie in [0, 1] (exactly {0, 1} at ``image_size=105`` or with ``binarize=True``).

The prepared data is keyed by the content of the zips read: it lives in
``<cache>/omniglot_by_content/<key>/memjax_omniglot/<version>/``, where ``<cache>`` is
``tfds_dir`` (default ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``) and ``<key>``
the first 16 hex digits of ``source.fingerprint`` (SHA-256 of the zips' SHA-256s). Zips
that change get a new build; a cache is never used without its zips.

Example::

  arrays = load()                      # $MEMJAX_DATA_DIR/omniglot/*.zip, 28x28
  train, test = split_characters(arrays, num_test=0.2)
  train.images.shape                   # (194, 20, 28, 28) with the two minimal splits
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from memjax.data.omniglot import source as source_lib
from memjax.data.omniglot.source import (
  IMAGE_SIZE,
  ZIP_NAMES,
  OmniglotDataNotFoundError,
)

__all__ = [
  "CONTENT_FOLDER",
  "OmniglotArrays",
  "area_resize",
  "cache_dir",
  "describe",
  "load",
  "prepare",
  "resolve_zips",
  "split_characters",
]

_log = logging.getLogger(__name__)

CONTENT_FOLDER = "omniglot_by_content"  # <cache>/omniglot_by_content/<key>/memjax_omniglot/...
DOWNLOAD_FOLDER = os.path.join(CONTENT_FOLDER, "downloads")  # the official zips, once


class OmniglotArrays(NamedTuple):
  """Omniglot characters as arrays (C characters, 20 drawers, S = image size).

  ``images[c, d]`` is drawer ``d + 1``'s drawing of character ``c``; characters are sorted
  by (alphabet, character) name; ``alphabet_names[alphabet[c]]`` is the alphabet of ``c``
  and ``character_names[c]`` its ``'<Alphabet>/<characterNN>'``.
  """

  images: np.ndarray  # [C, 20, S, S] float32 in [0, 1], 1 = ink
  alphabet: np.ndarray  # [C] int32 index into alphabet_names
  alphabet_names: tuple[str, ...]
  character_names: tuple[str, ...]


def cache_dir(tfds_dir: str | os.PathLike | None = None) -> str:
  """The cache folder: ``tfds_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  if tfds_dir:
    return os.path.abspath(os.fspath(tfds_dir))
  return os.path.abspath(
    os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
  )


def resolve_zips(
  data_dir: str | os.PathLike | None, tfds_dir: str | os.PathLike | None, allow_download: bool
) -> list[str]:
  """The zips to build from: those in ``data_dir`` (else ``$MEMJAX_DATA_DIR/omniglot``),
  else those downloaded before into ``<cache>/omniglot_by_content/downloads/``, else the
  official background and evaluation zips downloaded there (when ``allow_download`` and
  online).

  Raises:
    OmniglotDataNotFoundError: none of these; names the folders looked in.
  """
  folder = os.fspath(data_dir) if data_dir is not None else source_lib.default_folder()
  paths = source_lib.find_zips(folder)
  if paths:
    return paths
  looked_in = []
  if folder is not None:
    state = "holds none of the zips" if os.path.isdir(folder) else "does not exist"
    looked_in.append(f"{os.path.abspath(folder)} ({state})")
  downloads = os.path.join(cache_dir(tfds_dir), DOWNLOAD_FOLDER)
  looked_in.append(downloads)
  paths = source_lib.find_zips(downloads)
  if paths:
    if folder is not None:
      _log.warning("Omniglot: no zips in %s; using the ones downloaded to %s.", folder, downloads)
    return paths
  why = "downloading is off (allow_download=False)"
  if allow_download:
    ok, why = source_lib.reachable(source_lib.BASE_URL)
    if ok:
      try:
        return source_lib.download_zips(downloads)
      except OSError as e:
        why = f"download from {source_lib.BASE_URL} failed: {e}"
  raise OmniglotDataNotFoundError(
    source_lib.missing_data_message(folder, looked_in, f"Cannot download: {why}.")
  )


def prepare(
  data_dir: str | os.PathLike | None = None,
  tfds_dir: str | os.PathLike | None = None,
  allow_download: bool = True,
):
  """The prepared ``Omniglot`` builder of the zips' content, and where the data came from.

  Returns:
    ``(builder, provenance)``: provenance holds ``zips`` (paths), ``fingerprint``,
    ``files`` ({zip name: SHA-256}), ``duplicates`` (characters found in several zips, with
    those zips) and ``cache_dir``.
  """
  from memjax.data.omniglot.builder import Omniglot  # imports tensorflow_datasets

  paths = resolve_zips(data_dir, tfds_dir, allow_download)
  key = source_lib.fingerprint(paths)
  directory = os.path.join(cache_dir(tfds_dir), CONTENT_FOLDER, key["fingerprint"][:16])
  builder = Omniglot(data_dir=directory, zip_dir=os.path.dirname(paths[0]), allow_download=False)
  if not builder.is_prepared():
    builder.download_and_prepare(file_format="array_record")
  metadata = builder.info.metadata or {}
  files = {str(k): str(v) for k, v in (metadata.get("files") or {}).items()}
  if files != key["files"]:
    raise RuntimeError(
      f"the Omniglot data prepared in {builder.data_dir} does not match the zips "
      f"{', '.join(paths)} (they changed while it was built, or the folder was altered): "
      "delete that folder and load again"
    )
  provenance = {
    "zips": list(paths),
    "fingerprint": key["fingerprint"],
    "files": files,
    "duplicates": {str(k): list(v) for k, v in (metadata.get("duplicates") or {}).items()},
    "cache_dir": str(builder.data_dir),
  }
  return builder, provenance


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
  """``[n_out, n_in]``: row i holds the fraction of output pixel i's span that each input
  pixel covers (rows sum to 1)."""
  edges = np.arange(n_out + 1) * (n_in / n_out)
  lo, hi = edges[:-1, None], edges[1:, None]
  j = np.arange(n_in)[None, :]
  overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
  return overlap / (n_in / n_out)


def area_resize(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
  """Resizes square images ``[..., n, n]`` to ``[..., size, size]`` float32 by area
  averaging (each output pixel the mean of the input over its square, partial pixels
  weighted by the area they share).

  Example:
    >>> area_resize(np.eye(4), 2).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
  """
  images = np.asarray(images)
  n = images.shape[-1]
  if images.ndim < 2 or images.shape[-2] != n:
    raise ValueError(f"images must be [..., n, n], got shape {images.shape}")
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
    raise ValueError(f"image size must be a positive int, got {size!r}")
  lead = images.shape[:-2]
  flat = images.reshape(-1, n, n)
  if size == n:
    return flat.astype(np.float32).reshape(*lead, n, n)
  w = _area_matrix(n, int(size)).astype(np.float32)
  out = np.empty((flat.shape[0], size, size), np.float32)
  for start in range(0, flat.shape[0], chunk):
    x = flat[start : start + chunk].astype(np.float32)
    out[start : start + chunk] = w @ x @ w.T
  return np.clip(out, 0.0, 1.0).reshape(*lead, size, size)


def _zip_name(name: str) -> str:
  full = name if name.endswith(".zip") else f"{name}.zip"
  if full not in ZIP_NAMES:
    raise ValueError(f"sources must name official zips {ZIP_NAMES}, got {name!r}")
  return full


def load(
  data_dir: str | os.PathLike | None = None,
  *,
  image_size: int = 28,
  tfds_dir: str | os.PathLike | None = None,
  sources: Sequence[str] | None = None,
  binarize: bool = False,
  allow_download: bool = True,
) -> OmniglotArrays:
  """Loads every Omniglot character of the zips found, once each.

  Args:
    data_dir: the folder holding the official zips; default ``$MEMJAX_DATA_DIR/omniglot``.
      With no zip there, the zips downloaded before into the cache are used, else the
      official ``images_background.zip`` and ``images_evaluation.zip`` are downloaded.
    image_size: S, the side of the returned images (area-averaged from 105x105).
    tfds_dir: the cache of the prepared data (``$TFDS_DATA_DIR``, else ~/tensorflow_datasets).
    sources: keep only the characters found in these zips (``'images_evaluation'`` or
      ``'images_evaluation.zip'``, ...); default: all.
    binarize: threshold the resized images at 0.5 (values in {0, 1}).
    allow_download: download the official zips when none is found locally.

  Returns:
    OmniglotArrays with images float32 [C, 20, S, S] (1 = ink).

  Raises:
    OmniglotDataNotFoundError: no zip locally and none downloadable (names the folder).
    OmniglotFormatError: a corrupt zip or PNG (names the file and member).
    ValueError: a bad ``image_size`` or ``sources``.
  """
  if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
    raise ValueError(f"image_size must be a positive int, got {image_size!r}")
  if image_size < 1:
    raise ValueError(f"image_size must be a positive int, got {image_size!r}")
  wanted = None if sources is None else {_zip_name(s) for s in sources}
  builder, provenance = prepare(data_dir, tfds_dir, allow_download)
  if wanted is not None and not wanted <= set(provenance["files"]):
    raise ValueError(
      f"sources {sorted(wanted)} are not all among the zips read: {sorted(provenance['files'])}"
    )
  data = builder.as_data_source(split="train")
  records = data.__getitems__(range(len(data)))
  keep = [r for r in records if wanted is None or wanted & {s.decode() for s in r["sources"]}]
  if not keep:
    raise ValueError(f"no character in the zips {sorted(wanted or [])}")
  alphabets = [r["alphabet"].decode() for r in keep]
  alphabet_names = tuple(sorted(set(alphabets)))
  ink = np.stack([r["images"] for r in keep])  # [C, 20, 105, 105] uint8
  if ink.shape[1:] != (source_lib.NUM_DRAWERS, IMAGE_SIZE, IMAGE_SIZE):
    raise RuntimeError(f"unexpected images of shape {ink.shape} in {builder.data_dir}")
  images = area_resize(ink, int(image_size))
  if binarize:
    images = (images >= 0.5).astype(np.float32)
  return OmniglotArrays(
    images=images,
    alphabet=np.asarray([alphabet_names.index(a) for a in alphabets], np.int32),
    alphabet_names=alphabet_names,
    character_names=tuple(
      f"{a}/{r['character'].decode()}" for a, r in zip(alphabets, keep, strict=True)
    ),
  )


def _subset(arrays: OmniglotArrays, mask: np.ndarray) -> OmniglotArrays:
  present = np.unique(arrays.alphabet[mask])
  return OmniglotArrays(
    images=arrays.images[mask],
    alphabet=np.searchsorted(present, arrays.alphabet[mask]).astype(np.int32),
    alphabet_names=tuple(arrays.alphabet_names[i] for i in present),
    character_names=tuple(n for n, m in zip(arrays.character_names, mask, strict=True) if m),
  )


def split_characters(
  arrays: OmniglotArrays, *, num_test: int | float, by: str = "character", seed: int = 0
) -> tuple[OmniglotArrays, OmniglotArrays]:
  """Splits characters into disjoint meta-train and meta-test sets (seeded, order kept).

  Args:
    arrays: from ``load``.
    num_test: with ``by='character'``, the number (int) or fraction (float in (0, 1)) of
      characters held out; with ``by='alphabet'``, of alphabets (all their characters held
      out). A fraction is rounded, to at least 1 and at most all but 1.
    by: ``'character'`` (any characters, as MAML) or ``'alphabet'`` (whole alphabets).
    seed: the split's seed.

  Returns:
    ``(meta_train, meta_test)``, each an OmniglotArrays whose ``alphabet`` indexes its own
    ``alphabet_names`` (the alphabets it holds).

  Raises:
    ValueError: a bad ``by`` or ``num_test`` (none held out, or nothing left).
  """
  num_chars = len(arrays.character_names)
  if arrays.images.shape[0] != num_chars or arrays.alphabet.shape != (num_chars,):
    raise ValueError(
      f"arrays disagree: images {arrays.images.shape}, alphabet {arrays.alphabet.shape}, "
      f"{num_chars} character names"
    )
  if by == "character":
    unit_of = np.arange(num_chars)
  elif by == "alphabet":
    unit_of = np.asarray(arrays.alphabet)
  else:
    raise ValueError(f"by must be 'character' or 'alphabet', got {by!r}")
  units = np.unique(unit_of)
  n = len(units)
  if isinstance(num_test, bool) or not isinstance(num_test, (int, float, np.integer, np.floating)):
    raise ValueError(f"num_test must be an int or a float in (0, 1), got {num_test!r}")
  if isinstance(num_test, (float, np.floating)):
    if not 0.0 < num_test < 1.0:
      raise ValueError(f"a fractional num_test must be in (0, 1), got {num_test!r}")
    k = min(max(int(round(num_test * n)), 1), n - 1)
  else:
    k = int(num_test)
  if not 1 <= k <= n - 1:
    raise ValueError(f"num_test must hold out 1..{n - 1} of the {n} {by}s, got {num_test!r}")
  held = np.random.default_rng(seed).choice(units, size=k, replace=False)
  test = np.isin(unit_of, held)
  return _subset(arrays, ~test), _subset(arrays, test)


def describe(arrays: OmniglotArrays) -> dict[str, Any]:
  """Counts: alphabets, characters, images, and characters per alphabet."""
  counts = np.bincount(arrays.alphabet, minlength=len(arrays.alphabet_names))
  return {
    "alphabets": len(arrays.alphabet_names),
    "characters": len(arrays.character_names),
    "images": int(np.prod(arrays.images.shape[:2])),
    "per_alphabet": dict(zip(arrays.alphabet_names, counts.tolist(), strict=True)),
  }
