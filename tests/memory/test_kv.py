"""Tests for memjax.memory.kv (fixed-capacity key-value store)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import kv


class _NumpyKV:
  """Loop reference of the store, written from the rules in kv's module docstring."""

  def __init__(self, n, key_size, value_size):
    self.n = n
    self.keys = np.zeros((n, key_size))
    self.values = np.zeros((n, value_size))
    self.written = [-1] * n
    self.last_read = [-1] * n
    self.hits = [0] * n
    self.valid = [False] * n
    self.step = 0

  def victim(self, policy):
    for i in range(self.n):
      if not self.valid[i]:
        return i
    order = {
      "ring": lambda i: (self.written[i], i),
      "lru": lambda i: (max(self.written[i], self.last_read[i]), i),
      "least_used": lambda i: (self.hits[i], self.written[i], i),
    }[policy]
    return min(range(self.n), key=order)

  def write(self, key, value, policy="ring", threshold=None):
    slot = None
    if threshold is not None:
      best, best_sim = None, -np.inf
      for i in range(self.n):
        if self.valid[i]:
          sim = key @ self.keys[i] / (np.linalg.norm(key) * np.linalg.norm(self.keys[i]))
          if sim > best_sim:
            best, best_sim = i, sim
      if best is not None and best_sim >= threshold:
        slot = best
    if slot is None:
      slot = self.victim(policy)
      self.hits[slot], self.last_read[slot] = 0, -1
    self.keys[slot], self.values[slot] = key, value
    self.written[slot], self.valid[slot] = self.step, True
    self.step += 1

  def read_and_touch(self, query, k):
    scores = [float(self.keys[i] @ query) if self.valid[i] else -np.inf for i in range(self.n)]
    idx = sorted(range(self.n), key=lambda i: (-scores[i], i))[:k]
    for i in idx:
      if self.valid[i]:
        self.hits[i] += 1
        self.last_read[i] = self.step
    self.step += 1
    return idx, [scores[i] for i in idx], self.values[idx]

  def assert_equal(self, state):
    np.testing.assert_allclose(state.keys, self.keys, rtol=1e-6)
    np.testing.assert_allclose(state.values, self.values, rtol=1e-6)
    np.testing.assert_array_equal(state.written, self.written)
    np.testing.assert_array_equal(state.last_read, self.last_read)
    np.testing.assert_array_equal(state.hits, self.hits)
    np.testing.assert_array_equal(state.valid, self.valid)
    assert int(state.step) == self.step


def _write_all(state, keys, policy="ring", **kw):
  for i, key in enumerate(keys):
    state = kv.write(state, jnp.asarray(key, jnp.float32), jnp.array([float(i)]), policy, **kw)
  return state


E = np.eye(4, dtype=np.float32)  # orthogonal keys: reading E[i] retrieves exactly item i


def test_ring_overwrites_oldest_first():
  state = _write_all(kv.init_state(3, 4, 1), E)  # items 0..3 into 3 slots
  np.testing.assert_array_equal(state.values[:, 0], [3.0, 1.0, 2.0])
  np.testing.assert_array_equal(state.written, [3, 1, 2])
  state = kv.write(state, jnp.ones(4), jnp.array([9.0]))  # next oldest is slot 1
  np.testing.assert_array_equal(state.values[:, 0], [3.0, 9.0, 2.0])


def test_lru_evicts_least_recently_read_or_written():
  state = _write_all(kv.init_state(3, 4, 1), E[:3], "lru")  # steps 0, 1, 2
  state, r = kv.read_and_touch(state, jnp.asarray(E[0]))  # touch item 0 at step 3
  assert int(r.indices[0]) == 0
  np.testing.assert_array_equal(state.last_read, [3, -1, -1])
  state = kv.write(state, jnp.asarray(E[3]), jnp.array([3.0]), "lru")  # evicts slot 1
  np.testing.assert_array_equal(state.values[:, 0], [0.0, 3.0, 2.0])
  state = kv.write(state, jnp.ones(4), jnp.array([4.0]), "lru")  # then slot 2 (written 2)
  np.testing.assert_array_equal(state.values[:, 0], [0.0, 3.0, 4.0])
  state = kv.write(state, jnp.ones(4), jnp.array([5.0]), "lru")  # then slot 0 (read at 3)
  np.testing.assert_array_equal(state.values[:, 0], [5.0, 3.0, 4.0])
  # Ring order would have evicted slot 0 first.
  ring = _write_all(kv.init_state(3, 4, 1), E[:3])
  ring, _ = kv.read_and_touch(ring, jnp.asarray(E[0]))
  ring = kv.write(ring, jnp.asarray(E[3]), jnp.array([3.0]))
  np.testing.assert_array_equal(ring.values[:, 0], [3.0, 1.0, 2.0])


def test_least_used_evicts_fewest_hits_then_oldest():
  state = _write_all(kv.init_state(3, 4, 1), E[:3], "least_used")
  state = kv.write(state, jnp.asarray(E[3]), jnp.array([3.0]), "least_used")
  np.testing.assert_array_equal(state.values[:, 0], [3.0, 1.0, 2.0])  # all 0 hits: oldest
  state = _write_all(kv.init_state(3, 4, 1), E[:3], "least_used")
  for q in (E[0], E[0], E[2]):
    state, _ = kv.read_and_touch(state, jnp.asarray(q))
  np.testing.assert_array_equal(state.hits, [2, 0, 1])
  state = kv.write(state, jnp.asarray(E[3]), jnp.array([3.0]), "least_used")
  np.testing.assert_array_equal(state.values[:, 0], [0.0, 3.0, 2.0])  # slot 1 had 0 hits
  np.testing.assert_array_equal(state.hits, [2, 0, 1])
  state, _ = kv.read_and_touch(state, jnp.asarray(E[3]))
  state, _ = kv.read_and_touch(state, jnp.asarray(E[3]))
  state = kv.write(state, jnp.ones(4), jnp.array([7.0]), "least_used")  # slot 2 (1 hit)
  np.testing.assert_array_equal(state.values[:, 0], [0.0, 3.0, 7.0])


def test_empty_slots_are_filled_first_after_reset():
  state = _write_all(kv.init_state(3, 4, 1), E[:3])
  state = kv.reset(state, jnp.array([False, True, False]))
  assert not bool(state.valid[1]) and int(state.written[1]) == -1
  np.testing.assert_array_equal(state.values[1], [0.0])
  assert int(state.step) == 3
  state = kv.write(state, jnp.asarray(E[3]), jnp.array([8.0]))
  np.testing.assert_array_equal(state.values[:, 0], [0.0, 8.0, 2.0])
  chex.assert_trees_all_equal(kv.reset(state), kv.init_state(3, 4, 1))


def test_update_in_place_above_threshold():
  state = _write_all(kv.init_state(3, 2, 1), [[1.0, 0.0], [0.0, 1.0]], update_threshold=0.9)
  state, _ = kv.read_and_touch(state, jnp.array([1.0, 0.0]))
  near = jnp.array([0.99, 0.05])  # cosine with [1, 0] ~ 0.9987
  updated = kv.write(state, near, jnp.array([5.0]), update_threshold=0.9)
  np.testing.assert_array_equal(updated.valid, [True, True, False])
  np.testing.assert_array_equal(updated.values[:, 0], [5.0, 1.0, 0.0])
  np.testing.assert_array_equal(updated.keys[0], near)
  assert int(updated.hits[0]) == 1 and int(updated.written[0]) == 3  # hits kept, rewritten
  # Off by default, and below the threshold: a new slot.
  plain = kv.write(state, near, jnp.array([5.0]))
  np.testing.assert_array_equal(plain.values[:, 0], [0.0, 1.0, 5.0])
  strict = kv.write(state, near, jnp.array([5.0]), update_threshold=0.9999)
  np.testing.assert_array_equal(strict.values[:, 0], [0.0, 1.0, 5.0])


def test_write_batch_equals_sequential_writes_and_skips_masked():
  rng = np.random.default_rng(0)
  keys = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
  values = jnp.asarray(rng.normal(size=(7, 2)), jnp.float32)
  keys = keys.at[4].set(keys[1] * 2.0)  # same direction as item 1: updated in place
  mask = jnp.array([True, True, False, True, True, True, True])
  for policy in kv.POLICIES:
    got = kv.write_batch(kv.init_state(4, 3, 2), keys, values, mask, policy, 0.95)
    want = kv.init_state(4, 3, 2)
    for i in range(7):
      if bool(mask[i]):
        want = kv.write(want, keys[i], values[i], policy, 0.95)
    chex.assert_trees_all_close(got, want)
  got = kv.write_batch(kv.init_state(4, 3, 2), keys, values, mask, update_threshold=0.95)
  assert int(got.step) == 6
  np.testing.assert_allclose(got.values[1], values[4])  # in-place within the batch
  assert not np.any(np.all(np.isclose(got.values, values[2]), axis=1))  # masked item skipped


@pytest.mark.parametrize("policy", kv.POLICIES)
def test_matches_numpy_loop(policy):
  rng = np.random.default_rng(1)
  n, ks, vs = 4, 3, 2
  ref, state = _NumpyKV(n, ks, vs), kv.init_state(n, ks, vs)
  for t in range(30):
    if rng.random() < 0.55:
      key, value = rng.normal(size=ks), rng.normal(size=vs)
      if t % 5 == 4 and any(ref.valid):  # sometimes a near-duplicate of a stored key
        key = ref.keys[int(np.flatnonzero(ref.valid)[0])] * 1.5
      ref.write(key, value, policy, 0.97)
      state = kv.write(
        state, jnp.asarray(key, jnp.float32), jnp.asarray(value, jnp.float32), policy, 0.97
      )
    else:
      query = rng.normal(size=ks)
      idx, scores, values = ref.read_and_touch(query, 2)
      state, r = kv.read_and_touch(state, jnp.asarray(query, jnp.float32), 2)
      np.testing.assert_array_equal(r.indices, idx)
      np.testing.assert_allclose(r.scores, scores, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(r.values, values, rtol=1e-6)
    ref.assert_equal(state)


def test_read_is_pure_and_k_beyond_valid_gives_minus_inf():
  state = _write_all(kv.init_state(4, 4, 1), E[:2])
  r = kv.read(state, jnp.array([0.0, 2.0, 0.0, 0.0]), k=3)
  np.testing.assert_array_equal(r.indices[:2], [1, 0])
  np.testing.assert_array_equal(r.scores[:2], [2.0, 0.0])
  assert r.scores[2] == -np.inf and not bool(state.valid[r.indices[2]])
  np.testing.assert_array_equal(r.values[:, 0], [1.0, 0.0, 0.0])
  touched, _ = kv.read_and_touch(state, jnp.array([0.0, 2.0, 0.0, 0.0]), k=3)
  np.testing.assert_array_equal(touched.hits, [1, 1, 0, 0])  # only valid slots touched
  np.testing.assert_array_equal(touched.last_read, [2, 2, -1, -1])
  out, w = kv.weighted_top_k(r)
  np.testing.assert_allclose(w, [np.e**2 / (np.e**2 + 1), 1 / (np.e**2 + 1), 0.0], rtol=1e-6)
  np.testing.assert_allclose(out, [w[0]], rtol=1e-6)


def test_several_queries_touch_each_hit():
  state = _write_all(kv.init_state(3, 4, 1), E[:3])
  queries = jnp.asarray(np.stack([E[0], E[0], E[2]]))
  state, r = kv.read_and_touch(state, queries)
  assert r.indices.shape == (3, 1) and r.values.shape == (3, 1, 1)
  np.testing.assert_array_equal(state.hits, [2, 0, 1])


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_batch_shapes_via_vmap(batch):
  rng = np.random.default_rng(2)
  keys = jnp.asarray(rng.normal(size=batch + (5, 3)), jnp.float32)
  values = jnp.asarray(rng.normal(size=batch + (5, 2)), jnp.float32)
  state = jax.tree.map(lambda a: jnp.broadcast_to(a, batch + a.shape), kv.init_state(4, 3, 2))
  write = lambda s, k, v: kv.write_batch(s, k, v, policy="lru")
  read = lambda s, q: kv.read_and_touch(s, q, 2)
  for _ in batch:
    write, read = jax.vmap(write), jax.vmap(read)
  state, r = read(write(state, keys, values), keys[..., 0, :])
  assert r.values.shape == batch + (2, 2) and r.indices.shape == batch + (2,)
  assert state.hits.shape == batch + (4,) and state.step.shape == batch
  flat = lambda a: a.reshape((-1,) + a.shape[len(batch) :])
  for i in range(flat(keys).shape[0]):
    s1 = kv.write_batch(kv.init_state(4, 3, 2), flat(keys)[i], flat(values)[i], policy="lru")
    s1, r1 = kv.read_and_touch(s1, flat(keys)[i, 0], 2)
    np.testing.assert_array_equal(flat(r.indices)[i], r1.indices)
    np.testing.assert_array_equal(flat(state.hits)[i], s1.hits)


def test_eval_shape_of_write_is_state():
  state = kv.init_state(5, 3, 2, jnp.bfloat16)
  for fn in (
    lambda s: kv.write(s, jnp.ones(3), jnp.ones(2), "least_used", 0.5),
    lambda s: kv.write_batch(s, jnp.ones((4, 3)), jnp.ones((4, 2))),
    lambda s: kv.read_and_touch(s, jnp.ones(3), 2)[0],
    lambda s: kv.reset(s, jnp.ones(5, bool)),
  ):
    out = jax.eval_shape(fn, state)
    assert jax.tree.structure(out) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state
    )


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_equals_eager(self):
    def run(keys, values, query):
      state = kv.write_batch(kv.init_state(3, 4, 1), keys, values, policy="lru")
      return kv.read_and_touch(state, query, 2)

    values = jnp.arange(4.0)[:, None]
    state, r = self.variant(run)(jnp.asarray(E), values, jnp.array([0.0, 0.0, 1.0, 3.0]))
    # 4 items into 3 slots: item 3 replaced item 0 in slot 0; best matches: item 3, item 2.
    np.testing.assert_array_equal(r.indices, [0, 2])
    np.testing.assert_array_equal(r.values[:, 0], [3.0, 2.0])
    np.testing.assert_array_equal(state.hits, [1, 0, 1])


def test_grads_through_top_k_scores_and_values():
  rng = np.random.default_rng(3)
  keys = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  values = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
  query = jnp.asarray(rng.normal(size=(3,)), jnp.float32)

  def f(query, values):
    state = kv.write_batch(kv.init_state(5, 3, 2), keys, values)
    return kv.weighted_top_k(kv.read(state, query, k=3))[0]

  check_grads(jax.jit(f), (query, values), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  gq = jax.grad(lambda q: f(q, values).sum())(query)
  assert np.all(np.isfinite(gq)) and np.abs(gq).sum() > 0


def test_bad_inputs_name_the_argument():
  state = kv.init_state(3, 4, 2)
  with pytest.raises(ValueError, match="key has feature size 3"):
    kv.write(state, jnp.ones(3), jnp.ones(2))
  with pytest.raises(ValueError, match="value has feature size"):
    kv.write(state, jnp.ones(4), jnp.ones(3))
  with pytest.raises(ValueError, match="keys must have rank 2"):
    kv.write_batch(state, jnp.ones(4), jnp.ones((1, 2)))
  with pytest.raises(ValueError, match="values has 2 items"):
    kv.write_batch(state, jnp.ones((3, 4)), jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="k=4"):
    kv.read(state, jnp.ones(4), k=4)
  with pytest.raises(TypeError, match="query"):
    kv.read(state, jnp.ones(4, jnp.int32))
  with pytest.raises(ValueError, match="query has feature size 5"):
    kv.read_and_touch(state, jnp.ones(5))
  with pytest.raises(ValueError, match="policy='fifo'"):
    kv.write(state, jnp.ones(4), jnp.ones(2), policy="fifo")
  with pytest.raises(ValueError, match="mask"):
    kv.write_batch(state, jnp.ones((2, 4)), jnp.ones((2, 2)), mask=jnp.ones(3, bool))
  with pytest.raises(ValueError, match="state.keys"):
    kv.write(jax.tree.map(lambda a: a[None], state), jnp.ones(4), jnp.ones(2))


def _cell_numpy_loop(params, x, input_size, n, k, policy):
  """Numpy reference of KVCell over x [B, T, F] with the loop store above."""
  p = jax.tree.map(np.asarray, params)
  dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]
  out = np.zeros(x.shape[:2] + (p["value"]["kernel"].shape[1],))
  for b in range(x.shape[0]):
    ref = _NumpyKV(n, p["key"]["kernel"].shape[1], p["value"]["kernel"].shape[1])
    for t in range(x.shape[1]):
      xt, yt = x[b, t, :input_size], x[b, t, input_size:]
      _, scores, values = ref.read_and_touch(dense("query", xt), k)
      scores = np.array(scores)
      if np.isfinite(scores).any():
        w = np.where(np.isfinite(scores), np.exp(scores - scores.max()), 0.0)
        out[b, t] = (w / w.sum()) @ values
      ref.write(dense("key", xt), dense("value", yt), policy)
  return out


@pytest.mark.parametrize("policy", ["lru", "least_used"])
def test_cell_matches_numpy_loop(policy):
  n, input_size, k = 3, 2, 2
  cell = kv.KVCell(num_slots=n, key_size=4, value_size=3, input_size=input_size, k=k, policy=policy)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 8, input_size + 3)), jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  carry, y = rnn.apply({"params": params}, x)
  want = _cell_numpy_loop(params["cell"], np.asarray(x), input_size, n, k, policy)
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(y[:, 0], 0.0)  # nothing stored before the first write
  np.testing.assert_array_equal(carry.step, [16, 16])  # one read + one write per step


def test_cell_gradient_reaches_query_projection():
  cell = kv.KVCell(num_slots=4, key_size=3, value_size=2, input_size=2, k=2)
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 4)), jnp.float32)
  rnn = nn.RNN(cell)
  params = rnn.init(jax.random.key(0), x)
  grads = jax.grad(lambda p: jnp.sum(rnn.apply(p, x) ** 2))(params)["params"]["cell"]
  for name in ("query", "key", "value"):
    g = grads[name]["kernel"]
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0, name
