"""Tests of memjax.train.batches: bucketed epochs, per-bucket losses, chunked maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.train import batches


@pytest.mark.parametrize("sizes,batch_size", [((5, 2), 2), ((7,), 3), ((1, 8, 4), 4)])
def test_bucketed_epoch_visits_every_example_once(sizes, batch_size):
  keys = jax.random.split(jax.random.key(3), 1 + len(sizes))
  plan = jax.tree.map(np.asarray, batches.bucketed_epoch(keys, sizes, batch_size))
  steps = sum(-(-n // batch_size) for n in sizes)
  assert plan["bucket"].shape == (steps,) and plan["index"].shape == (steps, batch_size)
  for b, n in enumerate(sizes):
    rows = plan["bucket"] == b
    assert rows.sum() == -(-n // batch_size)
    real = plan["index"][rows][plan["weight"][rows] == 1]
    assert sorted(real.tolist()) == list(range(n))  # each example once, weight 1
    assert np.all(plan["index"][rows] < n)  # padding repeats rows of its own bucket
  assert plan["weight"].sum() == sum(sizes)


def test_bucketed_epoch_differs_by_key_and_repeats_with_it():
  keys = jax.random.split(jax.random.key(0), 2)
  a = batches.bucketed_epoch(keys, (16,), 4)
  b = batches.bucketed_epoch(keys, (16,), 4)
  c = batches.bucketed_epoch(jax.random.split(jax.random.key(1), 2), (16,), 4)
  np.testing.assert_array_equal(a["index"], b["index"])
  assert not np.array_equal(a["index"], c["index"])


def test_bucket_branches_gather_their_bucket_rows():
  buckets = [{"v": jnp.array([10.0, 20.0, 30.0])}, {"v": jnp.array([1.0, 2.0])}]

  def loss(params, rows, x, key, rest):
    return params * jnp.sum(rows["v"] * x["weight"]) + rest, {}

  losses = batches.bucket_branches(loss, 2)
  x = {"index": jnp.array([2, 0]), "weight": jnp.array([1.0, 0.5])}
  assert float(losses[0](2.0, x, None, (buckets, 1.0))[0]) == 2 * (30 + 5) + 1
  x = {"index": jnp.array([1, 1]), "weight": jnp.array([1.0, 1.0])}
  assert float(losses[1](1.0, x, None, (buckets, 0.0))[0]) == 4.0


@pytest.mark.parametrize("n,chunk", [(7, 3), (6, 3), (2, 5), (1, 1)])
def test_map_in_chunks_equals_one_call(n, chunk):
  x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
  y = np.arange(n, dtype=np.int32)
  shapes = []

  def fn(x, y):
    shapes.append(x.shape)
    return {"s": x.sum(-1) + y, "x": x * 2}

  out = batches.map_in_chunks(fn, {"x": x, "y": y}, chunk)
  np.testing.assert_array_equal(out["s"], x.sum(-1) + y)
  np.testing.assert_array_equal(out["x"], x * 2)
  assert len(set(shapes)) == 1  # every call the same shape: one compile under jit
  with pytest.raises(ValueError, match="same number of rows"):
    batches.map_in_chunks(fn, {"x": x, "y": y[:-1]}, chunk)
