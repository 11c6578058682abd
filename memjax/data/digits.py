"""Task sequences for continual learning: Split-digits, Permuted-digits, Omniglot alphabets.

The digits are scikit-learn's 8x8 handwritten digits (``sklearn.datasets.load_digits``:
1,797 images of 10 classes, 16 grey levels; they ship with scikit-learn, no download), the
small stand-in for MNIST in the continual-learning benchmarks:

* :func:`split_digits`: the classes in tasks of two, (0, 1), (2, 3), ... as Split-MNIST.
  Task-incremental or class-incremental is the model's choice (which outputs it may use:
  the task's classes, or every class seen so far), not the data's.
* :func:`permuted_digits`: every task holds all 10 classes with its own fixed permutation of
  the 64 pixels (Permuted-MNIST; domain-incremental).
* :func:`omniglot_alphabets`: each task one Omniglot alphabet, its characters the classes
  (``memjax.data.omniglot.load``); drawers 1-15 train, 16-20 test by default.

Every sequence is a :class:`TaskSequence` of :class:`Task` s with numpy arrays, labels
global (a class keeps its label across tasks), and one stratified train/test split.

Example:
  >>> seq = split_digits()
  >>> len(seq.tasks), seq.num_classes, seq.tasks[0].classes.tolist()
  (5, 10, [0, 1])
  >>> seq.tasks[0].train_x.shape[1:]
  (8, 8)

References:
  van de Ven, Tolias 2019, "Three scenarios for continual learning" (Split / Permuted
  MNIST; task-, domain- and class-incremental).
  Goodfellow et al. 2013, "An Empirical Investigation of Catastrophic Forgetting in
  Gradient-Based Neural Networks" (permuted inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8)


class Task(NamedTuple):
  """One task of a sequence (global labels)."""

  train_x: np.ndarray  # [n, *input_shape] float32
  train_y: np.ndarray  # [n] int32 class labels
  test_x: np.ndarray  # [m, *input_shape] float32
  test_y: np.ndarray  # [m] int32
  classes: np.ndarray  # [k] int32 the classes the task holds, sorted


class TaskSequence(NamedTuple):
  """Tasks learned one after another."""

  name: str
  tasks: tuple[Task, ...]
  num_classes: int  # C, the outputs a class-incremental model needs
  input_shape: tuple[int, ...]
  info: dict[str, Any]  # what results.json records about the data


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits: ``(images [1797, 8, 8] float32 in [0, 1], labels [1797] int32)``."""
  from sklearn.datasets import load_digits as _sklearn_digits  # noqa: PLC0415

  data = _sklearn_digits()
  return (data.images / 16.0).astype(np.float32), data.target.astype(np.int32)


def stratified_split(
  labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, test)``: each class split in the same proportion, seeded.

  Args:
    labels: [n] int class labels.
    test_fraction: in (0, 1): the share of each class held out (at least one example of
      every class with two or more).
    seed: the shuffle's seed.

  Returns:
    Two sorted int64 index arrays, disjoint, covering ``range(n)``.
  """
  if not 0.0 < float(test_fraction) < 1.0:
    raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = min(max(int(round(test_fraction * len(idx))), 1), len(idx) - 1) if len(idx) > 1 else 0
    test.append(idx[:k])
    train.append(idx[k:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _task(x, y, train, test, classes) -> Task:
  keep_train = train[np.isin(y[train], classes)]
  keep_test = test[np.isin(y[test], classes)]
  return Task(
    x[keep_train], y[keep_train], x[keep_test], y[keep_test], np.sort(classes).astype(np.int32)
  )


def split_digits(
  classes_per_task: int = 2,
  class_order: Sequence[int] | None = None,
  *,
  test_fraction: float = 0.2,
  seed: int = 0,
) -> TaskSequence:
  """Split-digits: the 10 classes in tasks of ``classes_per_task``.

  Args:
    classes_per_task: k; must divide 10.
    class_order: the classes in the order the tasks take them (default 0..9).
    test_fraction: each class's share held out for testing.
    seed: the train/test split's seed.

  Raises:
    ValueError: a k that does not divide 10, or an order that is not a permutation of 0..9.
  """
  if isinstance(classes_per_task, bool) or classes_per_task not in (1, 2, 5, 10):
    raise ValueError(f"classes_per_task={classes_per_task!r} must divide 10 (1, 2, 5 or 10)")
  order = np.arange(NUM_CLASSES) if class_order is None else np.asarray(class_order)
  if sorted(order.tolist()) != list(range(NUM_CLASSES)):
    raise ValueError(f"class_order={list(class_order)} must be a permutation of 0..9")
  x, y = load_digits()
  train, test = stratified_split(y, test_fraction, seed)
  groups = order.reshape(-1, classes_per_task)
  tasks = tuple(_task(x, y, train, test, g) for g in groups)
  info = {
    "source": "sklearn.datasets.load_digits (8x8, 1,797 images)",
    "task_classes": groups.tolist(),
    "train_test": [len(train), len(test)],
    "test_fraction": test_fraction,
    "split_seed": seed,
  }
  return TaskSequence("split_digits", tasks, NUM_CLASSES, IMAGE_SHAPE, info)


def permuted_digits(
  num_tasks: int = 5,
  *,
  first_identity: bool = True,
  test_fraction: float = 0.2,
  seed: int = 0,
) -> TaskSequence:
  """Permuted-digits: every task all 10 classes, its own fixed permutation of the pixels.

  Args:
    num_tasks: the number of tasks.
    first_identity: task 0 sees the digits unpermuted.
    test_fraction: each class's share held out (the same examples in every task).
    seed: the split's and the permutations' seed.
  """
  if isinstance(num_tasks, bool) or int(num_tasks) < 1:
    raise ValueError(f"num_tasks={num_tasks!r} must be a positive int")
  x, y = load_digits()
  train, test = stratified_split(y, test_fraction, seed)
  flat = x.reshape(len(x), -1)
  rng = np.random.default_rng(seed + 1)
  perms = [
    np.arange(flat.shape[1]) if (i == 0 and first_identity) else rng.permutation(flat.shape[1])
    for i in range(num_tasks)
  ]
  classes = np.arange(NUM_CLASSES, dtype=np.int32)
  tasks = tuple(_task(flat[:, p].reshape(x.shape), y, train, test, classes) for p in perms)
  info = {
    "source": "sklearn.datasets.load_digits (8x8, 1,797 images)",
    "permutations": [p.tolist() for p in perms],
    "train_test": [len(train), len(test)],
    "test_fraction": test_fraction,
    "split_seed": seed,
  }
  return TaskSequence("permuted_digits", tasks, NUM_CLASSES, IMAGE_SHAPE, info)


def omniglot_alphabets(
  arrays: Any,
  *,
  num_alphabets: int | None = None,
  num_train_drawers: int = 15,
) -> TaskSequence:
  """Omniglot as a task sequence: each alphabet a task, its characters the classes.

  Args:
    arrays: a ``memjax.data.omniglot.OmniglotArrays`` (``omniglot.load()``): images
      [C, 20, S, S], alphabet [C] (characters sorted by alphabet).
    num_alphabets: the first this many alphabets (default all), in name order.
    num_train_drawers: drawers 0..this-1 of each character train, the rest test.

  Returns:
    A TaskSequence whose class labels are character indices into ``arrays`` (restricted
    to the alphabets taken, renumbered from 0 in order).

  Raises:
    ValueError: a bad ``num_train_drawers`` or ``num_alphabets``, or arrays whose fields
      disagree.
  """
  images = np.asarray(arrays.images, np.float32)
  alphabet = np.asarray(arrays.alphabet)
  if images.ndim != 4 or alphabet.shape != (images.shape[0],):
    raise ValueError(
      f"arrays.images {images.shape} must be [C, drawers, S, S] and arrays.alphabet "
      f"{alphabet.shape} [C]"
    )
  drawers = images.shape[1]
  if not 1 <= int(num_train_drawers) < drawers:
    raise ValueError(f"num_train_drawers={num_train_drawers} must be in [1, {drawers - 1}]")
  names = list(arrays.alphabet_names)
  count = len(names) if num_alphabets is None else int(num_alphabets)
  if not 1 <= count <= len(names):
    raise ValueError(f"num_alphabets={num_alphabets} must be in [1, {len(names)}]")
  keep = np.isin(alphabet, np.arange(count))
  images, alphabet = images[keep], alphabet[keep]
  labels = np.arange(len(images), dtype=np.int32)
  k = int(num_train_drawers)
  tasks = []
  for a in range(count):
    chars = np.flatnonzero(alphabet == a)
    x_train = images[chars, :k].reshape(-1, *images.shape[2:])
    x_test = images[chars, k:].reshape(-1, *images.shape[2:])
    y_train = np.repeat(labels[chars], k)
    y_test = np.repeat(labels[chars], drawers - k)
    tasks.append(Task(x_train, y_train, x_test, y_test, labels[chars]))
  info = {
    "source": "memjax.data.omniglot",
    "alphabets": names[:count],
    "characters_per_alphabet": [len(t.classes) for t in tasks],
    "train_test_drawers": [k, drawers - k],
  }
  return TaskSequence("omniglot_alphabets", tuple(tasks), len(images), images.shape[2:], info)


__all__ = [
  "NUM_CLASSES",
  "IMAGE_SHAPE",
  "Task",
  "TaskSequence",
  "load_digits",
  "stratified_split",
  "split_digits",
  "permuted_digits",
  "omniglot_alphabets",
]
