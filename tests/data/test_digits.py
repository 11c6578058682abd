"""memjax.data.digits: scikit-learn's digits, the stratified split, Split-digits,
Permuted-digits (against the recorded permutations) and Omniglot alphabets as tasks (on
synthetic arrays)."""

import numpy as np
import pytest

from memjax.data import digits
from memjax.data.omniglot import OmniglotArrays


@pytest.fixture(scope="module")
def raw():
  return digits.load_digits()


def test_load_digits(raw):
  x, y = raw
  assert x.shape == (1797, 8, 8) and x.dtype == np.float32 and y.dtype == np.int32
  assert x.min() == 0.0 and x.max() == 1.0  # 16 grey levels scaled by 1/16
  np.testing.assert_array_equal(np.unique(np.round(x * 16)), np.arange(17))
  assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_stratified_split_is_disjoint_complete_and_proportional(raw):
  _, y = raw
  train, test = digits.stratified_split(y, 0.2, seed=3)
  assert len(np.intersect1d(train, test)) == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
  for c in range(10):
    n = np.sum(y == c)
    assert np.sum(y[test] == c) == round(0.2 * n)
  again, _ = digits.stratified_split(y, 0.2, seed=3)
  other, _ = digits.stratified_split(y, 0.2, seed=4)
  np.testing.assert_array_equal(train, again)
  assert not np.array_equal(train, other)


def test_split_digits_tasks_hold_their_classes_and_every_example_once(raw):
  x, y = raw
  seq = digits.split_digits(2, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0], seed=1)
  assert seq.num_classes == 10 and seq.input_shape == (8, 8) and len(seq.tasks) == 5
  assert [t.classes.tolist() for t in seq.tasks] == [[8, 9], [6, 7], [4, 5], [2, 3], [0, 1]]
  for t in seq.tasks:
    assert set(np.unique(t.train_y)) == set(t.classes) == set(np.unique(t.test_y))
  train_n = sum(len(t.train_y) for t in seq.tasks)
  test_n = sum(len(t.test_y) for t in seq.tasks)
  assert train_n + test_n == len(y) and seq.info["train_test"] == [train_n, test_n]
  # The images are the dataset's, each once: match them back by content.
  stacked = np.concatenate([t.train_x for t in seq.tasks] + [t.test_x for t in seq.tasks])
  keys = {row.tobytes() for row in stacked.reshape(len(stacked), -1)}
  assert keys == {row.tobytes() for row in x.reshape(len(x), -1)}
  five = digits.split_digits(5)
  assert [t.classes.tolist() for t in five.tasks] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_permuted_digits_apply_the_recorded_permutations():
  seq = digits.permuted_digits(3, seed=2)
  perms = [np.asarray(p) for p in seq.info["permutations"]]
  np.testing.assert_array_equal(perms[0], np.arange(64))  # the first task unpermuted
  assert all(sorted(p) == list(range(64)) for p in perms)
  assert not np.array_equal(perms[1], perms[2])
  base = seq.tasks[0]
  for task, perm in zip(seq.tasks, perms, strict=True):
    np.testing.assert_array_equal(task.classes, np.arange(10))
    np.testing.assert_array_equal(task.train_y, base.train_y)
    flat = base.test_x.reshape(len(base.test_x), -1)[:, perm]
    np.testing.assert_array_equal(task.test_x.reshape(len(flat), -1), flat)
  shuffled = digits.permuted_digits(2, first_identity=False, seed=2)
  assert not np.array_equal(shuffled.info["permutations"][0], np.arange(64))


def _omniglot():
  rng = np.random.default_rng(0)
  return OmniglotArrays(
    images=rng.random((7, 20, 6, 6)).astype(np.float32),
    alphabet=np.array([0, 0, 1, 1, 1, 2, 2], np.int32),
    alphabet_names=("A", "B", "C"),
    character_names=tuple(f"x/{i}" for i in range(7)),
  )


def test_omniglot_alphabets_are_tasks_of_their_characters():
  arrays = _omniglot()
  seq = digits.omniglot_alphabets(arrays, num_alphabets=2, num_train_drawers=15)
  assert seq.num_classes == 5 and seq.input_shape == (6, 6)
  assert [t.classes.tolist() for t in seq.tasks] == [[0, 1], [2, 3, 4]]
  assert seq.info["alphabets"] == ["A", "B"]
  task = seq.tasks[1]
  assert task.train_x.shape == (45, 6, 6) and task.test_x.shape == (15, 6, 6)
  # Character 3 (the second of alphabet B), drawer 4 and test drawer 17.
  np.testing.assert_array_equal(task.train_x[15 + 4], arrays.images[3, 4])
  assert task.train_y[15 + 4] == 3
  np.testing.assert_array_equal(task.test_x[5 + 2], arrays.images[3, 17])
  assert task.test_y[5 + 2] == 3


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match="classes_per_task=3 must divide 10"):
    digits.split_digits(3)
  with pytest.raises(ValueError, match="must be a permutation of 0..9"):
    digits.split_digits(2, class_order=[0] * 10)
  with pytest.raises(ValueError, match=r"test_fraction=1.5 must be in \(0, 1\)"):
    digits.split_digits(test_fraction=1.5)
  with pytest.raises(ValueError, match="num_tasks=0 must be a positive int"):
    digits.permuted_digits(0)
  with pytest.raises(ValueError, match=r"num_train_drawers=20 must be in \[1, 19\]"):
    digits.omniglot_alphabets(_omniglot(), num_train_drawers=20)
  with pytest.raises(ValueError, match=r"num_alphabets=4 must be in \[1, 3\]"):
    digits.omniglot_alphabets(_omniglot(), num_alphabets=4)
