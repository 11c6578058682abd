"""Omniglot's official zips: where they are, what they hold, and reading them (no TFDS).

The official zips (https://github.com/brendenlake/omniglot, ``python/``) lay out
``<top folder>/<Alphabet>/<characterNN>/<id>_<drawer>.png``: 105x105 one-bit PNGs (white
paper, black ink), 20 drawers per character (``_01`` .. ``_20``). ``read_characters``
decodes them to ink masks (1 = ink) and merges the zips found, de-duplicating characters
that more than one zip holds (the minimal splits ``images_background_small1`` and
``images_background_small2`` both hold the alphabets Greek and Latin: 24 and 26 characters
with the same file names and byte-identical PNGs, so each is kept once; every zip of the
minimal splits is also part of ``images_background``). A character found in two zips with
different drawings is refused (it would leak between meta-train and meta-test).

Every refusal names the file: ``OmniglotDataNotFoundError`` (a FileNotFoundError) for
missing data, ``OmniglotFormatError`` (a ValueError) for a corrupt zip, a bad member path,
a bad PNG or a character without exactly the drawers 1..20. Nothing is extracted to disk;
only PNG images are decoded (Pillow), their size checked before decoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
  "BASE_URL",
  "DOWNLOAD_NAMES",
  "ENV_VAR",
  "IMAGE_SIZE",
  "NUM_DRAWERS",
  "ZIP_NAMES",
  "Character",
  "OmniglotDataNotFoundError",
  "OmniglotFormatError",
  "default_folder",
  "download_zips",
  "file_sha256",
  "find_zips",
  "fingerprint",
  "missing_data_message",
  "read_characters",
  "read_zip",
  "reachable",
]

_log = logging.getLogger(__name__)

ENV_VAR = "MEMJAX_DATA_DIR"  # the data root; the zips are in <root>/omniglot/
BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
# The zips read, in this order (a character in several keeps the first one's drawings).
ZIP_NAMES = (
  "images_background.zip",
  "images_evaluation.zip",
  "images_background_small1.zip",
  "images_background_small2.zip",
)
DOWNLOAD_NAMES = ("images_background.zip", "images_evaluation.zip")  # the full set
IMAGE_SIZE = 105
NUM_DRAWERS = 20
MAX_PNG_BYTES = 1 << 20  # per member (the official PNGs are under 1 KB)
_PNG_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


class OmniglotDataNotFoundError(FileNotFoundError):
  """No Omniglot zip where one was looked for, and none could be downloaded."""


class OmniglotFormatError(ValueError):
  """A zip or a PNG in it is not in the official layout; the message names the file."""


@dataclasses.dataclass
class Character:
  """One character: ``ink`` uint8 [20, 105, 105] (1 = ink), drawer 1..20 in order;
  ``files`` the 20 PNG names; ``sources`` the zip names that hold it."""

  alphabet: str
  character: str
  ink: np.ndarray
  files: tuple[str, ...]
  sources: tuple[str, ...]

  @property
  def name(self) -> str:
    return f"{self.alphabet}/{self.character}"


def default_folder() -> str | None:
  """``$MEMJAX_DATA_DIR/omniglot``, or None when the variable is unset."""
  root = os.environ.get(ENV_VAR)
  return os.path.join(root, "omniglot") if root else None


def find_zips(folder: str | os.PathLike | None) -> list[str]:
  """The paths of the official zips present in ``folder``, in ``ZIP_NAMES`` order."""
  if folder is None or not os.path.isdir(folder):
    return []
  folder = os.path.abspath(os.fspath(folder))
  return [os.path.join(folder, n) for n in ZIP_NAMES if os.path.isfile(os.path.join(folder, n))]


def file_sha256(path: str) -> str:
  """The SHA-256 (hex) of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def fingerprint(paths: Sequence[str]) -> dict[str, object]:
  """The content key of a set of zips: ``{'fingerprint': hex, 'files': {name: sha256}}``,
  the fingerprint being the SHA-256 of the sorted ``name: sha256`` lines."""
  files = {os.path.basename(p): file_sha256(p) for p in paths}
  lines = "".join(f"{n}: {files[n]}\n" for n in sorted(files))
  return {"fingerprint": hashlib.sha256(lines.encode()).hexdigest(), "files": files}


def missing_data_message(folder: str | None, looked_in: Sequence[str], detail: str = "") -> str:
  """Says which files to put where and which environment variable to set."""
  where = folder or f"${ENV_VAR}/omniglot"
  lines = [
    "The Omniglot data was not found.",
    f"Put one or more of the official zips {', '.join(ZIP_NAMES)} (from {BASE_URL}) in "
    f"{where}, then set {ENV_VAR} to the folder above it or pass data_dir=<that folder>.",
  ]
  if looked_in:
    lines.append("Looked in: " + ", ".join(looked_in))
  if detail:
    lines.append(detail)
  return "\n".join(lines)


def reachable(url: str, timeout: float = 5.0) -> tuple[bool, str]:
  """Whether a TCP connection to the URL's host opens within ``timeout`` seconds."""
  parts = urllib.parse.urlsplit(url)
  if parts.scheme == "file":
    return True, ""
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True, ""
  except OSError as e:
    return False, f"{parts.hostname}:{port} is unreachable ({e}); offline?"


def download_zips(
  directory: str | os.PathLike, names: Sequence[str] = DOWNLOAD_NAMES, timeout: float = 60.0
) -> list[str]:
  """Downloads ``names`` from ``BASE_URL`` into ``directory`` (each written to a temporary
  name, then renamed: an interrupted download leaves no zip). Returns their paths.

  Raises:
    OSError: a download failed.
  """
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  paths = []
  for name in names:
    path = os.path.join(directory, name)
    partial = f"{path}.incomplete-{os.getpid()}"
    try:
      with urllib.request.urlopen(BASE_URL + name, timeout=timeout) as r, open(partial, "wb") as f:
        shutil.copyfileobj(r, f)
      os.replace(partial, path)
    finally:
      if os.path.exists(partial):
        os.remove(partial)
    paths.append(path)
  return paths


def decode_png(data: bytes, where: str) -> np.ndarray:
  """A 105x105 PNG's ink mask, uint8 [105, 105] (1 = ink: pixels darker than mid-grey).

  Raises:
    OmniglotFormatError: not a PNG, not 105x105, or undecodable; names ``where``.
  """
  from PIL import Image, UnidentifiedImageError  # a dependency of matplotlib

  try:
    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
      if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        raise OmniglotFormatError(f"{where}: image is {image.size}, expected 105x105")
      grey = np.asarray(image.convert("L"))
  except OmniglotFormatError:
    raise
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise OmniglotFormatError(f"{where}: not a readable PNG ({e})") from e
  return (grey < 128).astype(np.uint8)


def read_zip(path: str, name: str | None = None) -> list[Character]:
  """The characters of one official zip, sorted by (alphabet, character); their
  ``sources`` hold ``name`` (default: the file name).

  Directory entries, ``__MACOSX/`` and hidden files (``.DS_Store``) are skipped; every
  other member must be ``<top>/<Alphabet>/<character>/<id>_<drawer>.png``.

  Raises:
    OmniglotFormatError: a corrupt zip, a member elsewhere, a bad PNG, or a character
      without exactly the drawers 1..20 (the message names the zip and the member).
  """
  name = name or os.path.basename(path)
  found: dict[tuple[str, str], dict[int, tuple[str, np.ndarray]]] = {}
  try:
    with zipfile.ZipFile(path) as zf:
      for info in zf.infolist():
        member = info.filename
        parts = member.split("/")
        if info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith("."):
          continue
        where = f"{path}: {member}"
        match = _PNG_NAME.match(parts[-1])
        if len(parts) != 4 or not all(parts) or match is None:
          raise OmniglotFormatError(f"{where}: not <top>/<Alphabet>/<character>/<id>_<drawer>.png")
        if info.file_size > MAX_PNG_BYTES:
          raise OmniglotFormatError(f"{where}: {info.file_size} bytes, more than a PNG here")
        drawer = int(match.group(2))
        drawers = found.setdefault((parts[1], parts[2]), {})
        if not 1 <= drawer <= NUM_DRAWERS or drawer in drawers:
          raise OmniglotFormatError(f"{where}: drawer {drawer} out of 1..20 or repeated")
        try:
          data = zf.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
          raise OmniglotFormatError(f"{where}: cannot be read from the zip ({e})") from e
        drawers[drawer] = (parts[-1], decode_png(data, where))
  except zipfile.BadZipFile as e:
    raise OmniglotFormatError(f"{path}: not a readable zip file ({e})") from e
  except FileNotFoundError as e:
    raise OmniglotDataNotFoundError(f"{path}: no such file") from e
  except (OSError, EOFError) as e:
    raise OmniglotFormatError(f"{path}: cannot be read ({e})") from e
  out = []
  for (alphabet, character), drawers in sorted(found.items()):
    if sorted(drawers) != list(range(1, NUM_DRAWERS + 1)):
      missing = sorted(set(range(1, NUM_DRAWERS + 1)) - set(drawers))
      raise OmniglotFormatError(
        f"{path}: {alphabet}/{character} lacks the drawer(s) {missing} (needs 1..20)"
      )
    files, ink = zip(*(drawers[d] for d in range(1, NUM_DRAWERS + 1)), strict=True)
    out.append(Character(alphabet, character, np.stack(ink), tuple(files), (name,)))
  if not out:
    raise OmniglotFormatError(f"{path}: holds no character images")
  return out


def read_characters(
  paths: Sequence[str] | Mapping[str, str],
) -> tuple[list[Character], dict[str, list[str]]]:
  """The characters of all ``paths`` (or ``{zip name: path}``) merged, each once, sorted by
  (alphabet, character).

  A character (same alphabet and character folder names) found in several zips is kept
  once, its ``sources`` naming them all, provided its 20 drawings decode to the same ink.

  Returns:
    ``(characters, duplicates)``: ``duplicates`` maps each character found more than once
    to the zip names that hold it.

  Raises:
    OmniglotFormatError: a bad zip (``read_zip``), or a character whose drawings differ
      between two zips (both named).
  """
  named = dict(paths) if isinstance(paths, Mapping) else {os.path.basename(p): p for p in paths}
  merged: dict[tuple[str, str], Character] = {}
  for name, path in named.items():
    for c in read_zip(path, name):
      kept = merged.get((c.alphabet, c.character))
      if kept is None:
        merged[c.alphabet, c.character] = c
        continue
      if not np.array_equal(kept.ink, c.ink):
        raise OmniglotFormatError(
          f"{c.name} is in {', '.join(kept.sources)} and in {path} with different "
          "drawings; a character must be one set of drawings (remove one zip)"
        )
      kept.sources = (*kept.sources, *c.sources)
  characters = [merged[k] for k in sorted(merged)]
  duplicates = {c.name: list(c.sources) for c in characters if len(c.sources) > 1}
  if duplicates:
    _log.info("Omniglot: %d characters found in more than one zip, kept once.", len(duplicates))
  return characters, duplicates
