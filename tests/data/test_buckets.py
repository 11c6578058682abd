"""Tests for memjax.data.buckets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from memjax.data.buckets import Bucket, bucket_by_length, even_boundaries


def test_even_boundaries_known_answers():
  assert even_boundaries(10, 1) == (10,)
  assert even_boundaries(10, 3) == (4, 7, 10)
  assert even_boundaries(8, 4) == (2, 4, 6, 8)
  assert even_boundaries(5, 5) == (1, 2, 3, 4, 5)
  assert even_boundaries(20, 6) == (4, 7, 10, 14, 17, 20)


@pytest.mark.parametrize("num_buckets", [0, 6, 2.0, "2", None])
def test_even_boundaries_errors(num_buckets):
  with pytest.raises(ValueError, match=r"must be an int in \[1, 5\]"):
    even_boundaries(5, num_buckets)


def _as_lists(buckets):
  return [(b.indices.tolist(), b.max_lengths) for b in buckets]


def test_bucket_by_length_one_axis_known_answer():
  buckets = bucket_by_length(np.array([5, 1, 3, 0, 8, 4]), (2, 4, 8))
  assert _as_lists(buckets) == [([1, 3], (1,)), ([2, 5], (4,)), ([0, 4], (8,))]
  assert all(isinstance(b, Bucket) and b.indices.dtype == np.int64 for b in buckets)
  # Empty buckets are left out; a length equal to a boundary goes to that boundary.
  assert _as_lists(bucket_by_length([4, 4], [2, 4, 8])) == [([0, 1], (4,))]
  assert bucket_by_length(np.zeros([0], np.int32), [3]) == []


def test_bucket_by_length_two_axes_known_answer():
  lengths = [[3, 5], [7, 2], [1, 6], [8, 6], [4, 1]]
  buckets = bucket_by_length(lengths, [(4, 8), (5, 6)])
  # Ordered by (axis 0 boundary, axis 1 boundary), as nested loops.
  assert _as_lists(buckets) == [
    ([0, 4], (4, 5)),
    ([2], (1, 6)),
    ([1], (7, 2)),
    ([3], (8, 6)),
  ]


def test_bucket_by_length_holds_every_index_once_in_order():
  rng = np.random.default_rng(0)
  lengths = rng.integers(0, 20, size=(500, 3))
  boundaries = [(5, 10, 19), (19,), (0, 1, 2, 7, 19)]
  buckets = bucket_by_length(lengths, boundaries)
  indices = np.concatenate([b.indices for b in buckets])
  assert sorted(indices.tolist()) == list(range(500))
  order = list(itertools.product(*(range(len(b)) for b in boundaries)))
  keys = []
  for b in buckets:
    assert (np.diff(b.indices) > 0).all()
    ids = [np.searchsorted(bounds, lengths[b.indices, d]) for d, bounds in enumerate(boundaries)]
    assert all((i == i[0]).all() for i in ids)  # one boundary per axis in a bucket
    keys.append(tuple(int(i[0]) for i in ids))
    assert b.max_lengths == tuple(lengths[b.indices].max(0).tolist())
    for d, k in enumerate(keys[-1]):
      assert b.max_lengths[d] <= boundaries[d][k]
      assert k == 0 or b.max_lengths[d] > boundaries[d][k - 1]
  assert keys == sorted(keys, key=order.index)


@pytest.mark.parametrize(
  "lengths, boundaries, message",
  [
    ([1, 9], (4, 8), r"1 example\(s\) are longer along axis 0 \(up to 9\) than its last"),
    ([[1, 3]], [(4,), (2,)], "longer along axis 1"),
    ([1, -1], (4,), "non-negative"),
    ([1.5], (4,), "lengths must be ints"),
    (np.zeros([2, 2, 2], int), [(4,), (4,)], "lengths must be ints of shape"),
    ([1], (4, 4), "increasing"),
    ([1], (-1, 4), "non-negative and increasing"),
    ([1], (), "non-empty sequence of ints"),
    ([1], (2.5, 4), "non-empty sequence of ints"),
    ([[1, 2]], [(4,)], r"one sequence per length axis \(2\), got 1"),
  ],
)
def test_bucket_by_length_errors(lengths, boundaries, message):
  with pytest.raises(ValueError, match=message):
    bucket_by_length(lengths, boundaries)
