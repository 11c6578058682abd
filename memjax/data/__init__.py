"""Datasets: TFDS builders, seeded generators and the pieces they share.

``algorithmic`` (copy, repeat copy, associative recall), ``vocab`` (words <-> ids) and
``buckets`` (length bucketing) are imported eagerly; ``babi`` (its TFDS builder pulls in
tensorflow_datasets on first use) and its names load on first use.
"""

from memjax import _lazy
from memjax.data import algorithmic, buckets, vocab
from memjax.data.algorithmic import (
  AlgorithmicBatch,
  AlgorithmicTask,
  LengthGroups,
  associative_recall_task,
  copy_task,
  length_groups,
  make_task,
  repeat_copy_task,
  sequence_costs,
)
from memjax.data.buckets import Bucket, bucket_by_length, even_boundaries
from memjax.data.vocab import OutOfVocabularyError, Vocab

_LAZY = {
  "babi": ("memjax.data.babi", None),
  "omniglot": ("memjax.data.omniglot", None),
  "digits": ("memjax.data.digits", None),
  "sinusoid": ("memjax.data.sinusoid", None),
  "facts": ("memjax.data.facts", None),
  "Babi": ("memjax.data.babi.builder", "Babi"),
  "BabiArrays": ("memjax.data.babi.arrays", "BabiArrays"),
  "load_arrays": ("memjax.data.babi.arrays", "load_arrays"),
  "load_examples": ("memjax.data.babi.examples", "load_examples"),
  "BabiDataNotFoundError": ("memjax.data.babi.parse", "BabiDataNotFoundError"),
  "BabiExample": ("memjax.data.babi.parse", "BabiExample"),
  "encode_story": ("memjax.data.babi.arrays", "encode_story"),
  "parse_babi": ("memjax.data.babi.parse", "parse_babi"),
  "tokenize": ("memjax.data.babi.parse", "tokenize"),
}


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)


__all__ = [
  "algorithmic",
  "buckets",
  "vocab",
  "AlgorithmicBatch",
  "AlgorithmicTask",
  "LengthGroups",
  "length_groups",
  "make_task",
  "sequence_costs",
  "Bucket",
  "OutOfVocabularyError",
  "Vocab",
  "associative_recall_task",
  "bucket_by_length",
  "copy_task",
  "even_boundaries",
  "repeat_copy_task",
  *_LAZY,
]
