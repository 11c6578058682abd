"""Tests for memjax.layers.sharded_knn (kNN memory split over 8 fake CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from memjax.layers import (
  KNNMemoryAttention,
  init_knn_memory,
  knn_read,
  shard_knn_memory,
  sharded_knn_read,
  sharded_kv_read,
  sharded_top_k_read,
  write_segment,
)
from memjax.memory import kv
from memjax.ops import top_k_read

SHARDS = (1, 2, 4, 8)
# The unsharded reference, jitted (one compile per k).
_plain = jax.jit(
  lambda q, keys, values, mask, k: top_k_read(q, keys, values, k, mask=mask), static_argnums=4
)


def _mesh(s):
  return jax.make_mesh((s,), ("memory",), devices=jax.devices()[:s], axis_types=(AxisType.Auto,))


def _memory(seed, n=16):
  rng = np.random.default_rng(seed)
  keys = rng.normal(size=(n, 4)).astype(np.float32)
  keys[9] = keys[2]  # a tie across shards: the lower slot must win
  keys[3] = keys[2]  # and one inside a shard
  values = rng.normal(size=(n, 3)).astype(np.float32)
  mask = rng.random(n) < 0.8
  q = rng.normal(size=(2, 5, 4)).astype(np.float32)
  q[0, 0] = keys[2]
  return jnp.asarray(q), jnp.asarray(keys), jnp.asarray(values), jnp.asarray(mask)


def test_eight_fake_devices():
  assert jax.device_count() == 8


# Every shard count; k below and above the per-shard capacity N / S.
@pytest.mark.parametrize("shards, k", [(1, 6), (2, 6), (4, 3), (8, 6)])
def test_sharded_top_k_equals_unsharded(shards, k):
  q, keys, values, mask = _memory(0)
  want = _plain(q, keys, values, mask, k)
  got = jax.jit(lambda a, b, c, m: sharded_top_k_read(a, b, c, k, _mesh(shards), "memory", m))(
    q, keys, values, mask
  )
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_array_equal(got.scores, want.scores)
  np.testing.assert_array_equal(got.values, want.values)


def test_sharded_kv_read_equals_kv_read():
  rng = np.random.default_rng(1)
  state = kv.write_batch(
    kv.init_state(16, 4, 3),
    jnp.asarray(rng.normal(size=(11, 4)), jnp.float32),
    jnp.asarray(rng.normal(size=(11, 3)), jnp.float32),
  )
  q = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  got = jax.jit(lambda s, a: sharded_kv_read(s, a, 5, _mesh(8), "memory"))(state, q)
  want = jax.jit(lambda s, a: kv.read(s, a, 5))(state, q)
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_array_equal(got.values, want.values)


def test_sharded_knn_read_equals_knn_read_for_every_shard_count():
  rng = np.random.default_rng(2)
  mem = jax.jit(write_segment)(
    init_knn_memory((2,), 3, 16, 4, 5),
    jnp.asarray(rng.normal(size=(2, 11, 3, 4)), jnp.float32),
    jnp.asarray(rng.normal(size=(2, 11, 3, 5)), jnp.float32),
  )
  qq = jnp.asarray(rng.normal(size=(2, 7, 3, 4)), jnp.float32)
  want_read, want_found = jax.jit(lambda m, a: knn_read(m, a, 5))(mem, qq)
  placed = shard_knn_memory(mem, _mesh(8), "memory")
  assert placed.keys.sharding.spec == jax.sharding.PartitionSpec(None, None, "memory", None)
  assert placed.keys.addressable_shards[0].data.shape == (2, 3, 2, 4)  # 16 / 8 slots each
  for shards in SHARDS:
    read, found = jax.jit(lambda m, a, s=shards: sharded_knn_read(m, a, 5, _mesh(s), "memory"))(
      placed if shards == 8 else mem, qq
    )
    np.testing.assert_allclose(read, want_read, atol=1e-6)
    np.testing.assert_array_equal(found, want_found)


def test_gradients_equal_unsharded():
  q, keys, values, mask = _memory(2)

  def loss(read):
    def f(a, b, c):
      r = read(a, b, c)
      return jnp.sum(jnp.where(jnp.isfinite(r.scores), r.scores, 0)) + jnp.sum(r.values)

    return f

  mesh = _mesh(4)
  sharded = jax.grad(
    loss(lambda a, b, c: sharded_top_k_read(a, b, c, 3, mesh, "memory", mask)), (0, 1, 2)
  )
  plain = jax.jit(jax.grad(loss(lambda a, b, c: top_k_read(a, b, c, 3, mask=mask)), (0, 1, 2)))
  for g, w in zip(jax.jit(sharded)(q, keys, values), plain(q, keys, values), strict=True):
    np.testing.assert_allclose(g, w, atol=1e-5)


def test_layer_with_a_sharded_memory_equals_the_plain_layer():
  x1, x2 = np.random.default_rng(3).normal(size=(2, 2, 4, 8)).astype(np.float32)
  plain = KNNMemoryAttention(num_heads=2, capacity=8, top_k=3)
  sharded = KNNMemoryAttention(num_heads=2, capacity=8, top_k=3, mesh=_mesh(4))
  mem = plain.initialize_carry(x1.shape)
  params = plain.init(jax.random.key(0), mem, x1)
  outs = []
  for layer in (plain, sharded):
    m, _ = jax.jit(layer.apply)(params, mem, x1)
    outs.append(jax.jit(layer.apply)(params, m, x2)[1])
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


def test_errors_name_the_problem():
  q, keys, values, _ = _memory(4, n=12)
  with pytest.raises(ValueError, match="12 slots must divide evenly over the 8 devices"):
    sharded_top_k_read(q, keys, values, 2, _mesh(8), "memory")
  with pytest.raises(ValueError, match="axis_name='model' is not an axis of the mesh"):
    sharded_top_k_read(q, keys, values, 2, _mesh(4), "model")
  with pytest.raises(ValueError, match=r"k=13 must be in \[1, 12\]"):
    sharded_top_k_read(q, keys, values, 13, _mesh(4), "memory")
