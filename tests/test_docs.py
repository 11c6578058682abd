"""The docstring examples of every library module and the README's code blocks run."""

import doctest
import importlib
import os
import pathlib
import pkgutil
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memjax

ROOT = pathlib.Path(__file__).resolve().parents[1]
_PACKAGES = ("memjax.ops", "memjax.memory", "memjax.models", "memjax.data", "memjax.train")


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
    extraglobs={"jax": jax, "jnp": jnp, "nn": nn, "np": np},
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    report=True,
  )
  assert result.attempted > 0
  assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def _readme_blocks():
  text = (ROOT / "README.md").read_text()
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_code_blocks_run():
  blocks = _readme_blocks()
  assert len(blocks) >= 3
  namespace = {}
  for block in blocks:
    if "memjax.data import babi" in block:
      root = os.environ.get("MEMJAX_DATA_DIR", "")
      if not (pathlib.Path(root) / "babi").is_dir():
        continue  # the data block needs bAbI (CI has it through ../shared/data)
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["y"].shape == (2, 10, 5)
  assert namespace["memory"].keys.shape == (2, 8, 16)
  assert namespace["hit"].values.shape == (2, 2)
  assert memjax.__version__
