"""Data-parallel helpers on 8 fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.train import data_mesh, replicate, shard_batch


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
