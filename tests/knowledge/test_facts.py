"""Tests for memjax.knowledge.facts: conflict policies, decay, deletion."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax import knowledge as K

PARIS, ROME, OSLO = np.eye(3, dtype=np.float32)
MARY_CITY = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
JOHN_CITY = np.array([0.0, 1.0, 0.0, 0.0], np.float32)


# Jitted once per policy: the tests' many small calls run compiled, not op by op.
_integrate = jax.jit(K.integrate, static_argnames=("policy", "gate", "threshold"))
_lookup = jax.jit(K.lookup)


def _gate_params(seed=0, hidden=4):
  return K.ConflictGate(hidden).init(jax.random.key(seed), PARIS, ROME, 1.0, 1.0, 1.0)["params"]


def _numpy_gate(params, old_v, new_v, dt, c_old, c_new, time_scale=10.0):
  p = jax.tree.map(np.asarray, params)
  x = np.concatenate([old_v, new_v, [dt / time_scale, c_old, c_new]])
  h = np.tanh(x @ p["hidden"]["kernel"] + p["hidden"]["bias"])
  return 1 / (1 + np.exp(-(h @ p["out"]["kernel"] + p["out"]["bias"])[0]))


def _mary_moves(policy, **kwargs):
  """Mary lives in Paris (t=1, c=0.9, owner 7); later in Rome (t=5, c=0.6, owner 8)."""
  state = K.init_state(4, 4, 3)
  state = _integrate(state, MARY_CITY, PARIS, 1.0, 0.9, 7, policy=policy, **kwargs)
  return _integrate(state, MARY_CITY, ROME, 5.0, 0.6, 8, policy=policy, **kwargs)


def _answer(state, key=MARY_CITY):
  values, _, found = _lookup(state, key)
  assert bool(found)
  return np.asarray(values)


class PolicyTest(parameterized.TestCase):
  def test_newest_wins(self):
    s = _mary_moves("newest")
    np.testing.assert_array_equal(_answer(s), ROME)
    assert int(K.num_facts(s)) == 1
    assert (float(s.timestamp[0]), float(s.confidence[0]), int(s.owner[0])) == pytest.approx(
      (5.0, 0.6, 8), rel=1e-6
    )
    # An older fact arriving late does not replace the newer one.
    late = _integrate(s, MARY_CITY, OSLO, 3.0, 1.0, 9, policy="newest")
    np.testing.assert_array_equal(_answer(late), ROME)
    assert float(late.timestamp[0]) == 5.0

  def test_most_confident_wins_ties_to_the_later(self):
    s = _mary_moves("confident")
    np.testing.assert_array_equal(_answer(s), PARIS)
    assert (float(s.timestamp[0]), float(s.confidence[0]), int(s.owner[0])) == pytest.approx(
      (1.0, 0.9, 7), rel=1e-6
    )
    tie = _integrate(s, MARY_CITY, OSLO, 6.0, 0.9, 9, policy="confident")
    np.testing.assert_array_equal(_answer(tie), OSLO)
    more = _integrate(tie, MARY_CITY, ROME, 2.0, 0.95, 9, policy="confident")
    np.testing.assert_array_equal(_answer(more), ROME)

  def test_versions_keep_the_history(self):
    s = _mary_moves("versions")
    np.testing.assert_array_equal(_answer(s), ROME)  # the latest version answers
    np.testing.assert_array_equal(np.asarray(s.active), [False, True, False, False])
    np.testing.assert_array_equal(np.asarray(s.version), [0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(s.kv.values[:2]), [PARIS, ROME])
    assert int(K.num_facts(s)) == 1 and int(K.num_facts(s, include_inactive=True)) == 2
    history = K.read(s, MARY_CITY, k=2, include_inactive=True)
    np.testing.assert_array_equal(np.sort(np.asarray(history.indices)), [0, 1])
    s = _integrate(s, MARY_CITY, OSLO, 9.0, 1.0, 8, policy="versions")
    np.testing.assert_array_equal(np.asarray(s.version[:3]), [0, 1, 2])
    np.testing.assert_array_equal(_answer(s), OSLO)

  def test_weighted_merge(self):
    s = _mary_moves("merge")
    # (0.9 * Paris + 0.6 * Rome) / 1.5
    np.testing.assert_allclose(_answer(s), [0.6, 0.4, 0.0], rtol=1e-6)
    assert (float(s.timestamp[0]), float(s.confidence[0]), int(s.owner[0])) == pytest.approx(
      (5.0, 0.9, 8), rel=1e-6
    )
    zero = K.init_state(2, 4, 3)
    zero = _integrate(zero, MARY_CITY, PARIS, 1.0, 0.0, -1, policy="merge")
    zero = _integrate(zero, MARY_CITY, ROME, 2.0, 0.0, -1, policy="merge")
    np.testing.assert_allclose(_answer(zero), [0.5, 0.5, 0.0])

  def test_keep_is_the_no_update_baseline(self):
    s = _mary_moves("keep")
    np.testing.assert_array_equal(_answer(s), PARIS)
    assert float(s.timestamp[0]) == 1.0

  def test_learned_gate_against_numpy(self):
    params = _gate_params(3)
    s = _mary_moves("gate", gate=K.ConflictGate(4), gate_params=params)
    g = _numpy_gate(params, PARIS, ROME, 4.0, 0.9, 0.6)
    np.testing.assert_allclose(_answer(s), g * ROME + (1 - g) * PARIS, rtol=1e-5)
    np.testing.assert_allclose(float(s.confidence[0]), g * 0.6 + (1 - g) * 0.9, rtol=1e-5)
    assert float(s.timestamp[0]) == 5.0
    assert int(s.owner[0]) == (8 if g >= 0.5 else 7)

  def test_gate_with_a_saturated_bias_is_newest_or_keep(self):
    params = jax.tree.map(jnp.zeros_like, _gate_params())
    for bias, expect in ((30.0, ROME), (-30.0, PARIS)):
      p = {**params, "out": {**params["out"], "bias": jnp.full((1,), bias)}}
      s = _mary_moves("gate", gate=K.ConflictGate(4), gate_params=p)
      np.testing.assert_allclose(_answer(s), expect, atol=1e-6)

  @parameterized.parameters(*K.CONFLICT_POLICIES)
  def test_confirmation_refreshes_time_and_confidence(self, policy):
    kw = {"gate_params": _gate_params(), "gate": K.ConflictGate(4)} if policy == "gate" else {}
    s = K.init_state(3, 4, 3)
    s = _integrate(s, MARY_CITY, PARIS, 1.0, 0.5, 7, policy=policy, **kw)
    s = _integrate(s, MARY_CITY, PARIS, 4.0, 0.8, 7, policy=policy, **kw)
    s = _integrate(s, MARY_CITY, PARIS, 2.0, 0.3, 7, policy=policy, **kw)
    assert int(K.num_facts(s, include_inactive=True)) == 1
    np.testing.assert_array_equal(_answer(s), PARIS)
    assert (float(s.timestamp[0]), float(s.confidence[0])) == pytest.approx((4.0, 0.8), rel=1e-6)

  @parameterized.parameters("newest", "gate")  # the numpy agreement test covers the rest
  def test_different_keys_never_conflict(self, policy):
    kw = {"gate_params": _gate_params(), "gate": K.ConflictGate(4)} if policy == "gate" else {}
    s = K.init_state(3, 4, 3)
    s = _integrate(s, MARY_CITY, PARIS, 1.0, 1.0, 7, policy=policy, **kw)
    s = _integrate(s, JOHN_CITY, ROME, 2.0, 1.0, 8, policy=policy, **kw)
    np.testing.assert_array_equal(_answer(s, MARY_CITY), PARIS)
    np.testing.assert_array_equal(_answer(s, JOHN_CITY), ROME)
    _, _, found = _lookup(s, np.array([0.0, 0.0, 1.0, 0.0]))
    assert not bool(found)

  def test_full_memory_evicts_the_oldest_write(self):
    keys = np.eye(4, dtype=np.float32)
    s = K.init_state(3, 4, 3)
    for t in range(4):
      s = _integrate(s, keys[t], PARIS, float(t))
    assert [bool(_lookup(s, keys[t])[2]) for t in range(4)] == [False, True, True, True]


class _NumpyFacts:
  """Loop reference of integrate (no gate), written from the module docstring's rules."""

  def __init__(self, n, k, v, threshold=0.95):
    self.n, self.threshold = n, threshold
    self.keys, self.values = np.zeros((n, k)), np.zeros((n, v))
    self.t, self.c = np.zeros(n), np.zeros(n)
    self.owner, self.version = np.full(n, -1), np.zeros(n, int)
    self.valid, self.active = np.zeros(n, bool), np.zeros(n, bool)
    self.written = np.full(n, -1)
    self.step = 0

  def match(self, key):
    best, score = None, -np.inf
    for i in range(self.n):
      if self.valid[i] and self.active[i]:
        cos = key @ self.keys[i] / (np.linalg.norm(key) * np.linalg.norm(self.keys[i]))
        if cos > score:
          best, score = i, cos
    return best if score >= self.threshold else None

  def fresh(self):
    empty = [i for i in range(self.n) if not self.valid[i]]
    if empty:
      return empty[0]
    old = [i for i in range(self.n) if not self.active[i]] or range(self.n)
    return min(old, key=lambda i: (self.written[i], i))  # superseded first, then ring

  def put(self, i, key, value, t, c, o, version):
    self.keys[i], self.values[i], self.t[i], self.c[i] = key, value, t, c
    self.owner[i], self.version[i], self.valid[i], self.active[i] = o, version, True, True

  def integrate(self, key, value, t, c, o, policy):
    i = self.match(key)
    if i is None:
      j = self.fresh()
      self.put(j, key, value, t, c, o, 0)
    elif np.all(np.abs(value - self.values[i]) <= 1e-5):
      j = i
      self.t[i], self.c[i], self.owner[i] = max(t, self.t[i]), max(c, self.c[i]), o
    elif policy == "versions":
      self.active[i] = False
      j = self.fresh()
      self.put(j, key, value, t, c, o, self.version[i] + 1)
    else:
      j = i
      if policy == "newest":
        wins = t >= self.t[i]
      elif policy == "confident":
        wins = c > self.c[i] or (c == self.c[i] and t >= self.t[i])
      else:
        wins = False
      if policy == "merge":
        w = c / (c + self.c[i]) if c + self.c[i] > 0 else 0.5
        self.values[i] = w * value + (1 - w) * self.values[i]
        self.t[i], self.c[i], self.owner[i] = max(t, self.t[i]), max(c, self.c[i]), o
      elif wins:
        self.values[i], self.t[i], self.c[i], self.owner[i] = value, t, c, o
    self.written[j] = self.step
    self.step += 1


class AgreementTest(parameterized.TestCase):
  @parameterized.parameters("newest", "confident", "versions", "merge", "keep")
  def test_random_streams_match_the_numpy_reference(self, policy):
    rng = np.random.default_rng(0)
    m, n = 40, 6
    keys = np.eye(4, dtype=np.float32)[rng.integers(0, 4, m)]
    keys = keys + 0.01 * rng.standard_normal(keys.shape).astype(np.float32)
    values = np.eye(3, dtype=np.float32)[rng.integers(0, 3, m)]
    times = rng.integers(0, 30, m).astype(np.float32)
    confs = rng.choice([0.25, 0.5, 1.0], m).astype(np.float32)
    owners = rng.integers(0, 3, m).astype(np.int32)
    ref = _NumpyFacts(n, 4, 3)
    for i in range(m):
      ref.integrate(keys[i], values[i], times[i], confs[i], owners[i], policy)
    batch = jax.jit(K.integrate_batch, static_argnames="policy")
    s = batch(K.init_state(n, 4, 3), keys, values, times, confs, owners, policy=policy)
    np.testing.assert_array_equal(np.asarray(s.kv.valid), ref.valid)
    np.testing.assert_array_equal(np.asarray(s.active), ref.active)
    np.testing.assert_allclose(np.asarray(s.kv.values), ref.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.kv.keys), ref.keys, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(s.timestamp), ref.t)
    np.testing.assert_allclose(np.asarray(s.confidence), ref.c, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(s.owner), ref.owner)
    np.testing.assert_array_equal(np.asarray(s.version), ref.version)
    np.testing.assert_array_equal(np.asarray(s.kv.written), ref.written)

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_equals_one_by_one_and_mask_skips(self):
    keys = np.eye(4, dtype=np.float32)[[0, 1, 0, 2, 0]]
    values = np.eye(3, dtype=np.float32)[[0, 1, 1, 2, 2]]
    times = np.arange(5, dtype=np.float32)
    mask = np.array([True, True, True, False, True])
    s = self.variant(lambda st: K.integrate_batch(st, keys, values, times, mask=mask))(
      K.init_state(4, 4, 3)
    )
    t = K.init_state(4, 4, 3)
    for i in np.flatnonzero(mask):
      t = _integrate(t, keys[i], values[i], times[i])
    chex.assert_trees_all_equal(s, t)

  def test_no_retrace_across_calls(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(state, keys, values, times):
      return K.integrate_batch(state, keys, values, times, policy="versions")

    rng = np.random.default_rng(3)
    s = K.init_state(4, 4, 3)
    for t in range(3):  # the state written back in, new facts each time: one trace
      keys = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 5)]
      s = run(
        s, keys, np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)], np.full(5, t, np.float32)
      )
    assert int(s.kv.step) == 15

  def test_structure_shapes_and_dtypes_are_kept(self):
    for dtype in (jnp.float32, jnp.bfloat16):
      s = K.init_state(5, 4, 3, dtype)
      for policy in K.CONFLICT_POLICIES:
        kw = {"gate_params": _gate_params(), "gate": K.ConflictGate(4)} if policy == "gate" else {}
        out = jax.eval_shape(
          lambda st, p=policy, kw=kw: _integrate(st, MARY_CITY, ROME, 1.0, 1.0, 2, policy=p, **kw),
          s,
        )
        chex.assert_trees_all_equal_shapes_and_dtypes(out, s)

  def test_vmap_over_a_batch_of_memories(self):
    s = jax.vmap(lambda _: K.init_state(3, 4, 3))(jnp.arange(2))
    keys = jnp.stack([MARY_CITY, JOHN_CITY])
    s = jax.jit(jax.vmap(lambda st, k: K.integrate(st, k, PARIS, 1.0)))(s, keys)
    _, _, found = jax.jit(jax.vmap(lambda st: _lookup(st, MARY_CITY)))(s)
    np.testing.assert_array_equal(np.asarray(found), [True, False])

  def test_gate_gradients(self):
    params = _gate_params(1)

    @jax.jit
    def answer(p, new_value):
      s = _mary_moves("gate", gate=K.ConflictGate(4), gate_params=p)
      s = _integrate(
        s, MARY_CITY, new_value, 9.0, 0.7, 1, "gate", gate=K.ConflictGate(4), gate_params=p
      )
      return _lookup(s, MARY_CITY)[0]

    check_grads(answer, (params, jnp.asarray(OSLO)), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    grads = jax.grad(lambda p: answer(p, OSLO)[2])(params)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


class DecayAndDeletionTest(parameterized.TestCase):
  def _three(self):
    s = K.init_state(4, 4, 3)
    s = _integrate(s, MARY_CITY, PARIS, 0.0, 1.0, 7)
    s = _integrate(s, JOHN_CITY, ROME, 2.0, 0.8, 8)
    return _integrate(s, np.array([0, 0, 1.0, 0], np.float32), OSLO, 4.0, 0.5, 7)

  def test_half_life(self):
    s = K.decay(self._three(), 4.0, half_life=2.0)
    np.testing.assert_allclose(np.asarray(s.confidence[:3]), [0.25, 0.4, 0.5], rtol=1e-6)
    again = K.decay(s, 4.0, half_life=2.0)  # the same now: no second decay
    chex.assert_trees_all_equal(again, s)
    later = K.decay(s, 6.0, half_life=2.0, min_confidence=0.2)
    # 0.125 (dropped), 0.2, 0.25
    np.testing.assert_allclose(np.asarray(later.confidence[:3]), [0.0, 0.2, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(later.kv.valid[:3]), [False, True, True])
    np.testing.assert_array_equal(np.asarray(later.kv.keys[0]), np.zeros(4))

  def test_max_age(self):
    s = K.decay(self._three(), 5.0, max_age=3.0)  # ages 5, 3, 1
    np.testing.assert_array_equal(np.asarray(s.kv.valid[:3]), [False, True, True])

  def test_min_hits(self):
    s = self._three()
    s, _ = K.read_and_touch(s, MARY_CITY)
    s = K.decay(s, 4.0, min_hits=1, min_age=1.0)  # John (age 2, never read) goes
    np.testing.assert_array_equal(np.asarray(s.kv.valid[:3]), [True, False, True])

  def test_delete_owner_zeroes_every_array(self):
    s = _integrate(self._three(), MARY_CITY, ROME, 5.0, 1.0, 7, policy="versions")
    gone = K.delete_owner(s, 7)
    assert not bool(jnp.any(gone.owner == 7))
    dead = ~np.asarray(gone.kv.valid)
    np.testing.assert_array_equal(np.flatnonzero(dead), [0, 2, 3])
    for field in (gone.kv.keys, gone.kv.values):
      assert not np.any(np.asarray(field)[dead])
    for field in (gone.timestamp, gone.confidence, gone.version, gone.kv.hits, gone.active):
      assert not np.any(np.asarray(field)[dead])
    for field in (gone.owner, gone.kv.written, gone.kv.last_read):
      assert np.all(np.asarray(field)[dead] == -1)
    np.testing.assert_array_equal(np.asarray(gone.kv.values[1]), ROME)  # John's fact stays
    assert not bool(_lookup(gone, MARY_CITY)[2])

  def test_delete_key_removes_every_version(self):
    s = _integrate(self._three(), MARY_CITY, ROME, 5.0, 1.0, 7, policy="versions")
    gone = K.delete_key(s, MARY_CITY)
    assert int(K.num_facts(gone, include_inactive=True)) == 2
    assert not bool(_lookup(gone, MARY_CITY)[2])
    assert not np.any(np.asarray(gone.kv.keys)[[0, 3]])


class ErrorTest(parameterized.TestCase):
  def test_errors_name_the_problem(self):
    s = K.init_state(4, 4, 3)
    with pytest.raises(ValueError, match=r"integrate: key has shape \(3,\).*keys are 4 wide"):
      K.integrate(s, np.ones(3, np.float32), PARIS, 1.0)
    with pytest.raises(ValueError, match=r"integrate: value has shape \(4,\).*values are 3 wide"):
      K.integrate(s, MARY_CITY, np.ones(4, np.float32), 1.0)
    with pytest.raises(ValueError, match="policy='oldest' is not one of"):
      K.integrate(s, MARY_CITY, PARIS, 1.0, policy="oldest")
    with pytest.raises(ValueError, match="needs gate_params"):
      K.integrate(s, MARY_CITY, PARIS, 1.0, policy="gate")
    with pytest.raises(ValueError, match=r"time must have shape \(\)"):
      K.integrate(s, MARY_CITY, PARIS, np.ones(2))
    with pytest.raises(TypeError, match="must have a floating dtype"):
      K.integrate(s, np.ones(4, np.int32), PARIS, 1.0)
    with pytest.raises(ValueError, match=r"times must have shape \(2,\)"):
      K.integrate_batch(s, np.ones((2, 4), np.float32), np.ones((2, 3), np.float32), np.ones(3))
    with pytest.raises(ValueError, match="half_life=0"):
      K.decay(s, 1.0, half_life=0)
