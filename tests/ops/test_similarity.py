"""Tests for memjax.ops.similarity against numpy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from memjax.ops import similarity as sim
from tests import _numpy_refs as refs

REFERENCES = refs.SIMILARITIES


def _data(batch, n=7, size=5, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((*batch, size)).astype(np.float32)
  k = rng.standard_normal((n, size)).astype(np.float32)
  return q, k


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_matches_numpy(name, batch):
  q, k = _data(batch)
  got = sim.get_similarity(name)(jnp.asarray(q), jnp.asarray(k))
  assert got.shape == (*batch, 7)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), REFERENCES[name](q, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_similarity_scores_by_name(name):
  q, k = _data((4,))
  np.testing.assert_allclose(
    np.asarray(sim.similarity_scores(q, k, name)), REFERENCES[name](q, k), rtol=1e-5, atol=1e-5
  )


def test_known_answers():
  q = jnp.array([1.0, 2.0])
  k = jnp.array([[1.0, 0.0], [0.0, 0.0], [1.0, 2.0]])
  np.testing.assert_allclose(sim.dot(q, k), [1.0, 0.0, 5.0])
  np.testing.assert_allclose(sim.scaled_dot(q, k), np.array([1.0, 0.0, 5.0]) / np.sqrt(2))
  # A zero key (an empty slot) has cosine 0, not NaN.
  np.testing.assert_allclose(sim.cosine(q, k), [1 / np.sqrt(5), 0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(sim.neg_sq_l2(q, k), [-4.0, -5.0, 0.0], atol=1e-6)


def test_cosine_bounded_and_neg_sq_l2_nonpositive():
  q, k = _data((16,), n=32)
  c = np.asarray(sim.cosine(q, k))
  assert np.all(np.abs(c) <= 1.0 + 1e-6)
  # Query equal to a key: the rounding of 2 q.k - |q|^2 - |k|^2 is clipped at 0.
  d = np.asarray(sim.neg_sq_l2(jnp.asarray(k[3]) * 1000, jnp.asarray(k) * 1000))
  assert np.all(d <= 0.0)
  assert d[3] == pytest.approx(0.0, abs=1.0)  # scale 1e6, so 1.0 is float32 rounding


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_bfloat16_in_bfloat16_out(name):
  q, k = _data((3,))
  qb, kb = jnp.asarray(q, jnp.bfloat16), jnp.asarray(k, jnp.bfloat16)
  got = sim.get_similarity(name)(qb, kb)
  assert got.dtype == jnp.bfloat16
  want = REFERENCES[name](np.asarray(qb, np.float32), np.asarray(kb, np.float32))
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2e-2, atol=5e-2)


def test_custom_callable_and_unknown_name():
  fn = lambda q, k: -jnp.abs(q @ k.T)
  assert sim.get_similarity(fn) is fn
  with pytest.raises(ValueError, match="similarity='euclid'"):
    sim.get_similarity("euclid")


@pytest.mark.parametrize(
  "query, keys, error, match",
  [
    (
      np.ones((2, 4), np.float32),
      np.ones((5, 3), np.float32),
      ValueError,
      "query has feature size 4",
    ),
    (
      np.ones((2, 3), np.int32),
      np.ones((5, 3), np.float32),
      TypeError,
      "query must have a floating",
    ),
    (
      np.ones((2, 3), np.float32),
      np.ones((5, 3), np.int32),
      TypeError,
      "keys must have a floating",
    ),
    (np.ones((2, 3), np.float32), np.ones((3,), np.float32), ValueError, "keys must have rank 2"),
    (np.ones((), np.float32), np.ones((5, 3), np.float32), ValueError, "query must have rank >= 1"),
  ],
)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_bad_inputs_name_the_argument(query, keys, error, match, name):
  with pytest.raises(error, match=match):
    sim.get_similarity(name)(query, keys)


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("dot", "scaled_dot", "cosine", "neg_sq_l2")
  def test_jit_matches_no_jit(self, name):
    q, k = _data((2, 3))
    got = self.variant(sim.get_similarity(name))(q, k)
    np.testing.assert_allclose(np.asarray(got), REFERENCES[name](q, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cosine", "neg_sq_l2"])
def test_gradients_finite_at_zero_vectors(name):
  # cosine / neg_sq_l2 of zero queries and keys (empty memory) have finite gradients.
  z = jnp.zeros((3,))
  keys = jnp.zeros((4, 3))
  g = jax.jit(jax.grad(lambda q, k: sim.get_similarity(name)(q, k).sum(), (0, 1)))(z, keys)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
