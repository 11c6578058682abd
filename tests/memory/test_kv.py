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
    """Stores one item; returns True when it updated a matching slot in place."""
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
    in_place = slot is not None
    if slot is None:
      slot = self.victim(policy)
      self.hits[slot], self.last_read[slot] = 0, -1
    self.keys[slot], self.values[slot] = key, value
    self.written[slot], self.valid[slot] = self.step, True
    self.step += 1
    return in_place

  def read_and_touch(self, query, k, similarity="dot"):
    def score(i):
      dot = float(self.keys[i] @ query)
      if similarity == "cosine":
        dot /= np.linalg.norm(self.keys[i]) * np.linalg.norm(query)
      return dot

    scores = [score(i) if self.valid[i] else -np.inf for i in range(self.n)]
    idx = sorted(range(self.n), key=lambda i: (-scores[i], i))[:k]
    for i in idx:
      if self.valid[i]:
        self.hits[i] += 1
        self.last_read[i] = self.step
    self.step += 1
    return idx, [scores[i] for i in idx], self.values[idx]

  def assert_equal(self, state, atol=0.0):
    np.testing.assert_allclose(state.keys, self.keys, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(state.values, self.values, rtol=1e-6, atol=atol)
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


@pytest.mark.parametrize("policy", kv.POLICIES)
def test_write_batch_matches_numpy_loop_and_skips_masked(policy):
  rng = np.random.default_rng(0)
  keys = rng.normal(size=(7, 3)).astype(np.float32)
  values = rng.normal(size=(7, 2)).astype(np.float32)
  keys[4] = keys[1] * 2.0  # same direction as item 1: updated in place
  mask = np.array([True, True, False, True, True, True, True])
  got = kv.write_batch(kv.init_state(4, 3, 2), keys, values, jnp.asarray(mask), policy, 0.95)
  ref = _NumpyKV(4, 3, 2)
  in_place = [ref.write(keys[i], values[i], policy, 0.95) for i in range(7) if mask[i]]
  ref.assert_equal(got)
  assert in_place == [False, False, False, True, False, False]  # item 4 only
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
      idx, scores, values = ref.read_and_touch(query, 2, "cosine")  # the family's default
      state, r = kv.read_and_touch(state, jnp.asarray(query, jnp.float32), 2)
      np.testing.assert_array_equal(r.indices, idx)
      np.testing.assert_allclose(r.scores, scores, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(r.values, values, rtol=1e-6)
    ref.assert_equal(state)


def test_read_is_pure_and_k_beyond_valid_gives_minus_inf():
  state = _write_all(kv.init_state(4, 4, 1), E[:2])
  r = kv.read(state, jnp.array([0.0, 2.0, 0.0, 0.0]), k=3, similarity="dot")
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


def test_read_and_write_share_one_default_similarity():
  """kv.read / read_and_touch default to the similarity of write's update check."""
  state = _write_all(kv.init_state(3, 2, 1), jnp.array([[10.0, 0.0], [1.0, 1.0]]))
  query = jnp.array([1.0, 1.2])  # dot prefers slot 0 (10 > 2.2); cosine slot 1 (0.64 < 0.996)
  assert kv.DEFAULT_SIMILARITY == "cosine"
  assert int(kv.read(state, query).indices[0]) == 1
  assert int(kv.read_and_touch(state, query)[1].indices[0]) == 1
  assert int(kv.read(state, query, similarity="dot").indices[0]) == 0
  # write's in-place check at the same default: [2, 2.4] is within cosine 0.99 of slot 1.
  updated = kv.write(state, query * 2, jnp.array([7.0]), update_threshold=0.99)
  assert float(updated.values[1, 0]) == 7.0 and not bool(updated.valid[2])


def test_several_queries_touch_each_hit():
  state = _write_all(kv.init_state(3, 4, 1), E[:3])
  queries = jnp.asarray(np.stack([E[0], E[0], E[2]]))
  state, r = kv.read_and_touch(state, queries)
  assert r.indices.shape == (3, 1) and r.values.shape == (3, 1, 1)
  np.testing.assert_array_equal(state.hits, [2, 0, 1])


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


_S = kv.init_state(3, 4, 2)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: kv.write(_S, jnp.ones(3), jnp.ones(2)), ValueError, "key has feature size 3"),
    (lambda: kv.write(_S, jnp.ones(4), jnp.ones(3)), ValueError, "value has feature size 3"),
    (
      lambda: kv.write_batch(_S, jnp.ones(4), jnp.ones((1, 2))),
      ValueError,
      "keys must have rank 2",
    ),
    (
      lambda: kv.write_batch(_S, jnp.ones((3, 4)), jnp.ones((2, 2))),
      ValueError,
      r"values has 2 items \(shape \(2, 2\)\) but keys has 3",
    ),
    (lambda: kv.read(_S, jnp.ones(4), k=4), ValueError, r"k=4 must be in \[1, 3\]"),
    (lambda: kv.read(_S, jnp.ones(4, jnp.int32)), TypeError, "query must have a floating"),
    (lambda: kv.read_and_touch(_S, jnp.ones(5)), ValueError, "query has feature size 5"),
    (
      lambda: kv.write(_S, jnp.ones(4), jnp.ones(2), policy="fifo"),
      ValueError,
      "policy='fifo' is not one of",
    ),
    (
      lambda: kv.write_batch(_S, jnp.ones((2, 4)), jnp.ones((2, 2)), mask=jnp.ones(3, bool)),
      ValueError,
      r"mask must be bool of shape \(2,\)",
    ),
    (
      lambda: kv.write(jax.tree.map(lambda a: a[None], _S), jnp.ones(4), jnp.ones(2)),
      ValueError,
      "state.keys must have rank 2",
    ),
    (lambda: kv.reset(_S, jnp.ones(4, bool)), ValueError, r"slots must be bool of shape \(3,\)"),
    (lambda: kv.init_state(0, 4, 2), ValueError, "num_slots must be a positive int"),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()


def _cell_numpy_loop(params, x, input_size, n, k, policy, threshold=None):
  """Numpy reference of KVCell over x [B, T, F] with the loop store above.

  Returns ``(y, stores, in_place)``: the outputs, each example's final store and how
  many writes updated a slot in place.
  """
  p = jax.tree.map(np.asarray, params)
  dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]
  out = np.zeros(x.shape[:2] + (p["value"]["kernel"].shape[1],))
  in_place, stores = 0, []
  for b in range(x.shape[0]):
    ref = _NumpyKV(n, p["key"]["kernel"].shape[1], p["value"]["kernel"].shape[1])
    stores.append(ref)
    for t in range(x.shape[1]):
      xt, yt = x[b, t, :input_size], x[b, t, input_size:]
      _, scores, values = ref.read_and_touch(dense("query", xt), k)
      scores = np.array(scores)
      if np.isfinite(scores).any():
        w = np.where(np.isfinite(scores), np.exp(scores - scores.max()), 0.0)
        out[b, t] = (w / w.sum()) @ values
      in_place += ref.write(dense("key", xt), dense("value", yt), policy, threshold)
  return out, stores, in_place


@pytest.mark.parametrize(
  "kwargs",
  [
    {},  # the defaults: ring eviction, no in-place update
    dict(update_threshold=0.6),  # ring with in-place updates
    dict(policy="lru"),
    dict(policy="least_used"),
    dict(policy="least_used", update_threshold=0.6),
  ],
  ids=["ring", "ring-update", "lru", "least_used", "least_used-update"],
)
def test_cell_matches_numpy_loop(kwargs):
  n, input_size, k = 3, 2, 2
  cell = kv.KVCell(num_slots=n, key_size=4, value_size=3, input_size=input_size, k=k, **kwargs)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 8, input_size + 3)), jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  carry, y = rnn.apply({"params": params}, x)
  policy, threshold = kwargs.get("policy", "ring"), kwargs.get("update_threshold")
  want, stores, in_place = _cell_numpy_loop(
    params["cell"], np.asarray(x), input_size, n, k, policy, threshold
  )
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(y[:, 0], 0.0)  # nothing stored before the first write
  np.testing.assert_array_equal(carry.step, [16, 16])  # one read + one write per step
  for b, ref in enumerate(stores):  # the whole store: slots, clocks, hits, validity
    ref.assert_equal(jax.tree.map(lambda a, b=b: a[b], carry), atol=1e-6)
  # The data exercise the rule under test: in-place updates happen iff a threshold is set
  # (and then not for every write, so the policy still evicts).
  assert (0 < in_place < 2 * (8 - n)) if threshold is not None else in_place == 0


def test_cell_gradient_reaches_query_projection():
  cell = kv.KVCell(num_slots=4, key_size=3, value_size=2, input_size=2, k=2)
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 4)), jnp.float32)
  rnn = nn.RNN(cell)
  params = rnn.init(jax.random.key(0), x)
  grads = jax.grad(lambda p: jnp.sum(rnn.apply(p, x) ** 2))(params)["params"]["cell"]
  for name in ("query", "key", "value"):
    g = grads[name]["kernel"]
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0, name
