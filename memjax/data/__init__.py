"""Datasets: TFDS builders and seeded generators.

``algorithmic`` (copy, repeat copy, associative recall) is imported eagerly; ``babi``
pulls in tensorflow_datasets, so it and its names load on first use.
"""

import importlib

from memjax.data import algorithmic
from memjax.data.algorithmic import (
  AlgorithmicBatch,
  associative_recall_task,
  copy_task,
  repeat_copy_task,
)

_LAZY = {
  "babi": ("memjax.data.babi", None),
  "babi_parse": ("memjax.data.babi_parse", None),
  "Babi": ("memjax.data.babi", "Babi"),
  "BabiArrays": ("memjax.data.babi", "BabiArrays"),
  "load_arrays": ("memjax.data.babi", "load_arrays"),
  "load_examples": ("memjax.data.babi", "load_examples"),
  "BabiDataNotFoundError": ("memjax.data.babi_parse", "BabiDataNotFoundError"),
  "BabiExample": ("memjax.data.babi_parse", "BabiExample"),
  "Vocab": ("memjax.data.babi_parse", "Vocab"),
  "encode_story": ("memjax.data.babi_parse", "encode_story"),
  "parse_babi": ("memjax.data.babi_parse", "parse_babi"),
  "tokenize": ("memjax.data.babi_parse", "tokenize"),
}


def __getattr__(name):
  if name not in _LAZY:
    raise AttributeError(f"module 'memjax.data' has no attribute {name!r}")
  module_name, attr = _LAZY[name]
  module = importlib.import_module(module_name)
  value = module if attr is None else getattr(module, attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_LAZY))


__all__ = [
  "algorithmic",
  "AlgorithmicBatch",
  "associative_recall_task",
  "copy_task",
  "repeat_copy_task",
  *_LAZY,
]
