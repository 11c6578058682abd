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
local, the official archive is downloaded once into the cache folder.

Reliability (each proved by a test in tests/data/babi/):

* Every language folder parses: several-word answers (``hn/``: ``'rasoi ghar'``) are one
  answer class, stored with their words joined by one space.
* A malformed file raises ``BabiFormatError`` (a ValueError) naming the file's full path
  and line: bytes that are not UTF-8, a question line whose tabs were lost, a file
  without questions; a leading UTF-8 byte-order mark is ignored (``parse``).
* Sizes are checked before anything is allocated: ``ParseLimits`` (words per line,
  statements per story) and ``load_arrays``' ``max_bytes`` / ``max_vocab_size``.
* The prepared TFDS data is keyed by the content of the source files (``examples``), in
  ``tfds_dir`` (default ``$TFDS_DATA_DIR``, else ~/tensorflow_datasets): other files
  never get another's examples, and nothing is used without its source.
* Only UTF-8 text is read from data files: no pickle, no eval, no archive extraction.

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

from memjax import _lazy
from memjax.data.babi import arrays, parse, synthetic
from memjax.data.babi.arrays import (
  ArraysTooLargeError,
  BabiArrays,
  build_vocab,
  encode_story,
  length_buckets,
  load_arrays,
)
from memjax.data.babi.parse import (
  BabiDataNotFoundError,
  BabiExample,
  BabiFormatError,
  ParseLimits,
  parse_babi,
  tokenize,
)
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


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)


__all__ = [
  "arrays",
  "parse",
  "synthetic",
  "ArraysTooLargeError",
  "BabiArrays",
  "BabiDataNotFoundError",
  "BabiExample",
  "BabiFormatError",
  "OutOfVocabularyError",
  "ParseLimits",
  "Vocab",
  "build_vocab",
  "encode_story",
  "length_buckets",
  "load_arrays",
  "parse_babi",
  "tokenize",
  *_LAZY,
]
