"""The docstring examples of every library module and the README's code blocks run."""

import doctest
import importlib
import os
import pathlib
import pkgutil
import re
import tarfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import memjax

ROOT = pathlib.Path(__file__).resolve().parents[1]
_PACKAGES = (
  "memjax.ops",
  "memjax.memory",
  "memjax.models",
  "memjax.data",
  "memjax.train",
  "memjax.meta",
  "memjax.continual",
  "memjax.knowledge",
  "memjax.layers",
)


def _modules():
  names = []
  for pkg in _PACKAGES:
    path = importlib.import_module(pkg).__path__
    names += [m.name for m in pkgutil.walk_packages(path, prefix=f"{pkg}.")]  # subpackages too
  return names


def _has_examples(name):
  lines = pathlib.Path(importlib.import_module(name).__file__).read_text().splitlines()
  return any(">>>" in line and "doctest: +SKIP" not in line for line in lines)


@pytest.mark.parametrize("name", [n for n in _modules() if _has_examples(n)])
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(
    module,
    extraglobs={"jax": jax, "jnp": jnp, "nn": nn, "nnx": nnx, "np": np},
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    report=True,
  )
  assert result.attempted > 0
  assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def _readme_blocks():
  text = (ROOT / "README.md").read_text()
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _is_data_block(block: str) -> bool:
  return "memjax.data import babi" in block


def test_readme_code_blocks_run():
  blocks = [b for b in _readme_blocks() if not _is_data_block(b)]
  assert len(blocks) >= 2
  namespace = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["y"].shape == (2, 10, 5)
  assert namespace["memory"].keys.shape == (2, 8, 16)
  assert namespace["hit"].values.shape == (2, 2)
  assert memjax.__version__


def _babi_file(root: pathlib.Path, name: str) -> list[str]:
  """The lines of ``en/<name>`` from the bAbI folder or archive under ``root``."""
  for folder in (root / "babi" / "tasks_1-20_v1-2", root / "tasks_1-20_v1-2"):
    if (folder / "en" / name).is_file():
      return (folder / "en" / name).read_text().splitlines()
  for archive in (root / "babi" / "tasks_1-20_v1-2.tar.gz", root / "tasks_1-20_v1-2.tar.gz"):
    if archive.is_file():
      with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"/en/{name}"))
        return tar.extractfile(member).read().decode().splitlines()
  raise FileNotFoundError(f"no bAbI en/{name} under {root}")


def _questions(lines: list[str]) -> list[tuple[list[str], str, str, list[int]]]:
  """(story sentences, question, answer, supporting line ids) of each question line."""
  out, story = [], []
  for line in lines:
    number, text = line.split(" ", 1)
    if number == "1":
      story = []
    if "\t" in text:
      question, answer, support = text.split("\t")
      out.append((list(story), question.strip(), answer, [int(i) for i in support.split()]))
    else:
      story.append((int(number), text))
  return out


def test_readme_data_block(tmp_path, monkeypatch):
  """The README's bAbI block, on the data root of the environment (``make test`` sets it),
  with TFDS's cache in a temporary folder (never ``~/tensorflow_datasets``)."""
  root = os.environ.get("MEMJAX_DATA_DIR", "")
  if not root or not pathlib.Path(root).exists():
    pytest.skip(f"MEMJAX_DATA_DIR={root!r}: no data root, so the README's bAbI block cannot run")
  (block,) = [b for b in _readme_blocks() if _is_data_block(b)]
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~ of anything that ignores the variable
  namespace = {}
  exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
  assert (tmp_path / "tfds").is_dir() and not (tmp_path / "home").exists()

  # Task 1: 1000 training questions (10% held out) and 1000 test questions, memory 50.
  root = pathlib.Path(root)
  train_q = _questions(_babi_file(root, "qa1_single-supporting-fact_train.txt"))
  test_q = _questions(_babi_file(root, "qa1_single-supporting-fact_test.txt"))
  arrays = namespace["arrays"]
  assert arrays.train["story"].shape[:2] == (900, 50) and arrays.validation["answer"].shape == (
    100,
  )
  assert arrays.test["story"].shape[:2] == (len(test_q), 50) and len(train_q) == 1000
  words = arrays.vocab.words
  # The test arrays hold the file's questions and answers in order (ids 0 = padding).
  for (_, question, answer, _), q, a in zip(
    test_q, arrays.test["query"], arrays.test["answer"], strict=True
  ):
    assert [words[i] for i in q if i] == question.lower().rstrip("?").split()
    assert words[a] == answer
  # Task 16's test examples, as parsed from the file: story, question, answer, supports.
  examples = namespace["examples"]
  qa16 = _questions(_babi_file(root, "qa16_basic-induction_test.txt"))
  assert len(examples) == len(qa16)
  for example, (story, question, answer, support) in zip(examples, qa16[:50], strict=False):
    assert example.story == [t.lower().rstrip(".").split() for _, t in story]
    assert example.question == question.lower().rstrip("?").split()
    assert example.answer == answer and example.task == 16
    numbers = [n for n, _ in story]
    assert example.supporting == [numbers.index(i) for i in support]
  # The length buckets partition the training set.
  buckets = namespace["buckets"]
  assert sum(len(b["answer"]) for b in buckets) == 900
  np.testing.assert_array_equal(
    np.sort(np.concatenate([b["answer"] for b in buckets])), np.sort(arrays.train["answer"])
  )
