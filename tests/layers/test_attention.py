"""Tests for memjax.layers.attention (multi-head dot-product attention)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.layers import MultiHeadAttention, attention_weights, causal_mask, dot_product_attention
from tests.layers import _refs


def _qkv(seed, b=2, tq=5, tk=6, h=3, d=4, dv=5, dtype=np.float32):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(b, tq, h, d)).astype(dtype)
  k = rng.normal(size=(b, tk, h, d)).astype(dtype)
  v = rng.normal(size=(b, tk, h, dv)).astype(dtype)
  return q, k, v


def test_matches_numpy_with_mask_bias_and_an_empty_row():
  q, k, v = _qkv(0)
  rng = np.random.default_rng(1)
  mask = rng.random((2, 3, 5, 6)) < 0.6
  mask[1, 2, 3] = False  # a query that sees nothing reads zeros
  bias = rng.normal(size=(3, 5, 6)).astype(np.float32)
  out = dot_product_attention(q, k, v, mask=mask, bias=bias)
  ref = _refs.multi_head(q, k, v, lambda b, h, i, j: mask[b, h, i, j], bias)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  assert np.all(np.asarray(out)[1, 3, 2] == 0)


def test_causal_mask_offset_and_default():
  m = np.asarray(causal_mask(2, 5))  # queries are the last two keys
  np.testing.assert_array_equal(m, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(causal_mask(3, 3, offset=0), np.tril(np.ones((3, 3), bool)))


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_no_jit_agree_with_numpy(self):
    q, k, v = _qkv(2, tq=4, tk=4)
    out = self.variant(lambda a, b, c: dot_product_attention(a, b, c, mask=causal_mask(4, 4)))(
      q, k, v
    )
    ref = _refs.multi_head(q, k, v, lambda b, h, i, j: j <= i)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_fully_masked_rows_have_finite_zero_gradients():
  q, k, v = _qkv(3)
  mask = np.zeros((1, 1, 5, 6), bool)
  f = lambda a, b, c: jnp.sum(dot_product_attention(a, b, c, mask=mask) ** 2)
  grads = jax.grad(f, argnums=(0, 1, 2))(q, k, v)
  for g in grads:
    assert np.all(np.asarray(g) == 0)


def test_gradients():
  q, k, v = _qkv(4, b=1, tq=3, tk=4, h=2, d=3, dv=2)
  q, k, v = (jnp.asarray(x, jnp.float64) if jax.config.jax_enable_x64 else x for x in (q, k, v))
  f = lambda a, b, c: dot_product_attention(a, b, c, mask=causal_mask(3, 4))
  check_grads(jax.jit(f), (q, k, v), order=1, modes=["rev"], atol=5e-2, rtol=5e-2)


def test_bf16_inputs_are_finite_and_close_to_float32():
  q, k, v = _qkv(5, tq=64, tk=64, d=32)
  q = q * 8  # large logits: an exp in bf16 would overflow / lose the softmax
  out32 = dot_product_attention(q, k, v, mask=causal_mask(64, 64))
  bf = [jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)]
  out16 = dot_product_attention(*bf, mask=causal_mask(64, 64))
  assert out16.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(out16, np.float32)))
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.15)
  w = attention_weights(*bf[:2], mask=causal_mask(64, 64))
  assert w.dtype == jnp.float32


def test_dropout_keeps_or_rescales_each_weight():
  q, k, _ = _qkv(6, b=1, tq=4, tk=4, h=1)
  v = np.eye(4, dtype=np.float32)[None, :, None, :]  # out row i = the used weights of query i
  out, w = dot_product_attention(
    q,
    k,
    v,
    dropout_rate=0.5,
    dropout_rng=jax.random.key(0),
    deterministic=False,
    return_weights=True,
  )
  used, w = np.asarray(out)[0, :, 0], np.asarray(w)[0, 0]
  kept = used != 0
  assert 0 < kept.sum() < used.size
  np.testing.assert_allclose(used[kept], 2 * w[kept], rtol=1e-6)
  with pytest.raises(ValueError, match="dropout_rng is required"):
    dot_product_attention(q, k, v, dropout_rate=0.5, deterministic=False)


def test_module_matches_numpy_and_is_causal():
  x = np.random.default_rng(7).normal(size=(2, 5, 6)).astype(np.float32)
  layer = MultiHeadAttention(num_heads=2, qkv_features=8, out_features=3, causal=True)
  params = layer.init(jax.random.key(0), x)["params"]
  y = layer.apply({"params": params}, x)
  p = jax.tree.map(np.asarray, params)
  proj = lambda n: np.einsum("btf,fhd->bthd", x, p[n]["kernel"]) + p[n]["bias"]
  heads = _refs.multi_head(proj("query"), proj("key"), proj("value"), lambda b, h, i, j: j <= i)
  ref = np.einsum("bthd,hdo->bto", heads, p["out"]["kernel"]) + p["out"]["bias"]
  np.testing.assert_allclose(y, ref, atol=1e-5)


def test_module_padding_mask_with_batch_axes_combines_with_causal():
  x = np.random.default_rng(9).normal(size=(2, 4, 6)).astype(np.float32)
  pad = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)[:, None, None, :]  # [B, 1, 1, T]
  layer = MultiHeadAttention(num_heads=2, causal=True)
  params = layer.init(jax.random.key(0), x)
  y = layer.apply(params, x, mask=pad)
  full = np.tril(np.ones((4, 4), bool))[None, None] & pad
  np.testing.assert_allclose(
    y, MultiHeadAttention(num_heads=2).apply(params, x, mask=full), atol=1e-6
  )


def test_errors_name_the_problem():
  q, k, v = _qkv(8)
  with pytest.raises(ValueError, match="must be divisible by num_heads"):
    MultiHeadAttention(num_heads=4, qkv_features=6).init(jax.random.key(0), jnp.ones((1, 2, 6)))
  with pytest.raises(ValueError, match="same heads and head size"):
    dot_product_attention(q, k[..., :3], v)
  with pytest.raises(ValueError, match="value .* must match key"):
    dot_product_attention(q, k, v[:, :4])
  with pytest.raises(ValueError, match="mask of shape .* does not broadcast"):
    dot_product_attention(q, k, v, mask=np.ones((5, 5), bool))
  with pytest.raises(TypeError, match="mask must be boolean"):
    dot_product_attention(q, k, v, mask=np.ones((5, 6), np.float32))
