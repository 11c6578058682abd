"""memjax.continual.replay: contents against a Python reference (FIFO), inclusion
probabilities against k / n over many seeds (reservoir), sampling distributions against
the uniform and the balanced ones (chi-square), inside lax.scan and jit."""

import collections

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from memjax.continual import replay

P_MIN = 1e-3  # a seeded test whose chi-square p-value falls below this fails


def _example():
  return {"x": jnp.zeros((2,), jnp.float32), "y": jnp.zeros((), jnp.int32)}


def _items(start, count):
  ids = jnp.arange(start, start + count, dtype=jnp.int32)
  return {"x": jnp.stack([ids, -ids], axis=1).astype(jnp.float32), "y": ids}


def _chi_square_p(counts, expected):
  counts, expected = np.asarray(counts, np.float64), np.asarray(expected, np.float64)
  stat = np.sum((counts - expected) ** 2 / expected)
  return stats.chi2.sf(stat, df=len(counts) - 1)


# ----------------------------------------------------------------------------- FIFO


def test_fifo_keeps_the_last_items_in_order_like_a_deque():
  capacity = 5
  state = replay.init_state(capacity, _example())
  reference = collections.deque(maxlen=capacity)
  start = 0
  add = jax.jit(replay.add_fifo)
  for batch in (3, 4, 12):  # part full; wrapping around; more items than slots
    state = add(state, _items(start, batch))
    reference.extend(range(start, start + batch))
    start += batch
    assert int(state.seen) == start
    assert int(replay.size(state)) == len(reference) == min(start, capacity)
    order = np.asarray(replay.fifo_order(state))[: len(reference)]
    np.testing.assert_array_equal(np.asarray(state.items["y"])[order], list(reference))
    np.testing.assert_array_equal(np.asarray(state.items["x"])[order, 1], -np.array(reference))


def test_fifo_with_a_validity_mask_adds_only_the_valid_items():
  rng = np.random.default_rng(0)
  state = replay.init_state(5, _example())
  reference = collections.deque(maxlen=5)
  add = jax.jit(replay.add_fifo)
  masks = [rng.random(8) < 0.5 for _ in range(3)] + [np.arange(8) != 3]  # 7 valid > 5 slots
  for i, valid in enumerate(masks):
    state = add(state, _items(8 * i, 8), jnp.asarray(valid))
    reference.extend(np.arange(8 * i, 8 * i + 8)[valid])
    assert int(state.seen) == sum(int(m.sum()) for m in masks[: i + 1])
    order = np.asarray(replay.fifo_order(state))[: len(reference)]
    np.testing.assert_array_equal(np.asarray(state.items["y"])[order], list(reference))


def test_fifo_before_full_fills_slots_in_order():
  empty = replay.init_state(6, _example())
  state = replay.add_fifo(empty, _items(10, 4))  # eager ...
  np.testing.assert_array_equal(state.items["y"], [10, 11, 12, 13, 0, 0])
  np.testing.assert_array_equal(replay.valid(state), [1, 1, 1, 1, 0, 0])
  chex.assert_trees_all_equal(jax.jit(replay.add_fifo)(empty, _items(10, 4)), state)  # ... = jit


def test_add_and_sample_inside_a_scan_keep_the_state_type():
  capacity, batch, steps = 8, 3, 10
  state = replay.init_state(capacity, _example())
  xs = jax.tree.map(lambda x: x.reshape(steps, batch, *x.shape[1:]), _items(0, steps * batch))

  def body(state, x):
    new = replay.add_reservoir(state, x, jax.random.key(state.seen))
    chex.assert_trees_all_equal_shapes_and_dtypes(new, state)  # the scan carry rule
    return new, replay.sample(new, jax.random.key(7), 4)["y"]

  final, samples = jax.jit(lambda s: jax.lax.scan(body, s, xs))(state)
  assert int(final.seen) == steps * batch and samples.shape == (steps, 4)
  # Every sample is an item added by then (ids < 3 * (step + 1)).
  assert np.all(np.asarray(samples) < 3 * (np.arange(steps)[:, None] + 1))
  chex.assert_trees_all_equal_shapes_and_dtypes(
    jax.eval_shape(replay.add_fifo, state, jax.tree.map(lambda x: x[0], xs)), state
  )


# ----------------------------------------------------------------------------- reservoir


@pytest.mark.parametrize(
  ("batch", "padded"), [(4, False), (12, False), (6, True)]
)  # collisions within a batch; a batch > capacity; padded batches (validity masks)
def test_reservoir_inclusion_probability_is_k_over_n(batch, padded):
  capacity, num_items, seeds = 5, 24, 4000
  example = {"y": jnp.zeros((), jnp.int32)}

  ids = jnp.arange(num_items, dtype=jnp.int32).reshape(-1, batch)
  if padded:  # each item followed by a copy marked invalid: the copies never enter
    ids = jnp.stack([ids, ids + 1000], axis=2).reshape(ids.shape[0], -1)

  def run(key):
    def body(state, step):
      i, y = step
      k = jax.random.fold_in(key, i)
      if padded:
        return replay.add_reservoir(state, {"y": y}, k, y < 1000), None
      return replay.add_reservoir(state, {"y": y}, k), None

    state, _ = jax.lax.scan(body, replay.init_state(capacity, example), (jnp.arange(len(ids)), ids))
    return state.items["y"], state.seen

  kept, seen = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), seeds))
  kept = np.asarray(kept)
  assert np.all(np.asarray(seen) == num_items)  # invalid items are not counted
  # Bounded and exact contents: each run holds `capacity` distinct items seen so far.
  assert kept.shape == (seeds, capacity)
  assert all(len(set(row)) == capacity for row in kept)
  assert kept.min() >= 0 and kept.max() < num_items
  counts = np.bincount(kept.ravel(), minlength=num_items)
  # Each item is kept with probability k / n: counts ~ Binomial(seeds, k / n) per item,
  # summing to seeds * k; a chi-square test of the counts against seeds * k / n each.
  expected = np.full(num_items, seeds * capacity / num_items)
  assert _chi_square_p(counts, expected) > P_MIN, counts
  np.testing.assert_allclose(counts / seeds, capacity / num_items, atol=0.04)


def test_reservoir_before_full_keeps_everything_in_order():
  add = jax.jit(replay.add_reservoir)
  state = add(replay.init_state(6, _example()), _items(0, 3), jax.random.key(0))
  np.testing.assert_array_equal(state.items["y"], [0, 1, 2, 0, 0, 0])
  state = add(state, _items(3, 3), jax.random.key(1))
  np.testing.assert_array_equal(state.items["y"], [0, 1, 2, 3, 4, 5])


# ----------------------------------------------------------------------------- sampling


def test_uniform_sampling_covers_exactly_the_stored_slots():
  state = replay.add_fifo(replay.init_state(10, _example()), _items(0, 7))
  draws = np.asarray(
    jax.jit(replay.sample_indices, static_argnums=2)(state, jax.random.key(3), 70_000)
  )
  assert draws.min() == 0 and draws.max() == 6  # never an empty slot
  counts = np.bincount(draws, minlength=7)
  assert _chi_square_p(counts, np.full(7, 10_000)) > P_MIN, counts
  items = replay.sample(state, jax.random.key(3), 5)
  np.testing.assert_array_equal(items["y"], draws[:5])  # sample = gather(sample_indices)


def test_balanced_sampling_weights_each_present_group_equally():
  capacity = 16
  groups = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 7, -1, 2, 0, 0, 0])
  # Slots 0-12 stored (13 items); 13-15 empty (their group 0 must not count). Group 7 is
  # outside num_groups=4 and -1 negative: never drawn. Group 3 absent.
  state = replay.init_state(capacity, {"g": jnp.zeros((), jnp.int32)})
  state = replay.add_fifo(state, {"g": jnp.asarray(groups[:13], jnp.int32)})
  draw = jax.jit(replay.balanced_indices, static_argnums=(2, 4))
  s = 90_000
  slots = np.asarray(draw(state, jax.random.key(5), s, state.items["g"], 4))
  per_group = {0: [0], 1: [1, 2, 3], 2: [4, 5, 6, 7, 8, 9, 12]}
  allowed = sorted(sum(per_group.values(), []))
  assert set(np.unique(slots)) == set(allowed)
  expected = {i: s / 3 / len(members) for members in per_group.values() for i in members}
  counts = np.bincount(slots, minlength=capacity)[allowed]
  assert _chi_square_p(counts, [expected[i] for i in allowed]) > P_MIN, counts
  group_of = dict(enumerate(groups))
  group_counts = np.bincount([group_of[i] for i in slots])[:3]
  np.testing.assert_allclose(group_counts / s, 1 / 3, atol=0.01)


def test_balanced_sampling_of_one_group_is_uniform_over_it():
  state = replay.add_fifo(
    replay.init_state(5, {"g": jnp.zeros((), jnp.int32)}), {"g": jnp.zeros(5, jnp.int32)}
  )
  slots = np.asarray(replay.balanced_indices(state, jax.random.key(0), 50_000, state.items["g"], 1))
  assert _chi_square_p(np.bincount(slots, minlength=5), np.full(5, 10_000)) > P_MIN


def test_make_buffer_binds_the_settings():
  buffer = replay.make_buffer(4, 3, policy="fifo")
  state = buffer.add(buffer.init(_example()), _items(0, 6))
  np.testing.assert_array_equal(np.sort(np.asarray(state.items["y"])), [2, 3, 4, 5])
  assert buffer.sample(state, jax.random.key(0))["x"].shape == (3, 2)


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_problem():
  state = replay.init_state(4, _example())
  bad = {"x": jnp.zeros((3, 5)), "y": jnp.zeros(3, jnp.int32)}
  with pytest.raises(ValueError, match=r"shape \(5,\).*slots of shape \(2,\)"):
    replay.add_fifo(state, bad)
  bad = {"x": jnp.zeros((3, 2)), "y": jnp.zeros(3, jnp.float32)}
  with pytest.raises(ValueError, match="dtype float32 do not fit slots of shape .* dtype int32"):
    replay.add_fifo(state, bad)
  with pytest.raises(ValueError, match="same leading axis"):
    replay.add_fifo(state, {"x": jnp.zeros((3, 2)), "y": jnp.zeros(2, jnp.int32)})
  with pytest.raises(ValueError, match="capacity must be a positive int, got 0"):
    replay.init_state(0, _example())
  with pytest.raises(ValueError, match="policy='lifo' must be one of"):
    replay.make_buffer(4, 2, policy="lifo")
  with pytest.raises(ValueError, match="policy='reservoir' needs a PRNG key"):
    replay.add(state, _items(0, 1), policy="reservoir")
  with pytest.raises(ValueError, match="groups must be integers"):
    replay.balanced_indices(state, jax.random.key(0), 2, jnp.zeros(4), 2)
