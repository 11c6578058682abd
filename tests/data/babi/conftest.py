"""Fixtures of the bAbI tests: fake archive folders and their independently parsed files."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from memjax.data.babi import parse

PEOPLE = ("mary", "john", "sandra", "daniel")
PLACES = ("kitchen", "garden", "office", "hallway")


def _story_lines(rng: np.random.Generator, places: tuple[str, ...]) -> list[str]:
  """A bAbI task-1 style story: statements, with a question after some of them."""
  where: dict[str, tuple[int, str]] = {}
  lines, line_id = [], 0
  for _ in range(int(rng.integers(1, 9))):
    person, place = str(rng.choice(PEOPLE)), str(rng.choice(places))
    line_id += 1
    lines.append(f"{line_id} {person.title()} went to the {place}.")
    where[person] = (line_id, place)
    if rng.random() < 0.5:
      asked = str(rng.choice(sorted(where)))
      line_id += 1
      fact, answer = where[asked]
      lines.append(f"{line_id} Where is {asked.title()}? \t{answer}\t{fact}")
  if not any("\t" in ln for ln in lines):
    line_id += 1
    fact, answer = where[person]
    lines.append(f"{line_id} Where is {person.title()}?\t{answer}\t{fact}")
  return lines


def _fake_root(path: pathlib.Path, tasks=(1, 2), langs=("en",), stories=12) -> pathlib.Path:
  """``path/babi/tasks_1-20_v1-2/<lang>/qaN_*_{train,test}.txt``; the test split has the
  test-only place 'cellar'."""
  folder = path / "babi" / "tasks_1-20_v1-2"
  for lang in langs:
    for task in tasks:
      for split in ("train", "test"):
        rng = np.random.default_rng([task, split == "test", len(lang)])
        places = PLACES + (("cellar",) if split == "test" else ())
        lines = [ln for _ in range(stories) for ln in _story_lines(rng, places)]
        file = folder / parse.task_filename(lang, task, split)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("\n".join(lines) + "\n")
  return path


def _expected(root: pathlib.Path, lang: str, task: int, split: str):
  name = parse.task_filename(lang, task, split)
  path = root / "babi" / "tasks_1-20_v1-2" / name
  return parse.parse_babi(path.read_text().splitlines(), name)


@pytest.fixture(scope="session")
def _session_tfds_dir(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.mktemp("tfds_default")


@pytest.fixture(autouse=True)
def _no_home_cache(_session_tfds_dir, monkeypatch):
  """A test that passes no ``tfds_dir`` caches under a temporary folder, never under
  ~/tensorflow_datasets (the loaders default to ``$TFDS_DATA_DIR``)."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(_session_tfds_dir))


@pytest.fixture(scope="session")
def testdata() -> pathlib.Path:
  """The folder of small bAbI-format files (good and malformed)."""
  return pathlib.Path(__file__).parent / "testdata"


@pytest.fixture(scope="session")
def make_fake_root():
  """``make_fake_root(path, tasks=(1, 2), langs=('en',), stories=12) -> path``."""
  return _fake_root


@pytest.fixture(scope="session")
def expected():
  """``expected(root, lang, task, split)``: the parsed examples of a fake root's file."""
  return _expected


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory):
  """A fake root with tasks 1 and 2 of en/."""
  return _fake_root(tmp_path_factory.mktemp("data"))


def _real_root() -> str | None:
  for root in (
    os.environ.get("MEMJAX_DATA_DIR"),
    str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data"),
  ):
    if root and (pathlib.Path(root) / "babi" / "tasks_1-20_v1-2" / "en").is_dir():
      return root
  return None


@pytest.fixture(scope="session")
def real_root() -> str:
  """The data root holding the real bAbI files; skips the test when there is none."""
  root = _real_root()
  if root is None:
    pytest.skip("bAbI data not available (MEMJAX_DATA_DIR)")
  return root
