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


def _filled(seed, b=2, h=2, n=6, d=4, dv=3, t=6):
  rng = np.random.default_rng(seed)
  keys = rng.normal(size=(b, t, h, d)).astype(np.float32)
  values = rng.normal(size=(b, t, h, dv)).astype(np.float32)
  mem = write_segment(init_knn_memory((b,), h, n, d, dv), keys, values)
  return mem, keys, values, rng


def test_k_equal_to_capacity_is_full_attention_over_the_memory():
  mem, keys, values, rng = _filled(0)
  q = rng.normal(size=(2, 5, 2, 4)).astype(np.float32)
  read, found = _read(mem, q, k=6)
  ref = _refs.multi_head(q, keys, values, lambda b, h, i, j: True)
  np.testing.assert_allclose(read, ref, atol=1e-5)
  assert np.all(found)


def test_top_k_attends_over_the_k_best_keys_only():
  mem, keys, values, rng = _filled(1, n=8, t=8)
  q = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
  read, _ = _read(mem, q, k=3)
  best = {}
  for b in range(2):
    for h in range(2):
      s = q[b, :, h] @ keys[b, :, h].T  # [T, N]
      for i in range(3):
        best[b, h, i] = set(np.argsort(-s[i])[:3])
  ref = _refs.multi_head(q, keys, values, lambda b, h, i, j: j in best[b, h, i])
  np.testing.assert_allclose(read, ref, atol=1e-5)


def test_partially_filled_memory_ignores_empty_slots_and_empty_memory_reads_nothing():
  rng = np.random.default_rng(2)
  keys = rng.normal(size=(1, 3, 1, 4)).astype(np.float32)
  values = rng.normal(size=(1, 3, 1, 2)).astype(np.float32)
  empty = init_knn_memory((1,), 1, 5, 4, 2)
  q = rng.normal(size=(1, 2, 1, 4)).astype(np.float32)
  read, found = _read(empty, q, k=5)
  assert not np.any(found) and np.all(np.asarray(read) == 0)
  read, found = _read(write_segment(empty, keys, values), q, k=5)
  np.testing.assert_allclose(read, _refs.multi_head(q, keys, values, lambda *_: True), atol=1e-5)


@pytest.mark.parametrize("segments", [(3, 4), (9,), (2, 2, 5)])
def test_ring_write_equals_kv_write_batch(segments):
  rng = np.random.default_rng(sum(segments))
  mem = init_knn_memory((1,), 1, 5, 3, 2)
  ref = kv.init_state(5, 3, 2)
  for t in segments:
    k = rng.normal(size=(1, t, 1, 3)).astype(np.float32)
    v = rng.normal(size=(1, t, 1, 2)).astype(np.float32)
    m = rng.random((1, t)) < 0.7
    mem = write_segment(mem, k, v, jnp.asarray(m))
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


class LayerTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_layer_over_two_segments_matches_numpy(self):
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(2, 2, 4, 8)).astype(np.float32)
    layer = KNNMemoryAttention(num_heads=2, capacity=4, top_k=4)
    mem = layer.initialize_carry(x1.shape)
    params = layer.init(jax.random.key(0), mem, x1)["params"]
    params = dict(params, gate_bias=jnp.array([0.7, -1.2]))
    step = self.variant(layer.apply)
    mem, y1 = step({"params": params}, mem, x1)
    ref1, k1, v1 = _np_layer(params, x1, None, None)  # empty memory: local only
    np.testing.assert_allclose(y1, ref1, atol=1e-4)
    mem, y2 = step({"params": params}, mem, x2)
    ref2, _, _ = _np_layer(params, x2, k1, v1)  # k = N: full attention over segment 1
    np.testing.assert_allclose(y2, ref2, atol=1e-4)

  def test_reset_forgets_the_document(self):
    rng = np.random.default_rng(4)
    x1, x2 = rng.normal(size=(2, 2, 4, 8)).astype(np.float32)
    layer = KNNMemoryAttention(num_heads=2, capacity=8, top_k=2)
    mem0 = layer.initialize_carry(x1.shape)
    params = layer.init(jax.random.key(1), mem0, x1)
    apply = jax.jit(layer.apply)
    mem, _ = apply(params, mem0, x1)
    _, y = apply(params, mem, x2, jnp.array([True, False]))
    _, fresh = apply(params, mem0, x2)
    _, kept = apply(params, mem, x2)
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
  mem, keys, values, rng = _filled(6, n=16, t=16, d=16)
  q = 3 * rng.normal(size=(2, 4, 2, 16)).astype(np.float32)
  r32, _ = _read(mem, q, k=8)
  mem16 = write_segment(
    init_knn_memory((2,), 2, 16, 16, 3, jnp.bfloat16), jnp.asarray(keys), jnp.asarray(values)
  )
  r16, _ = _read(mem16, jnp.asarray(q, jnp.bfloat16), k=8)
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
