"""Data-parallel helpers on the 8 fake CPU devices of conftest.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from memjax.train import batch_sharding, data_mesh, replicate, shard_batch


def test_sharded_jit_matches_unsharded():
  assert jax.device_count() == 8
  mesh = data_mesh()
  x = jnp.arange(16 * 3, dtype=jnp.float32).reshape(16, 3)
  w = jnp.ones((3, 2))
  f = jax.jit(lambda w, x: jnp.tanh(x @ w).sum())
  grad_sharded = jax.grad(f)(replicate(w, mesh), shard_batch(x, mesh))
  np.testing.assert_allclose(grad_sharded, jax.grad(f)(w, x), rtol=1e-6)
  xs = shard_batch(x, mesh)
  assert len(xs.addressable_shards) == 8
  assert xs.addressable_shards[0].data.shape == (2, 3)


def test_indivisible_batch_names_the_problem():
  with pytest.raises(ValueError, match="which does not divide over the 8 devices"):
    shard_batch(jnp.zeros((10, 3)), data_mesh())


@pytest.mark.parametrize("num_devices, expected", [(None, 8), (0, 8), (1, 1), (4, 4)])
def test_data_mesh_takes_the_first_devices(num_devices, expected):
  mesh = data_mesh(num_devices)
  assert mesh.axis_names == ("data",) and mesh.shape == {"data": expected}
  assert list(mesh.devices.flat) == jax.devices()[:expected]


@pytest.mark.parametrize("num_devices", [9, -1])
def test_data_mesh_refuses_a_device_count_it_lacks(num_devices):
  with pytest.raises(ValueError, match=rf"num_devices={num_devices} must be in \[1, 8\]"):
    data_mesh(num_devices)


@pytest.mark.parametrize("num_devices", [4, 8])
def test_batch_sharding_gives_device_i_the_ith_block(num_devices):
  mesh = data_mesh(num_devices)
  sharding = batch_sharding(mesh, batch_axis=1, ndim=3)
  assert sharding.spec == P(None, "data", None)
  x = np.arange(3 * 16 * 2).reshape(3, 16, 2)
  placed = jax.device_put(x, sharding)
  block = 16 // num_devices
  shards = {s.device: s for s in placed.addressable_shards}
  assert len(shards) == num_devices
  for i, device in enumerate(jax.devices()[:num_devices]):
    np.testing.assert_array_equal(shards[device].data, x[:, i * block : (i + 1) * block])
  # A batch of 4 over 4 devices through shard_batch: one row each, the rest whole.
  rows = shard_batch(np.arange(4 * 5).reshape(4, 5), data_mesh(4))
  for i, device in enumerate(jax.devices()[:4]):
    (shard,) = [s for s in rows.addressable_shards if s.device == device]
    np.testing.assert_array_equal(shard.data, [np.arange(5) + 5 * i])
