"""NTM addressing: hand-computed known answers, a numpy loop reference, grads, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from memjax.ops import addressing
from tests import _numpy_refs as refs


def test_content_weights_known_answer():
  memory = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  w = addressing.content_weights(memory, jnp.array([1.0, 0.0]), jnp.array(2.0))
  # cos = [1, 0, 1/sqrt(2)]; softmax(2 cos) = [e^2, 1, e^sqrt2] / (e^2 + 1 + e^sqrt2).
  np.testing.assert_allclose(w, [0.591013, 0.079985, 0.329002], atol=1e-5)


def test_content_weights_beta_zero_is_uniform_and_large_beta_is_argmax():
  memory = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
  key = jnp.array([0.2, 1.0])
  np.testing.assert_allclose(
    addressing.content_weights(memory, key, jnp.array(0.0)), np.full(4, 0.25), atol=1e-6
  )
  w = addressing.content_weights(memory, key, jnp.array(200.0))
  np.testing.assert_allclose(w, [0, 1, 0, 0], atol=1e-6)


def test_content_weights_several_heads_and_zero_memory_are_finite():
  memory = jnp.zeros((5, 3))
  keys = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
  w = addressing.content_weights(memory, keys, jnp.array([1.0, 5.0]))
  np.testing.assert_allclose(w, np.full((2, 5), 0.2), atol=1e-6)


def test_interpolate_known_answer():
  w = addressing.interpolate(
    jnp.array([0.5, 0.5, 0.0]), jnp.array([0.0, 0.0, 1.0]), jnp.array(0.25)
  )
  np.testing.assert_allclose(w, [0.125, 0.125, 0.75], atol=1e-7)


@pytest.mark.parametrize(
  "w, shift, expected",
  [
    ([1, 0, 0, 0, 0], [0, 0, 1], [0, 1, 0, 0, 0]),  # +1
    ([1, 0, 0, 0, 0], [1, 0, 0], [0, 0, 0, 0, 1]),  # -1 wraps to the last slot
    ([0, 0, 0, 0, 1], [0.1, 0.2, 0.7], [0.7, 0, 0, 0.1, 0.2]),  # +1 wraps to slot 0
    ([0.1, 0.2, 0.3, 0.4, 0.0], [0.5, 0.5, 0], [0.15, 0.25, 0.35, 0.2, 0.05]),
    ([0.1, 0.2, 0.3, 0.4, 0.0], [0, 1, 0], [0.1, 0.2, 0.3, 0.4, 0.0]),  # identity
  ],
)
def test_circular_shift_known_answers_length_5(w, shift, expected):
  out = addressing.circular_shift(jnp.array(w, jnp.float32), jnp.array(shift, jnp.float32))
  np.testing.assert_allclose(out, expected, atol=1e-7)


def test_circular_shift_matches_loop_reference_with_range_2():
  rng = np.random.default_rng(0)
  w = rng.dirichlet(np.ones(7), size=3).astype(np.float32)
  s = rng.dirichlet(np.ones(5), size=3).astype(np.float32)
  ref = np.zeros_like(w)
  for h in range(3):
    for i in range(7):
      for j in range(7):
        d = (i - j) % 7  # shift from slot j to slot i
        d = d if d <= 2 else d - 7
        if -2 <= d <= 2:
          ref[h, i] += w[h, j] * s[h, d + 2]
  np.testing.assert_allclose(addressing.circular_shift(jnp.array(w), jnp.array(s)), ref, atol=1e-6)


def test_sharpen_known_answer():
  w = addressing.sharpen(jnp.array([0.5, 0.25, 0.25]), jnp.array(2.0))
  np.testing.assert_allclose(w, [2 / 3, 1 / 6, 1 / 6], atol=1e-5)
  np.testing.assert_allclose(
    addressing.sharpen(jnp.array([0.5, 0.25, 0.25]), jnp.array(1.0)), [0.5, 0.25, 0.25], atol=1e-5
  )


def test_sharpen_of_a_diffuse_weighting_with_a_large_gamma_does_not_underflow():
  # w^gamma formed in float32 is 0 for every slot here ((1/128)^50 ~ 1e-105): the head's
  # weighting and its gradient would vanish. The ratio itself is well defined.
  w = np.random.default_rng(0).dirichlet(np.full(128, 50.0))  # every entry near 1/128
  gamma = 50.0
  p = (w + 1e-6) ** gamma  # float64: ~1e-100, no underflow
  want = p / p.sum()
  got = addressing.sharpen(jnp.asarray(w, jnp.float32), jnp.array(gamma))
  assert got.dtype == jnp.float32 and float(jnp.sum(got)) == pytest.approx(1.0, abs=1e-5)
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-7)
  grad = jax.grad(lambda v: addressing.sharpen(v, jnp.array(gamma))[int(np.argmax(w))])(
    jnp.asarray(w, jnp.float32)
  )
  assert np.all(np.isfinite(grad)) and float(jnp.max(jnp.abs(grad))) > 1.0


def test_sharpen_of_one_hot_is_finite_with_finite_gamma_grad():
  w = jnp.array([1.0, 0.0, 0.0, 0.0])
  g = jax.grad(lambda gamma: addressing.sharpen(w, gamma)[0])(jnp.array(3.0))
  assert np.isfinite(g)
  np.testing.assert_allclose(addressing.sharpen(w, jnp.array(3.0)), [1, 0, 0, 0], atol=1e-5)


class AddressTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_address_matches_numpy_reference(self):
    rng = np.random.default_rng(1)
    memory = rng.normal(size=(6, 4)).astype(np.float32)
    key = rng.normal(size=(4,)).astype(np.float32)
    w_prev = rng.dirichlet(np.ones(6)).astype(np.float32)
    shift = np.array([0.2, 0.3, 0.5], np.float32)
    args = (memory, key, np.float32(3.0), np.float32(0.7), shift, np.float32(2.5), w_prev)
    out = self.variant(addressing.address)(*map(jnp.asarray, args))
    np.testing.assert_allclose(out, refs.ntm_address(*args), atol=1e-5)
    np.testing.assert_allclose(jnp.sum(out), 1.0, atol=1e-5)


def test_address_gate_zero_identity_shift_gamma_one_keeps_previous():
  w_prev = jnp.array([0.1, 0.6, 0.3])
  out = addressing.address(
    jnp.eye(3),
    jnp.array([1.0, 0.0, 0.0]),
    jnp.array(10.0),
    jnp.array(0.0),
    jnp.array([0.0, 1.0, 0.0]),
    jnp.array(1.0),
    w_prev,
  )
  np.testing.assert_allclose(out, w_prev, atol=1e-5)


def test_address_gradients():
  rng = np.random.default_rng(2)
  memory = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  w_prev = jnp.asarray(rng.dirichlet(np.ones(5)), memory.dtype)

  def f(memory, key, beta, gate, shift_logits, gamma):
    shift = jax.nn.softmax(shift_logits)
    return addressing.address(memory, key, beta, gate, shift, gamma, w_prev)

  args = (
    memory,
    jnp.asarray([0.3, -1.0, 0.5], memory.dtype),
    jnp.asarray(2.0, memory.dtype),
    jnp.asarray(0.6, memory.dtype),
    jnp.asarray([0.1, 0.4, -0.2], memory.dtype),
    jnp.asarray(1.8, memory.dtype),
  )
  check_grads(f, args, order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-3)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (
      lambda: addressing.content_weights(jnp.ones((4, 3)), jnp.ones(2), jnp.array(1.0)),
      ValueError,
      r"key has feature size 2 \(shape \(2,\)\) but memory \(4, 3\) has 3",
    ),
    (
      lambda: addressing.content_weights(jnp.ones((4, 3)), jnp.ones(3), jnp.ones(2)),
      ValueError,
      r"beta must have shape \(\) .* got \(2,\)",
    ),
    (
      lambda: addressing.content_weights(jnp.ones(4), jnp.ones(3), jnp.array(1.0)),
      ValueError,
      r"memory must have rank 2 \[N, W\], got shape \(4,\)",
    ),
    (
      lambda: addressing.interpolate(jnp.ones(4), jnp.ones(5), jnp.array(0.5)),
      ValueError,
      r"w_prev has shape \(5,\) but w_content has shape \(4,\)",
    ),
    (
      lambda: addressing.interpolate(jnp.ones(4), jnp.ones(4), jnp.ones(3)),
      ValueError,
      r"gate must have shape \(\) .* got \(3,\)",
    ),
    (
      lambda: addressing.circular_shift(jnp.ones(5), jnp.ones(2)),
      ValueError,
      r"shift must have an odd size .* got shape \(2,\)",
    ),
    (
      lambda: addressing.circular_shift(jnp.ones(3), jnp.ones(5)),
      ValueError,
      r"shift must have an odd size S = 2k \+ 1 <= N = 3 .* got shape \(5,\)",
    ),
    (
      lambda: addressing.circular_shift(jnp.ones(5, jnp.int32), jnp.ones(3)),
      TypeError,
      "w must have a floating dtype, got int32",
    ),
    (
      lambda: addressing.sharpen(jnp.ones(5), jnp.ones(5)),
      ValueError,
      r"gamma must have shape \(\) .* got \(5,\)",
    ),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
