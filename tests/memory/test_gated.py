"""Tests for memjax.memory.gated (gated short-term memory)."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import gated
from tests import _numpy_refs as refs


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _cell_numpy_loop(params, x, n, project_query=True, residual=False, final=None):
  """Numpy reference of GatedMemoryCell over x [B, T, H].

  ``final``: an optional dict that receives the last ``slots [B, N, H]`` and ``context``.
  """
  p = jax.tree.map(np.asarray, params)
  b_size, t_size, h = x.shape
  y = np.zeros(x.shape)
  if final is not None:
    final.update(slots=np.zeros((b_size, n, h)), context=np.zeros((b_size, h)))
  for b in range(b_size):
    slots, valid, context, count = np.zeros((n, h)), np.zeros(n, bool), np.zeros(h), 0
    for t in range(t_size):
      ht = x[b, t]
      q = ht @ p["query"]["kernel"] if project_query else ht
      g = _sigmoid(np.concatenate([ht, context]) @ p["gate"]["kernel"] + p["gate"]["bias"])
      r, _ = refs.scaled_dot_read(slots, slots, valid, q)
      context = g * r + (1 - g) * context
      slots[count % n], valid[count % n] = ht, True
      count += 1
      y[b, t] = ht + context if residual else context
    if final is not None:
      final["slots"][b], final["context"][b] = slots, context
  return y


def _zero_gate_params(h, project_query=False):
  params = {"gate": {"kernel": jnp.zeros((2 * h, h)), "bias": jnp.zeros(h)}}
  if project_query:
    params["query"] = {"kernel": jnp.eye(h)}
  return {"params": params}


def test_known_answer_gate_half_at_zero_weights():
  h = 2
  cell = gated.GatedMemoryCell(num_slots=2, project_query=False)
  x = jnp.array([[1.0, 0.0], [0.0, 1.0], [math.sqrt(2) * math.log(3.0), 0.0], [0.0, 0.0]])
  carry, y = nn.RNN(cell, return_carry=True).apply(
    {"params": {"cell": _zero_gate_params(h)["params"]}}, x
  )
  # g = sigmoid(0) = 1/2 everywhere.
  # t0: empty memory -> read 0 -> c = 0.
  # t1: one slot [1, 0] -> read [1, 0] -> c = [0.5, 0].
  # t2: scores (scaled dot) [ln 3, 0] -> weights [3/4, 1/4] -> read [0.75, 0.25]
  #     -> c = 0.5 * [0.75, 0.25] + 0.5 * [0.5, 0] = [0.625, 0.125].
  # t3: slots now [x2, x1] (x2 overwrote slot 0); query 0 -> weights [1/2, 1/2]
  #     -> read [(sqrt2 ln3) / 2, 0.5] -> c = 0.5 * read + 0.5 * [0.625, 0.125].
  r3 = np.array([math.sqrt(2) * math.log(3.0) / 2, 0.5])
  want = [[0.0, 0.0], [0.5, 0.0], [0.625, 0.125], list(0.5 * r3 + 0.5 * np.array([0.625, 0.125]))]
  np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(carry.slots, [x[2], x[3]])  # x3 overwrote slot 1
  np.testing.assert_allclose(carry.context, want[-1], rtol=1e-6)
  assert int(carry.count) == 4


def test_fuse_and_pure_ops_known_answer():
  np.testing.assert_allclose(gated.fuse(jnp.array([2.0]), jnp.array([4.0]), jnp.array(0.5)), [3.0])
  np.testing.assert_allclose(
    gated.fuse(jnp.array([2.0, 2.0]), jnp.array([4.0, 4.0]), jnp.array([1.0, 0.0])), [4.0, 2.0]
  )
  state = gated.init_state(2, 2)
  np.testing.assert_array_equal(gated.filled(state), [False, False])
  out, w = gated.read(state, jnp.array([1.0, 0.0]))
  np.testing.assert_array_equal(out, [0.0, 0.0])
  np.testing.assert_array_equal(w, [0.0, 0.0])
  state = gated.write(state, jnp.array([1.0, 2.0]))
  out, w = gated.read(state, jnp.array([5.0, -3.0]))
  np.testing.assert_array_equal(w, [1.0, 0.0])  # the empty (zero) slot gets no weight
  np.testing.assert_array_equal(out, [1.0, 2.0])
  new, context, _ = gated.step(state, jnp.array([0.0, 4.0]), jnp.array(0.25))
  np.testing.assert_allclose(context, [0.25, 0.5])  # 0.25 * [1, 2] + 0.75 * 0
  np.testing.assert_allclose(new.context, context)
  np.testing.assert_array_equal(new.slots, [[1.0, 2.0], [0.0, 4.0]])
  chex.assert_trees_all_equal(gated.reset(new), gated.init_state(2, 2))


def test_pure_ops_match_numpy_ring():
  rng = np.random.default_rng(0)
  n, h = 3, 4
  state = gated.init_state(n, h)
  slots, valid, count = np.zeros((n, h)), np.zeros(n, bool), 0
  for _ in range(8):
    q, v = rng.normal(size=h), rng.normal(size=h)
    out, w = gated.read(state, jnp.asarray(q, jnp.float32))
    want_out, want_w = refs.scaled_dot_read(slots, slots, valid, q)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    state = gated.write(state, jnp.asarray(v, jnp.float32))
    slots[count % n], valid[count % n] = v, True
    count += 1
  np.testing.assert_allclose(state.slots, slots, rtol=1e-6)
  np.testing.assert_array_equal(gated.filled(state), valid)


@pytest.mark.parametrize("project_query,residual", [(True, False), (False, True)])
def test_cell_matches_numpy_loop(project_query, residual):
  n = 3
  cell = gated.GatedMemoryCell(num_slots=n, project_query=project_query, residual=residual)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 4)), jnp.float32)
  rnn = nn.RNN(cell)
  params = rnn.init(jax.random.key(0), x)["params"]
  y = rnn.apply({"params": params}, x)
  want = _cell_numpy_loop(params["cell"], np.asarray(x), n, project_query, residual)
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  "project_query, residual", [(True, False), (False, True)], ids=["default", "residual"]
)
def test_layer_matches_numpy_loop_and_continues_from_its_carry(project_query, residual):
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 4)), jnp.float32)
  layer = gated.GatedMemoryLayer(num_slots=3, project_query=project_query, residual=residual)
  params = layer.init(jax.random.key(0), x)
  params = jax.tree.map(lambda a: 2.0 * a, params)  # gates away from 1/2
  carry, y = layer.apply(params, x, return_carry=True)
  final = {}
  want = _cell_numpy_loop(
    params["params"]["rnn"]["cell"], np.asarray(x), 3, project_query, residual, final
  )
  assert y.shape == x.shape
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(carry.slots, final["slots"], rtol=1e-6)
  np.testing.assert_allclose(carry.context, final["context"], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(carry.count, [6, 6])
  # Continuing from the carry equals running the whole sequence at once.
  c1, y1 = layer.apply(params, x[:, :4], return_carry=True)
  y2 = layer.apply(params, x[:, 4:], initial_carry=c1)
  np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-6)


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_steps_jit_equals_eager(self):
    def run(hs, gate):
      state = gated.init_state(2, 3)
      contexts = []
      for t in range(hs.shape[0]):
        state, c, _ = gated.step(state, hs[t], gate)
        contexts.append(c)
      return jnp.stack(contexts), state

    hs = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3)), jnp.float32)
    contexts, state = self.variant(run)(hs, jnp.array([0.2, 0.5, 0.9]))
    slots, valid, c = np.zeros((2, 3)), np.zeros(2, bool), np.zeros(3)
    for t in range(4):
      r, _ = refs.scaled_dot_read(slots, slots, valid, np.asarray(hs[t]))
      c = np.array([0.2, 0.5, 0.9]) * r + np.array([0.8, 0.5, 0.1]) * c
      np.testing.assert_allclose(contexts[t], c, rtol=1e-5, atol=1e-6)
      slots[t % 2], valid[t % 2] = hs[t], True
    np.testing.assert_allclose(state.slots, slots)


def test_grads():
  rng = np.random.default_rng(5)
  hs = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  gate = jnp.asarray(rng.uniform(size=4), jnp.float32)

  def f(hs, gate):
    state = gated.init_state(2, 4)
    for t in range(3):
      state, c, _ = gated.step(state, hs[t], gate)
    return c

  check_grads(jax.jit(f), (hs, gate), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  layer = gated.GatedMemoryLayer(num_slots=2)
  params = layer.init(jax.random.key(0), hs[None])
  grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(p, hs[None]) ** 2)))(params)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.isfinite(g).all()) for g in leaves)
  assert all(float(jnp.abs(g).sum()) > 0 for g in leaves)


def test_long_sequence_context_is_bounded_by_the_stored_states():
  layer = gated.GatedMemoryLayer(num_slots=8)
  x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 2000, 4)) * 30, jnp.float32)
  carry, y = layer.apply(layer.init(jax.random.key(0), x), x, return_carry=True)
  assert bool(jnp.isfinite(y).all()) and bool(jnp.isfinite(carry.slots).all())
  # The context is a convex combination of stored states: bounded by their max.
  assert float(jnp.abs(y).max()) <= float(jnp.abs(x).max()) + 1e-3


_S = gated.init_state(3, 4)
_CELL = gated.GatedMemoryCell(num_slots=3)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: gated.read(_S, jnp.ones(5)), ValueError, "query has feature size 5"),
    (lambda: gated.read(_S, jnp.ones(4, jnp.int32)), TypeError, "query must have a floating"),
    (lambda: gated.write(_S, jnp.ones(3)), ValueError, "value has feature size 3"),
    (lambda: gated.write(_S, jnp.ones((2, 4))), ValueError, "value must have rank 1"),
    (lambda: gated.step(_S, jnp.ones(2), jnp.ones(4)), ValueError, r"\bhidden\b"),
    (lambda: gated.fuse(jnp.ones(4), jnp.ones(3), jnp.ones(4)), ValueError, r"\bread_value\b"),
    (lambda: gated.init_state(0, 4), ValueError, r"\bnum_slots\b"),
    (
      lambda: gated.read(jax.tree.map(lambda a: a[None], _S), jnp.ones(4)),
      ValueError,
      r"state\.slots",
    ),
    (
      lambda: gated.GatedMemoryLayer(num_slots=3).init(jax.random.key(0), jnp.ones(4)),
      ValueError,
      r"hidden must have rank >= 2",
    ),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
