"""bAbI QA tasks v1.2: parser, TFDS builder (ArrayRecord, no TensorFlow), MemN2N arrays.

Modules, each built on the ones before:

* ``parse``: the text format (``tokenize``, ``parse_babi``) and the archive's files.
* ``builder``: ``Babi``, a ``tfds.core.GeneratorBasedBuilder`` with one config per
  language folder and task (``en_qa1`` .. ``en_qa20``, ``en_joint``, ``en-10k_qa3``, ...).
* ``examples``: ``load_examples``, tokenized examples read through the TFDS data source
  (built on first use).
* ``arrays``: ``load_arrays``, padded int32 arrays for MemN2N with a vocabulary and a
  seeded per-task validation split; ``encode_story``; ``length_buckets``.
* ``synthetic``: generated task-1-like data in the same arrays, without the files.

The data root comes from the ``data_dir`` argument or the environment variable
``MEMJAX_DATA_DIR``; the bAbI folder is ``<root>/babi/tasks_1-20_v1-2/`` (or the archive
``<root>/babi/tasks_1-20_v1-2.tar.gz`` or ``<root>/tasks_1-20_v1-2.tar.gz``). With nothing
local, the builder downloads the official archive through the TFDS download manager.

``builder`` and ``examples`` import tensorflow_datasets, so they and their names
(``Babi``, ``BabiConfig``, ``config_name``, ``BabiExamples``, ``load_examples``) load on
first use; the rest is numpy only.

Example::

  from memjax.data import babi
  arrays = babi.load_arrays(tasks=[1], data_dir="/data", memory_size=50)
  arrays.train["story"].shape  # (900, 50, arrays.sentence_size)

References:
  Weston et al. "Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks",
  arXiv:1502.05698 (2015). Sukhbaatar et al. "End-To-End Memory Networks", NeurIPS 2015.
"""

import importlib

from memjax.data.babi import arrays, parse, synthetic
from memjax.data.babi.arrays import (
  BabiArrays,
  build_vocab,
  encode_story,
  length_buckets,
  load_arrays,
)
from memjax.data.babi.parse import BabiDataNotFoundError, BabiExample, parse_babi, tokenize
from memjax.data.vocab import OutOfVocabularyError, Vocab

_LAZY = {
  "builder": ("memjax.data.babi.builder", None),
  "examples": ("memjax.data.babi.examples", None),
  "Babi": ("memjax.data.babi.builder", "Babi"),
  "BabiConfig": ("memjax.data.babi.builder", "BabiConfig"),
  "config_name": ("memjax.data.babi.builder", "config_name"),
  "BabiExamples": ("memjax.data.babi.examples", "BabiExamples"),
  "load_examples": ("memjax.data.babi.examples", "load_examples"),
}


def __getattr__(name):
  if name not in _LAZY:
    raise AttributeError(f"module 'memjax.data.babi' has no attribute {name!r}")
  module_name, attr = _LAZY[name]
  module = importlib.import_module(module_name)
  value = module if attr is None else getattr(module, attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_LAZY))


__all__ = [
  "arrays",
  "parse",
  "synthetic",
  "BabiArrays",
  "BabiDataNotFoundError",
  "BabiExample",
  "OutOfVocabularyError",
  "Vocab",
  "build_vocab",
  "encode_story",
  "length_buckets",
  "load_arrays",
  "parse_babi",
  "tokenize",
  *_LAZY,
]
