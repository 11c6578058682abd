"""Tests for memjax.layers.knn (Memorizing-Transformers kNN-memory attention)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.layers import KNNMemoryAttention, init_knn_memory, knn_read, write_segment
from memjax.layers.knn import reset_memory
from memjax.memory import kv
from tests.layers import _refs

_read = jax.jit(knn_read, static_argnames=("k", "similarity"))
_write = jax.jit(write_segment)


def _filled(seed, b=2, h=2, n=6, d=4, dv=3, t=6):
  rng = np.random.default_rng(seed)
  keys = rng.normal(size=(b, t, h, d)).astype(np.float32)
  values = rng.normal(size=(b, t, h, dv)).astype(np.float32)
  mem = _write(init_knn_memory((b,), h, n, d, dv), keys, values)
  return mem, keys, values, rng


def test_k_equal_to_capacity_is_full_attention_over_the_memory():
  mem, keys, values, rng = _filled(0)
  q = rng.normal(size=(2, 5, 2, 4)).astype(np.float32)
  read, found = _read(mem, q, k=6)
  ref = _refs.multi_head(q, keys, values, lambda b, h, i, j: True)
  np.testing.assert_allclose(read, ref, atol=1e-5)
  assert np.all(found)


def test_top_k_attends_over_the_k_best_keys_only():
  mem, keys, values, rng = _filled(1)  # the shapes of the other tests: one compile per k
  q = rng.normal(size=(2, 5, 2, 4)).astype(np.float32)
  read, _ = _read(mem, q, k=3)
  best = {}
  for b in range(2):
    for h in range(2):
      s = q[b, :, h] @ keys[b, :, h].T  # [T, N]
      for i in range(5):
        best[b, h, i] = set(np.argsort(-s[i])[:3])
  ref = _refs.multi_head(q, keys, values, lambda b, h, i, j: j in best[b, h, i])
  np.testing.assert_allclose(read, ref, atol=1e-5)


def test_partially_filled_memory_ignores_empty_slots_and_empty_memory_reads_nothing():
  rng = np.random.default_rng(2)
  keys = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
  values = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)
  empty = init_knn_memory((2,), 2, 6, 4, 3)
  q = rng.normal(size=(2, 5, 2, 4)).astype(np.float32)
  read, found = _read(empty, q, k=6)
  assert not np.any(found) and np.all(np.asarray(read) == 0)
  read, found = _read(_write(empty, keys, values), q, k=6)
  np.testing.assert_allclose(read, _refs.multi_head(q, keys, values, lambda *_: True), atol=1e-5)


def test_ring_write_equals_kv_write_batch():
  # Partly filled, then more items than slots in one segment, with padding tokens.
  segments = (3, 9, 4)
  rng = np.random.default_rng(0)
  mem = init_knn_memory((1,), 1, 5, 3, 2)
  ref = kv.init_state(5, 3, 2)
  for t in segments:
    k = rng.normal(size=(1, t, 1, 3)).astype(np.float32)
    v = rng.normal(size=(1, t, 1, 2)).astype(np.float32)
    m = rng.random((1, t)) < 0.7
    mem = _write(mem, k, v, jnp.asarray(m))
    ref = kv.write_batch(ref, k[0, :, 0], v[0, :, 0], jnp.asarray(m[0]), policy="ring")
  for got, want in zip(mem, ref, strict=True):
    np.testing.assert_array_equal(np.asarray(got)[0, 0], want)


def _np_layer(p, x, keys_mem, values_mem):
  """Local causal attention + full attention over the stored pairs, mixed by sigmoid(b_h)."""
  p = jax.tree.map(lambda a: np.asarray(a).astype(np.float64), p)
  proj = lambda n: np.einsum("btf,fhd->bthd", x, p[n]["kernel"]) + p[n]["bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  local = _refs.multi_head(q, k, v, lambda b, h, i, j: j <= i)
  out = local
  if keys_mem is not None:
    mem = _refs.multi_head(q, keys_mem, values_mem, lambda *_: True)
    g = 1 / (1 + np.exp(-p["gate_bias"]))[None, None, :, None]
    out = g * mem + (1 - g) * local
  y = np.einsum("bthd,hdo->bto", out, p["out"]["kernel"]) + p["out"]["bias"]
  return y, k, v


# One layer configuration, jitted once, for the layer tests (k = N: full attention over
# whatever the memory holds).
_LAYER = KNNMemoryAttention(num_heads=2, capacity=8, top_k=8)
_apply = jax.jit(_LAYER.apply)


class LayerTest(parameterized.TestCase):
  def test_layer_over_three_segments_matches_numpy_with_and_without_jit(self):
    x = np.random.default_rng(3).normal(size=(3, 2, 4, 8)).astype(np.float32)
    mem = _LAYER.initialize_carry(x[0].shape)
    params = _LAYER.init(jax.random.key(0), mem, x[0])["params"]
    params = dict(params, gate_bias=jnp.array([0.7, -1.2]))
    stored_k, stored_v = None, None
    for s in range(3):  # empty memory (local only), 4 of 8 slots filled, all 8 filled
      eager = _LAYER.apply({"params": params}, mem, x[s]) if s == 1 else None
      mem, y = _apply({"params": params}, mem, x[s])
      if eager is not None:
        chex.assert_trees_all_close(eager, (mem, y), atol=1e-6)
      ref, k, v = _np_layer(params, x[s], stored_k, stored_v)
      np.testing.assert_allclose(y, ref, atol=1e-4)
      stored_k = k if stored_k is None else np.concatenate([stored_k, k], axis=1)
      stored_v = v if stored_v is None else np.concatenate([stored_v, v], axis=1)

  def test_reset_forgets_the_document(self):
    x1, x2 = np.random.default_rng(4).normal(size=(2, 2, 4, 8)).astype(np.float32)
    mem0 = _LAYER.initialize_carry(x1.shape)
    params = _LAYER.init(jax.random.key(1), mem0, x1)
    mem, _ = _apply(params, mem0, x1)
    _, y = _apply(params, mem, x2, jnp.array([True, False]))
    _, fresh = _apply(params, mem0, x2, jnp.array([False, False]))
    _, kept = _apply(params, mem, x2, jnp.array([False, False]))
    np.testing.assert_allclose(y[0], fresh[0], atol=1e-6)
    np.testing.assert_allclose(y[1], kept[1], atol=1e-6)
    r = reset_memory(mem, jnp.array([True, False]))
    assert not np.any(r.valid[0]) and np.all(r.step[0] == 0) and np.all(r.valid[1, :, :4])


def test_gradients_reach_the_query_and_not_the_stored_pairs():
  mem, keys, values, rng = _filled(5, b=1, h=1, n=4, t=4)
  q = rng.normal(size=(1, 2, 1, 4)).astype(np.float32)
  check_grads(jax.jit(lambda a: knn_read(mem, a, 2)[0]), (q,), 1, ["rev"], 5e-2, 5e-2)

  def loss(k):  # the written keys get no gradient (the memory is a record, not a parameter)
    m = write_segment(init_knn_memory((1,), 1, 4, 4, 3), k, jnp.asarray(values))
    return jnp.sum(knn_read(m, q, 4)[0])

  assert np.all(np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(keys))) == 0)


def test_bf16_memory_is_finite_and_close_to_float32():
  mem, keys, values, rng = _filled(6)
  q = 3 * rng.normal(size=(2, 5, 2, 4)).astype(np.float32)
  r32, _ = _read(mem, q, k=6)
  mem16 = _write(
    init_knn_memory((2,), 2, 6, 4, 3, jnp.bfloat16), jnp.asarray(keys), jnp.asarray(values)
  )
  r16, _ = _read(mem16, jnp.asarray(q, jnp.bfloat16), k=6)
  assert r16.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(r16, np.float32)))
  np.testing.assert_allclose(np.asarray(r16, np.float32), r32, atol=0.1)


def test_errors_name_the_problem():
  mem, *_ = _filled(7)
  q = jnp.ones((2, 3, 2, 4))
  with pytest.raises(ValueError, match=r"k=7 must be in \[1, 6\]"):
    knn_read(mem, q, 7)
  with pytest.raises(ValueError, match="query must have shape"):
    knn_read(mem, jnp.ones((2, 3, 2, 5)), 2)
  with pytest.raises(ValueError, match="must be divisible by num_heads"):
    KNNMemoryAttention(num_heads=3, capacity=4, top_k=2).initialize_carry((1, 2, 8))
  layer = KNNMemoryAttention(num_heads=2, capacity=4, top_k=5)
  with pytest.raises(ValueError, match=r"top_k=5 must be in \[1, 4\]"):
    layer.init(jax.random.key(0), layer.initialize_carry((1, 2, 8)), jnp.ones((1, 2, 8)))
