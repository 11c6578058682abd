"""Omniglot (Lake et al. 2015) for few-shot learning: TFDS builder, arrays, episode sampler.

Modules, each built on the ones before:

* ``source``: the official zips (``images_background.zip``, ``images_evaluation.zip``,
  ``images_background_small1.zip``, ``images_background_small2.zip``): finding,
  downloading, reading and checking them, merging the characters of several zips.
* ``builder``: ``Omniglot``, a ``tfds.core.GeneratorBasedBuilder`` (registered as
  ``memjax_omniglot``, ArrayRecord, no TensorFlow), one example per character.
* ``arrays``: ``load`` (characters as float32 [C, 20, S, S], 1 = ink, area-resized from
  105x105; the TFDS data prepared on first use, keyed by the zips' content, in
  ``tfds_dir`` / ``$TFDS_DATA_DIR``), ``split_characters`` (disjoint meta-train /
  meta-test characters or alphabets).
* ``episodes``: ``sample_episodes``, N-way K-shot tasks sampled in pure JAX (jit, scan,
  vmap), classes = (character, rotation by a multiple of 90 degrees) as in MAML.

The zips are read from ``data_dir`` (default ``$MEMJAX_DATA_DIR/omniglot``); with none
there, from the official URL (downloaded once into the cache folder).

De-duplication: the "minimal" background splits ``images_background_small1`` (Balinese,
Early_Aramaic, Greek, Korean, Latin) and ``images_background_small2`` (Greek,
Japanese_(katakana), Latin, Sanskrit, Tagalog) BOTH hold Greek (24 characters) and Latin
(26): the same file names with byte-identical PNGs (checked on the official zips: all 1,000
files). Each character is kept once (``source.read_characters``), so none can land in
both meta-train and meta-test: the two zips give 8 alphabets, 242 characters, 4,840
images. (The minimal splits are subsets of ``images_background``: with that zip present too,
their characters are kept once the same way; a character whose drawings differ between
zips is refused.)

``builder`` imports tensorflow_datasets, so it and ``Omniglot`` load on first use; the
rest imports numpy, Pillow (when decoding) and JAX only.

Example::

  from memjax.data import omniglot
  arrays = omniglot.load()                       # $MEMJAX_DATA_DIR/omniglot
  train, test = omniglot.split_characters(arrays, num_test=50)
  episodes = omniglot.sample_episodes(key, train.images, num_tasks=32, num_ways=5,
                                      num_shots=1, num_queries=15)
  episodes.support_x.shape                       # (32, 5, 28, 28, 1)

References:
  Lake, Salakhutdinov, Tenenbaum. "Human-level concept learning through probabilistic
  program induction", Science 350 (2015). Santoro et al. "Meta-Learning with
  Memory-Augmented Neural Networks", ICML 2016. Finn, Abbeel, Levine. "Model-Agnostic
  Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
"""

from memjax import _lazy
from memjax.data.omniglot import arrays, episodes, source
from memjax.data.omniglot.arrays import (
  OmniglotArrays,
  area_resize,
  cache_dir,
  describe,
  load,
  prepare,
  split_characters,
)
from memjax.data.omniglot.episodes import Episodes, rotate_indices, sample_episodes
from memjax.data.omniglot.source import (
  OmniglotDataNotFoundError,
  OmniglotFormatError,
  read_characters,
  read_zip,
)

_LAZY = {
  "builder": ("memjax.data.omniglot.builder", None),
  "Omniglot": ("memjax.data.omniglot.builder", "Omniglot"),
}


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)


__all__ = [
  "arrays",
  "episodes",
  "source",
  "Episodes",
  "OmniglotArrays",
  "OmniglotDataNotFoundError",
  "OmniglotFormatError",
  "area_resize",
  "cache_dir",
  "describe",
  "load",
  "prepare",
  "read_characters",
  "read_zip",
  "rotate_indices",
  "sample_episodes",
  "split_characters",
  *_LAZY,
]
