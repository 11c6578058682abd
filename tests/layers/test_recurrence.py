"""Tests for memjax.layers.recurrence (Transformer-XL segment memory)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from memjax.layers import XLAttention, XLRelativeAttention
from memjax.layers.recurrence import init_memory, reset, update


def _stream(seed, b=2, segments=3, t=4, f=6):
  return np.random.default_rng(seed).normal(size=(b, segments * t, f)).astype(np.float32)


def _check_carry(mem, x, m, seen):
  """The carry after ``seen`` steps: the last min(m, seen) inputs, right-aligned, empty
  slots before them."""
  n = min(m, seen)
  np.testing.assert_array_equal(mem.states[:, m - n :], x[:, seen - n : seen])
  np.testing.assert_array_equal(mem.states[:, : m - n], 0)
  np.testing.assert_array_equal(mem.valid, np.arange(m)[None, :].repeat(2, 0) >= m - n)


class CarryTest(parameterized.TestCase):
  def test_carry_holds_exactly_the_last_states_when_m_is_below_t(self):
    x = _stream(0)
    layer = XLAttention(num_heads=2, memory_length=3)  # T = 4
    mem = layer.initialize_carry((2, 4, 6))
    params = layer.init(jax.random.key(0), mem, x[:, :4])
    step = jax.jit(layer.apply)
    for s in range(3):
      mem, _ = step(params, mem, x[:, 4 * s : 4 * s + 4])
      _check_carry(mem, x, 3, 4 * (s + 1))

  @chex.variants(with_jit=True, without_jit=True)
  def test_segments_equal_one_pass_over_the_whole_sequence(self):
    # With M >= everything seen before, segment s attends exactly as the unsegmented layer;
    # M = 8 = 2 T: the carry is partly empty, then full, then drops the oldest segment.
    x = _stream(1)
    layer = XLAttention(num_heads=2, memory_length=8)
    mem = layer.initialize_carry((2, 4, 6))
    params = layer.init(jax.random.key(1), mem, x[:, :4])
    whole = XLRelativeAttention(num_heads=2).apply({"params": params["params"]["attention"]}, x)
    step = self.variant(layer.apply)
    for s in range(3):
      mem, y = step(params, mem, x[:, 4 * s : 4 * s + 4])
      np.testing.assert_allclose(y, whole[:, 4 * s : 4 * s + 4], atol=1e-5)
      _check_carry(mem, x, 8, 4 * (s + 1))


def test_scan_over_segments_and_no_gradient_into_the_memory():
  x = _stream(2)
  layer = XLAttention(num_heads=2, memory_length=4)
  mem0 = layer.initialize_carry((2, 4, 6))
  params = layer.init(jax.random.key(2), mem0, x[:, :4])
  segs = jnp.moveaxis(x.reshape(2, 3, 4, 6), 1, 0)  # [S, B, T, F]

  def loss(segs):
    _, ys = jax.lax.scan(lambda m, s: layer.apply(params, m, s), mem0, segs)
    return jnp.sum(ys[2] ** 2)  # the last segment only

  g = jax.jit(jax.grad(loss))(segs)
  assert np.all(np.asarray(g[:2]) == 0)  # earlier segments reach it only through the memory
  assert np.any(np.asarray(g[2]) != 0)


def test_reset_empties_chosen_examples():
  x = _stream(3)
  layer = XLAttention(num_heads=2, memory_length=4)
  mem = layer.initialize_carry((2, 4, 6))
  params = layer.init(jax.random.key(3), mem, x[:, :4])
  mem, _ = layer.apply(params, mem, x[:, :4])
  _, y = layer.apply(params, mem, x[:, 4:8], reset_mask=jnp.array([True, False]))
  _, fresh = layer.apply(params, layer.initialize_carry((2, 4, 6)), x[:, 4:8])
  _, kept = layer.apply(params, mem, x[:, 4:8])
  np.testing.assert_allclose(y[0], fresh[0], atol=1e-6)
  np.testing.assert_allclose(y[1], kept[1], atol=1e-6)
  r = reset(mem, jnp.array([True, False]))
  assert not np.any(r.valid[0]) and np.all(r.valid[1])


def test_errors_name_the_problem():
  mem = init_memory((2,), 3, 4)
  with pytest.raises(ValueError, match="hidden must have shape \\[\\*B, T, 4\\]"):
    update(mem, jnp.ones((2, 5, 3)))
  with pytest.raises(ValueError, match="reset_mask must be bool of shape"):
    reset(mem, jnp.ones((3,), bool))
  with pytest.raises(ValueError, match="memory_length must be a positive int"):
    init_memory((2,), 0, 4)
