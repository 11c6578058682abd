"""Tests for memjax.data.babi's re-exports and its lazy TFDS import."""

from __future__ import annotations

import subprocess
import sys

from memjax import data
from memjax.data import babi


def test_public_names_resolve():
  for name in babi.__all__:
    assert getattr(babi, name) is not None, name
  assert babi.Vocab is data.Vocab is data.vocab.Vocab
  assert babi.load_arrays is data.load_arrays is babi.arrays.load_arrays
  assert babi.load_examples is data.load_examples is babi.examples.load_examples
  assert babi.Babi is data.Babi is babi.builder.Babi
  assert babi.length_buckets is babi.arrays.length_buckets


def test_numpy_parts_do_not_import_tensorflow_datasets():
  code = (
    "import sys, memjax.data, memjax.data.babi, memjax.data.babi.synthetic;"
    "from memjax.data.babi import length_buckets, parse_babi, Vocab;"
    "assert 'tensorflow_datasets' not in sys.modules, 'imported early';"
    "from memjax.data.babi import Babi;"
    "assert 'tensorflow_datasets' in sys.modules"
  )
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
