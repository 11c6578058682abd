"""Continual-learning scores of an accuracy matrix (numpy, on the host).

``acc[i, j]`` is the accuracy on task ``j``'s test set after training on tasks ``0..i``
(T x T; entries above the diagonal, tasks not trained yet, are ignored).

* :func:`average_accuracy`: after task ``i``, the mean of ``acc[i, :i+1]``.
* :func:`forgetting`: after task ``i`` (``i >= 1``), the mean over the earlier tasks ``j``
  of the drop from their best accuracy so far, ``max_{l in [j, i)} acc[l, j] - acc[i, j]``
  (Chaudhry et al. 2018); NaN after the first task (nothing to forget yet).
* :func:`backward_transfer`: ``mean_{j < T-1} acc[T-1, j] - acc[j, j]`` (Lopez-Paz &
  Ranzato 2017; negative = forgetting).

References:
  Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning" (forgetting measure).
  Lopez-Paz, Ranzato 2017, "Gradient Episodic Memory for Continual Learning" (BWT).
"""

from __future__ import annotations

import numpy as np


def _square(acc) -> np.ndarray:
  acc = np.asarray(acc, np.float64)
  if acc.ndim != 2 or acc.shape[0] != acc.shape[1] or acc.shape[0] < 1:
    raise ValueError(f"the accuracy matrix must be T x T with T >= 1, got shape {acc.shape}")
  return acc


def average_accuracy(acc) -> np.ndarray:
  """[T] the mean accuracy over the tasks seen so far, after each task."""
  acc = _square(acc)
  return np.array([acc[i, : i + 1].mean() for i in range(acc.shape[0])])


def forgetting(acc) -> np.ndarray:
  """[T] the mean drop from each earlier task's best accuracy, after each task (NaN at 0)."""
  acc = _square(acc)
  out = [np.nan]
  for i in range(1, acc.shape[0]):
    best = np.array([acc[j:i, j].max() for j in range(i)])
    out.append(float(np.mean(best - acc[i, :i])))
  return np.array(out)


def backward_transfer(acc) -> float:
  """The mean change of each earlier task's accuracy from just after it to the end (NaN
  for one task)."""
  acc = _square(acc)
  t = acc.shape[0]
  if t < 2:
    return float("nan")
  return float(np.mean(acc[t - 1, : t - 1] - np.diag(acc)[: t - 1]))


__all__ = ["average_accuracy", "forgetting", "backward_transfer"]
