"""Length bucketing: group examples by length so each group is padded to its own longest.

Padding every example to the longest in the data wastes the work on padding; grouping
examples into a few static lengths (buckets) keeps the compiled shapes few while most
examples are padded only to their bucket. Pure numpy, for the data pipeline.

Example:
  >>> even_boundaries(10, 3)
  (4, 7, 10)
  >>> [(b.indices.tolist(), b.max_lengths) for b in bucket_by_length([2, 9, 4, 1], (4, 10))]
  [([0, 2, 3], (4,)), ([1], (9,))]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class Bucket(NamedTuple):
  """One non-empty bucket of :func:`bucket_by_length`."""

  indices: np.ndarray  # [E_b] int64, increasing: the examples in this bucket
  max_lengths: tuple[int, ...]  # [D]: the longest of these examples along each axis


def even_boundaries(total: int, num_buckets: int) -> tuple[int, ...]:
  """``num_buckets`` evenly spaced static lengths ``<= total``, the last one ``total``.

  Args:
    total: the longest length.
    num_buckets: how many lengths, 1..total.

  Returns:
    Increasing lengths ``ceil(total * i / num_buckets)`` for ``i = 1..num_buckets``.

  Raises:
    ValueError: ``num_buckets`` is not an int in ``[1, total]``.

  Example:
    >>> even_boundaries(8, 4), even_boundaries(5, 1)
    ((2, 4, 6, 8), (5,))
  """
  if not isinstance(num_buckets, int) or not 1 <= num_buckets <= total:
    raise ValueError(f"num_buckets={num_buckets!r} must be an int in [1, {total}]")
  return tuple(sorted({-(-total * i // num_buckets) for i in range(1, num_buckets + 1)}))


def _check_boundaries(boundaries: Sequence[Sequence[int]], num_axes: int) -> list[np.ndarray]:
  if len(boundaries) != num_axes:
    raise ValueError(
      f"boundaries must give one sequence per length axis ({num_axes}), got {len(boundaries)}"
    )
  out = []
  for axis, bounds in enumerate(boundaries):
    bounds = np.asarray(bounds)
    if bounds.ndim != 1 or bounds.size == 0 or not np.issubdtype(bounds.dtype, np.integer):
      raise ValueError(f"boundaries of axis {axis} must be a non-empty sequence of ints")
    if bounds[0] < 0 or np.any(np.diff(bounds) <= 0):
      raise ValueError(
        f"boundaries of axis {axis} must be non-negative and increasing, got {bounds.tolist()}"
      )
    out.append(bounds)
  return out


def bucket_by_length(
  lengths: ArrayLike, boundaries: Sequence[int] | Sequence[Sequence[int]]
) -> list[Bucket]:
  """Groups examples by the smallest boundary that holds each of their lengths.

  An example of length ``n`` along an axis goes to the smallest boundary ``>= n`` of that
  axis; with D axes (e.g. sentences per story and words per sentence) a bucket is one
  combination of boundaries.

  Args:
    lengths: int [E] (one length per example) or [E, D] (one per example and axis).
    boundaries: increasing non-negative ints (lengths [E]), or one such sequence per axis
      (lengths [E, D]). The last boundary of an axis must hold the longest example.

  Returns:
    The non-empty buckets, ordered by boundary (axis 0 slowest, as nested loops over
    the axes' boundaries); each holds its example indices (increasing; every index in
    exactly one bucket) and its longest length per axis (a D-tuple, D = 1 for [E]).

  Raises:
    ValueError: lengths that are not [E] or [E, D] ints, negative or longer than the
      last boundary, or boundaries that are not increasing ints, one sequence per axis.

  Example:
    >>> buckets = bucket_by_length([[3, 5], [7, 2], [1, 6]], [(4, 8), (5, 6)])
    >>> [(b.indices.tolist(), b.max_lengths) for b in buckets]
    [([0], (3, 5)), ([2], (1, 6)), ([1], (7, 2))]
  """
  lengths = np.asarray(lengths)
  if lengths.ndim == 1:
    lengths, boundaries = lengths[:, None], [boundaries]
  if lengths.ndim != 2 or not (np.issubdtype(lengths.dtype, np.integer) or lengths.size == 0):
    raise ValueError(
      f"lengths must be ints of shape [E] or [E, D], got {lengths.dtype}{list(lengths.shape)}"
    )
  bounds = _check_boundaries(boundaries, lengths.shape[1])
  if lengths.shape[0] == 0:
    return []
  if np.any(lengths < 0):
    raise ValueError("lengths must be non-negative")
  ids = np.stack([np.searchsorted(b, lengths[:, d]) for d, b in enumerate(bounds)], axis=1)
  for d, b in enumerate(bounds):
    too_long = int(np.sum(ids[:, d] == len(b)))
    if too_long:
      raise ValueError(
        f"{too_long} example(s) are longer along axis {d} (up to {int(lengths[:, d].max())}) "
        f"than its last boundary {int(b[-1])}"
      )
  flat = np.ravel_multi_index(tuple(ids.T), tuple(len(b) for b in bounds))
  order = np.argsort(flat, kind="stable")  # indices stay increasing within a bucket
  _, starts = np.unique(flat[order], return_index=True)
  out = []
  for indices in np.split(order, starts[1:]):
    indices = indices.astype(np.int64)
    out.append(Bucket(indices, tuple(int(x) for x in lengths[indices].max(axis=0))))
  return out
