"""memjax.continual.metrics on a hand-computed accuracy matrix, and the package doctests."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.continual import metrics

ACC = np.array(
  [
    [0.9, 0.0, 0.0],  # after task 0 (entries above the diagonal are ignored)
    [0.95, 0.8, 0.5],  # task 0 improved after task 1
    [0.7, 0.4, 1.0],
  ]
)


def test_average_accuracy_forgetting_and_backward_transfer():
  np.testing.assert_allclose(metrics.average_accuracy(ACC), [0.9, 0.875, 0.7])
  f = metrics.forgetting(ACC)
  assert np.isnan(f[0])
  # After task 1: task 0 rose 0.9 -> 0.95 (-0.05). After task 2: task 0 from its best so
  # far, 0.95 -> 0.7 (0.25), task 1 0.8 -> 0.4 (0.4).
  np.testing.assert_allclose(f[1:], [-0.05, 0.325])
  assert metrics.backward_transfer(ACC) == pytest.approx(((0.7 - 0.9) + (0.4 - 0.8)) / 2)
  assert np.isnan(metrics.backward_transfer(ACC[:1, :1]))


def test_bad_matrix_names_its_shape():
  with pytest.raises(ValueError, match=r"T x T with T >= 1, got shape \(2, 3\)"):
    metrics.average_accuracy(np.zeros((2, 3)))


@pytest.mark.parametrize(
  "name",
  [
    "memjax.continual",
    "memjax.continual.replay",
    "memjax.continual.ewc",
    "memjax.continual.distill",
  ],
)
def test_docstring_examples(name):
  result = doctest.testmod(
    importlib.import_module(name),
    extraglobs={"jax": jax, "jnp": jnp, "np": np},
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
  )
  assert result.attempted > 0 and result.failed == 0
