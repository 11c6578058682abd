"""Tests for memjax.ops.hrr (holographic reduced representations)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.ops import hrr
from tests import _numpy_refs as refs


def test_known_answer_length_3():
  a, b = jnp.array([1.0, 2.0, 3.0]), jnp.array([4.0, 5.0, 6.0])
  # c0 = 1*4 + 2*6 + 3*5, c1 = 1*5 + 2*4 + 3*6, c2 = 1*6 + 2*5 + 3*4
  np.testing.assert_allclose(hrr.bind(a, b), [31.0, 31.0, 28.0], rtol=1e-6)
  # y0 = 1*4 + 2*5 + 3*6, y1 = 1*5 + 2*6 + 3*4, y2 = 1*6 + 2*4 + 3*5
  np.testing.assert_allclose(hrr.unbind(b, a), [32.0, 29.0, 29.0], rtol=1e-6)
  np.testing.assert_array_equal(hrr.involution(a), [1.0, 3.0, 2.0])
  # Binding with a one-hot at index 1 is a cyclic shift by one.
  np.testing.assert_allclose(hrr.bind(a, jnp.array([0.0, 1.0, 0.0])), [3.0, 1.0, 2.0], atol=1e-6)


@pytest.mark.parametrize("d", [1, 2, 7, 8])
def test_matches_numpy_loops(d):
  rng = np.random.default_rng(d)
  a, b = rng.normal(size=d), rng.normal(size=d)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(
    hrr.bind(f32(a), f32(b)), refs.circular_convolution(a, b), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    hrr.unbind(f32(a), f32(b)), refs.circular_correlation(a, b), rtol=1e-5, atol=1e-5
  )
  # Correlation is convolution with the involution.
  np.testing.assert_allclose(
    hrr.unbind(f32(a), f32(b)), hrr.bind(f32(a), hrr.involution(f32(b))), rtol=1e-5, atol=1e-5
  )


def test_algebra_commutative_associative_bilinear():
  a, b, c = hrr.random_vectors(jax.random.key(0), 3, 64)
  np.testing.assert_allclose(hrr.bind(a, b), hrr.bind(b, a), atol=1e-6)
  np.testing.assert_allclose(hrr.bind(hrr.bind(a, b), c), hrr.bind(a, hrr.bind(b, c)), atol=1e-6)
  np.testing.assert_allclose(hrr.bind(a, b + 2 * c), hrr.bind(a, b) + 2 * hrr.bind(a, c), atol=1e-6)
  delta = jnp.zeros(64).at[0].set(1.0)  # the identity of binding
  np.testing.assert_allclose(hrr.bind(a, delta), a, atol=1e-6)
  np.testing.assert_allclose(hrr.involution(hrr.involution(a)), a)


def test_batch_axes_broadcast():
  keys = hrr.random_vectors(jax.random.key(1), 6, 16).reshape(2, 3, 16)
  v = hrr.random_vectors(jax.random.key(2), 1, 16)[0]
  out = hrr.bind(keys, v)  # [2, 3, D] with [D]
  assert out.shape == (2, 3, 16)
  np.testing.assert_allclose(out, refs.circular_convolution(keys, v), atol=1e-6)
  dec = hrr.unbind(v, keys)  # [D] trace with [2, 3, D] keys
  assert dec.shape == (2, 3, 16)
  np.testing.assert_allclose(dec, refs.circular_correlation(v, keys), atol=1e-6)


def test_unbind_cosine_matches_theory():
  # E|A_f|^4 = 2 per complex frequency => |a* (*) (a (*) b)|^2 -> 2 + 2/D, dot -> 1,
  # so cos(unbind(bind(a, b), a), b) -> 1 / sqrt(2 + 2/D).
  d, n = 1024, 256
  a = hrr.random_vectors(jax.random.key(3), n, d)
  b = hrr.random_vectors(jax.random.key(4), n, d)
  dec = hrr.unbind(hrr.bind(a, b), a)
  cos = jnp.sum(dec * b, -1) / (jnp.linalg.norm(dec, axis=-1) * jnp.linalg.norm(b, axis=-1))
  assert abs(float(cos.mean()) - 1 / math.sqrt(2 + 2 / d)) < 0.01
  # A different key decodes noise: cosine ~ 0 (std ~ 1/sqrt(D)).
  other = hrr.unbind(hrr.bind(a, b), jnp.roll(a, 1, axis=0))
  cos0 = jnp.sum(other * b, -1) / (jnp.linalg.norm(other, axis=-1) * jnp.linalg.norm(b, axis=-1))
  assert abs(float(cos0.mean())) < 0.01 and float(jnp.abs(cos0).max()) < 0.2


def test_dot_product_statistics_match_plate():
  # The variances the capacity benchmark's theory uses (derived in memjax/ops/hrr.py).
  d, n = 64, 4000
  a, b, c, e = hrr.random_vectors(jax.random.key(5), 4 * n, d).reshape(4, n, d)
  ab = hrr.bind(a, b)
  same = jnp.sum(ab * ab, -1)  # mean 1, var (6D + 4) / D^2
  shared = jnp.sum(ab * hrr.bind(a, c), -1)  # mean 0, var (2D + 2) / D^2
  unrelated = jnp.sum(ab * hrr.bind(c, e), -1)  # mean 0, var 1 / D
  assert abs(float(same.mean()) - 1) < 0.03
  np.testing.assert_allclose(float(same.var()), (6 * d + 4) / d**2, rtol=0.15)
  np.testing.assert_allclose(float(shared.var()), (2 * d + 2) / d**2, rtol=0.15)
  np.testing.assert_allclose(float(unrelated.var()), 1 / d, rtol=0.15)


def test_random_vectors_statistics():
  v = hrr.random_vectors(jax.random.key(6), 200, 512, jnp.bfloat16)
  assert v.shape == (200, 512) and v.dtype == jnp.bfloat16
  np.testing.assert_allclose(float(jnp.var(v.astype(jnp.float32))), 1 / 512, rtol=0.05)
  assert abs(float(jnp.mean(jnp.sum(v.astype(jnp.float32) ** 2, -1))) - 1) < 0.02


def test_superpose_and_cleanup():
  keys = hrr.random_vectors(jax.random.key(7), 5, 512)
  values = hrr.random_vectors(jax.random.key(8), 5, 512)
  trace = hrr.superpose(keys, values)
  pairs = refs.circular_convolution(keys, values)  # [5, D]
  np.testing.assert_allclose(trace, pairs.sum(0), atol=1e-5)
  w = jnp.array([1.0, 0.0, 2.0, 0.0, 0.0])
  np.testing.assert_allclose(hrr.superpose(keys, values, w), pairs[0] + 2 * pairs[2], atol=1e-5)
  found = hrr.cleanup(hrr.unbind(trace, keys), values)  # [5, D] queries at once
  np.testing.assert_array_equal(found.indices, np.arange(5))
  np.testing.assert_array_equal(found.values, values)
  masked = hrr.cleanup(hrr.unbind(trace, keys[0]), values, mask=jnp.arange(5) != 0)
  assert int(masked.indices) != 0


def test_dtype_follows_inputs():
  a = jnp.ones(8, jnp.bfloat16)
  assert hrr.bind(a, a).dtype == jnp.bfloat16
  assert hrr.unbind(a, a).dtype == jnp.bfloat16
  np.testing.assert_allclose(hrr.bind(a, a).astype(jnp.float32), np.full(8, 8.0))


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_bind_unbind_jit_equals_eager(self):
    a = jnp.array([1.0, -2.0, 0.5, 3.0])
    b = jnp.array([0.0, 1.0, 2.0, -1.0])
    out = self.variant(lambda a, b: hrr.unbind(hrr.bind(a, b), a))(a, b)
    want = refs.circular_correlation(
      refs.circular_convolution(np.asarray(a), np.asarray(b)), np.asarray(a)
    )
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_grads():
  a, b = hrr.random_vectors(jax.random.key(9), 2, 6)
  check_grads(jax.jit(hrr.bind), (a, b), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)
  check_grads(jax.jit(hrr.unbind), (a, b), order=1, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)
  # d/da sum(bind(a, b) * g) = correlation of g with b.
  g = hrr.random_vectors(jax.random.key(10), 1, 6)[0]
  grad = jax.grad(lambda a: jnp.sum(hrr.bind(a, b) * g))(a)
  np.testing.assert_allclose(grad, refs.circular_correlation(g, b), atol=1e-5)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: hrr.bind(jnp.ones(3), jnp.ones(4)), ValueError, "b has feature size 4"),
    (lambda: hrr.bind(jnp.ones(3, jnp.int32), jnp.ones(3)), TypeError, "a must have a floating"),
    (lambda: hrr.unbind(jnp.ones(3), jnp.ones(5)), ValueError, r"\bkey\b"),
    (lambda: hrr.unbind(jnp.ones(()), jnp.ones(3)), ValueError, r"\btrace\b"),
    (lambda: hrr.bind(jnp.ones((2, 3)), jnp.ones((4, 3))), ValueError, "do not broadcast"),
    (lambda: hrr.random_vectors(jax.random.key(0), 3, 0), ValueError, r"\bdim\b"),
    (
      lambda: hrr.superpose(jnp.ones((2, 4)), jnp.ones((2, 4)), jnp.ones(3)),
      ValueError,
      r"\bweights\b",
    ),
    (lambda: hrr.superpose(jnp.ones(4), jnp.ones((2, 4))), ValueError, r"\bkeys\b"),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
