"""Tests for memjax.layers.relative (Transformer-XL logits, RoPE, T5 bias)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.layers import (
  RelativePositionBias,
  XLRelativeAttention,
  apply_rope,
  relative_position_bucket,
  xl_relative_logits,
)
from memjax.layers.relative import relative_distances
from tests.layers import _refs


def _np_sinusoid(dist, dim):
  """R_dist: [sin(dist / 10000^(2m/dim)) for m] ++ [cos(...)] (Dai et al. / Vaswani et al.)."""
  inv = [10000 ** (-2 * m / dim) for m in range(dim // 2)]
  return np.array([math.sin(dist * f) for f in inv] + [math.cos(dist * f) for f in inv])


def test_xl_logits_equal_the_four_terms():
  rng = np.random.default_rng(0)
  b, tq, tk, h, d = 2, 3, 5, 2, 4
  q, k = rng.normal(size=(b, tq, h, d)), rng.normal(size=(b, tk, h, d))
  rel = rng.normal(size=(tq + tk - 1, h, d))
  u, v = rng.normal(size=(h, d)), rng.normal(size=(h, d))
  dists = list(range(-(tq - 1), tk))  # ascending, offset = tk - tq = 2
  out = xl_relative_logits(*(jnp.asarray(a, jnp.float32) for a in (q, k, rel, u, v)))
  ref = np.zeros((b, h, tq, tk))
  for bb in range(b):
    for hh in range(h):
      for i in range(tq):
        for j in range(tk):
          r = rel[dists.index(i + 2 - j), hh]
          a_ = q[bb, i, hh] @ k[bb, j, hh]
          b_ = q[bb, i, hh] @ r
          c_ = u[hh] @ k[bb, j, hh]
          d_ = v[hh] @ r
          ref[bb, hh, i, j] = a_ + b_ + c_ + d_
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(relative_distances(tq, tk), dists)


def _np_xl_layer(p, x, mem):
  """Transformer-XL attention from the paper's terms, float64 loops; x [B, T, F], mem [B, M, F]."""
  p = jax.tree.map(lambda a: np.asarray(a).astype(np.float64), p)
  ctx = np.concatenate([mem, x], axis=1)
  bsz, t, f = x.shape
  m = mem.shape[1]
  wq, wk, wv, wr = (p[n]["kernel"] for n in ("query", "key", "value", "rel"))
  heads, dh = wq.shape[1:]
  out = np.zeros((bsz, t, heads, dh))
  for bb in range(bsz):
    for hh in range(heads):
      for i in range(t):
        scores, vals = [], []
        for j in range(m + i + 1):  # causal over [memory ; current]
          rij = _np_sinusoid(m + i - j, f) @ wr[:, hh]  # W_kR R_{i-j}
          q_i = x[bb, i] @ wq[:, hh]
          k_j = ctx[bb, j] @ wk[:, hh]
          s = q_i @ k_j + q_i @ rij + p["u"][hh] @ k_j + p["v"][hh] @ rij
          scores.append(s / math.sqrt(dh))
          vals.append(ctx[bb, j] @ wv[:, hh])
        w = np.exp(np.array(scores) - max(scores))
        out[bb, i, hh] = (w / w.sum()) @ np.array(vals)
  return np.einsum("bthd,hdo->bto", out, p["out"]["kernel"])


def test_xl_layer_equals_explicit_formula():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 6)).astype(np.float32)
  mem = rng.normal(size=(2, 3, 6)).astype(np.float32)
  layer = XLRelativeAttention(num_heads=2, qkv_features=4)
  params = layer.init(jax.random.key(0), x, mem)["params"]
  # u, v start at zero; give them values so terms (c) and (d) count.
  uv = rng.normal(size=(2, 2, 2)).astype(np.float32)
  params = dict(params, u=jnp.asarray(uv[0]), v=jnp.asarray(uv[1]))
  y = jax.jit(layer.apply)({"params": params}, x, mem)
  np.testing.assert_allclose(y, _np_xl_layer(params, x, mem), atol=1e-4)


def test_rope_is_the_pairwise_rotation_and_depends_on_distance_only():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(1, 3, 2, 6)).astype(np.float32)
  pos = np.array([0, 5, 11])
  out = np.asarray(apply_rope(x, pos))
  for t, p in enumerate(pos):
    for m in range(3):
      th = p * 10000 ** (-2 * m / 6)
      rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
      pair = x[0, t, :, [m, m + 3]]  # [2 (pair), H]
      np.testing.assert_allclose(out[0, t, :, [m, m + 3]], rot @ pair, atol=1e-5)
  q, k = rng.normal(size=(2, 1, 1, 1, 8)).astype(np.float32)
  dot = lambda a, b: float(
    np.sum(np.asarray(apply_rope(q, jnp.array([a]))) * np.asarray(apply_rope(k, jnp.array([b]))))
  )
  assert dot(7, 3) == pytest.approx(dot(104, 100), abs=1e-4)
  with pytest.raises(ValueError, match="RoPE needs an even head size"):
    apply_rope(np.ones((1, 3, 1, 5), np.float32), pos)


def _np_t5_bucket(rel, bidirectional, num_buckets, max_distance):
  """T5 bucket of one relative position (key minus query), from the description."""
  ret, n = 0, -rel
  if bidirectional:
    num_buckets //= 2
    if n < 0:
      ret += num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return ret + n
  big = max_exact + int(
    math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
  )
  return ret + min(big, num_buckets - 1)


def test_t5_buckets_match_the_definition_and_bias_reads_the_table():
  rel = np.arange(-300, 301)
  for bidirectional in (True, False):
    got = np.asarray(relative_position_bucket(jnp.asarray(rel), bidirectional, 32, 128))
    want = [_np_t5_bucket(int(r), bidirectional, 32, 128) for r in rel]
    np.testing.assert_array_equal(got, want)
  layer = RelativePositionBias(num_heads=3, num_buckets=8, max_distance=16)
  params = layer.init(jax.random.key(0), 4, 6)
  bias = np.asarray(layer.apply(params, 4, 6))
  table = np.asarray(params["params"]["table"])
  for i in range(4):
    for j in range(6):
      np.testing.assert_array_equal(bias[:, i, j], table[_np_t5_bucket(j - (i + 2), True, 8, 16)])


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match="must be divisible by num_heads"):
    XLRelativeAttention(num_heads=3).init(jax.random.key(0), jnp.ones((1, 2, 8)))
  with pytest.raises(ValueError, match="memory must have shape"):
    XLRelativeAttention(num_heads=2).init(
      jax.random.key(0), jnp.ones((1, 2, 8)), jnp.ones((1, 2, 6))
    )
  with pytest.raises(ValueError, match="needs an even feature size"):
    XLRelativeAttention(num_heads=1).init(jax.random.key(0), jnp.ones((1, 2, 5)))
  q = jnp.ones((1, 3, 2, 4))
  with pytest.raises(ValueError, match="rel_keys must have shape"):
    xl_relative_logits(q, q, jnp.ones((4, 2, 4)), jnp.ones((2, 4)), jnp.ones((2, 4)))
  _ = _refs  # shared helpers live in tests/layers/_refs.py
