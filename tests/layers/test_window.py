"""Tests for memjax.layers.window (blockwise sliding-window attention)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.layers import MultiHeadAttention, SlidingWindowAttention, sliding_window_attention
from tests.layers import _refs

# Jitted once per shape (eager dispatch of the many small ops is slower than compiling).
_swa = jax.jit(
  sliding_window_attention, static_argnames=("window", "causal", "block_size", "scale")
)


def _qkv(seed, b=2, t=11, h=2, d=4, dv=3):
  rng = np.random.default_rng(seed)
  return (
    rng.normal(size=(b, t, h, d)).astype(np.float32),
    rng.normal(size=(b, t, h, d)).astype(np.float32),
    rng.normal(size=(b, t, h, dv)).astype(np.float32),
  )


def _visible(window, causal, globals_=(), key_mask=None):
  """visible(b, h, i, j) from the definitions: band (+ global rows / columns) (+ padding)."""

  def vis(b, h, i, j):
    if key_mask is not None and not key_mask[b, j]:
      return False
    if causal and j > i:
      return False
    return abs(i - j) < window or i in globals_ or j in globals_

  return vis


class WindowTest(parameterized.TestCase):
  @parameterized.product(
    causal=[True, False],
    shape=[(11, 3, None), (11, 4, 3), (7, 20, None), (5, 1, None), (12, 4, None), (9, 2, 5)],
  )
  def test_equals_full_attention_with_a_band_mask(self, causal, shape):
    t, window, block = shape
    q, k, v = _qkv(t * window, t=t)
    out = _swa(q, k, v, window, causal, block_size=block)
    ref = _refs.multi_head(q, k, v, _visible(window, causal))
    np.testing.assert_allclose(out, ref, atol=1e-5)

  @parameterized.parameters(True, False)
  def test_global_tokens_and_padding_mask(self, causal):
    q, k, v = _qkv(1, t=13)
    key_mask = np.ones((2, 13), bool)
    key_mask[1, 10:] = False  # example 1 is padded after step 10
    key_mask[0, 2] = False
    out = _swa(q, k, v, 3, causal, global_indices=jnp.array([0, 6]), key_mask=key_mask)
    ref = _refs.multi_head(q, k, v, _visible(3, causal, (0, 6), key_mask))
    np.testing.assert_allclose(out, ref, atol=1e-5)

  @chex.variants(with_jit=True)  # no-jit runs: tests/layers/test_attention.py, test_recurrence.py
  def test_jit(self):
    q, k, v = _qkv(2, t=10)
    f = self.variant(lambda a, b, c, g: sliding_window_attention(a, b, c, 4, global_indices=g))
    out = f(q, k, v, jnp.array([3]))
    np.testing.assert_allclose(out, _refs.multi_head(q, k, v, _visible(4, True, (3,))), atol=1e-5)


def test_gradients():
  q, k, v = _qkv(3, b=1, t=5, h=1, d=2, dv=2)
  f = jax.jit(
    lambda a, b, c: sliding_window_attention(a, b, c, 2, global_indices=[0], block_size=2)
  )
  check_grads(f, (q, k, v), order=1, modes=["rev"], atol=5e-2, rtol=5e-2)


def test_bf16_is_finite_and_close_to_float32():
  q, k, v = _qkv(4, t=40, d=16)
  q = q * 6
  g = jnp.array([0])
  out32 = _swa(q, k, v, 8, global_indices=g)
  out16 = _swa(*(jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)), 8, global_indices=g)
  assert out16.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(out16, np.float32)))
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.15)


def test_layer_equals_multi_head_attention_with_a_band_mask():
  x = np.random.default_rng(5).normal(size=(2, 9, 8)).astype(np.float32)
  layer = SlidingWindowAttention(num_heads=2, window=3, causal=False)
  params = layer.init(jax.random.key(0), x)
  i, j = np.arange(9)[:, None], np.arange(9)[None, :]
  full = jax.jit(MultiHeadAttention(num_heads=2).apply)(params, x, mask=np.abs(i - j) < 3)
  np.testing.assert_allclose(jax.jit(layer.apply)(params, x), full, atol=1e-5)


def _temp_bytes(f, t, h=2, d=16):
  x = jax.ShapeDtypeStruct((1, t, h, d), jnp.float32)
  return jax.jit(f).lower(x, x, x).compile().memory_analysis().temp_size_in_bytes


def test_memory_grows_linearly_in_t_not_quadratically():
  window = lambda q, k, v: sliding_window_attention(q, k, v, 64)
  full = lambda q, k, v: sliding_window_attention(q, k, v, 1 << 20)  # one block: [T, T]
  w = [_temp_bytes(window, t) for t in (512, 1024, 2048, 4096)]
  f = [_temp_bytes(full, t) for t in (512, 2048)]
  for a, b in zip(w[:-1], w[1:], strict=True):
    assert 1.5 < b / a < 2.5, w  # doubling T doubles the memory
  assert f[1] / f[0] > 12, f  # 4x T: ~16x memory
  assert w[3] * 8 < _temp_bytes(full, 4096)


def test_errors_name_the_problem():
  q, k, v = _qkv(6)
  with pytest.raises(ValueError, match="window must be a positive int, got 0"):
    sliding_window_attention(q, k, v, 0)
  with pytest.raises(ValueError, match="needs keys at the queries' positions"):
    sliding_window_attention(q[:, :5], k, v, 2)
  with pytest.raises(ValueError, match="key_mask must be bool of shape"):
    sliding_window_attention(q, k, v, 2, key_mask=np.ones((2, 5), bool))
  with pytest.raises(ValueError, match="global_indices must be a \\[G\\] integer array"):
    sliding_window_attention(q, k, v, 2, global_indices=[0.5])
