"""Tests for memjax.memory.holographic (HRR associative memory)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import holographic
from memjax.ops import hrr
from tests import _numpy_refs as refs


def _np_normalize(x, eps=1e-6):
  return x / np.sqrt(np.sum(x * x, -1, keepdims=True) + eps)


def test_known_answer_tiny():
  state = holographic.init_state(3)
  # key = identity of binding: the trace is the value itself.
  state = holographic.write(state, jnp.array([1.0, 0.0, 0.0]), jnp.array([1.0, 2.0, 3.0]))
  np.testing.assert_allclose(state.trace, [1.0, 2.0, 3.0], atol=1e-6)
  # key = one-hot at 1: a cyclic shift, whose involution is the exact inverse.
  shift = jnp.array([0.0, 1.0, 0.0])
  s2 = holographic.write(holographic.init_state(3), shift, jnp.array([1.0, 2.0, 3.0]), 2.0)
  np.testing.assert_allclose(s2.trace, [6.0, 2.0, 4.0], atol=1e-6)
  np.testing.assert_allclose(holographic.read(s2, shift), [2.0, 4.0, 6.0], atol=1e-6)
  # Superposing both: reading with the shift key gives 2 * value + shift^-1 (value).
  both = holographic.write(state, shift, jnp.array([1.0, 2.0, 3.0]), 2.0)
  assert int(both.count) == 2
  np.testing.assert_allclose(holographic.read(both, shift), [2 + 2, 4 + 3, 6 + 1], atol=1e-5)


def test_zero_weight_write_changes_nothing():
  state = holographic.init_state(4)
  out = holographic.write(state, jnp.ones(4), jnp.ones(4), 0.0)
  chex.assert_trees_all_equal(out, state)


def test_matches_numpy_loop():
  rng = np.random.default_rng(0)
  d, steps = 9, 6
  trace = np.zeros(d)
  state = holographic.init_state(d)
  for _ in range(steps):
    k, v, q = rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)
    w = rng.uniform()
    trace = trace + w * refs.circular_convolution(k, v)
    f = lambda x: jnp.asarray(x, jnp.float32)
    state = holographic.write(state, f(k), f(v), f(w))
    np.testing.assert_allclose(state.trace, trace, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
      holographic.read(state, f(q)), refs.circular_correlation(trace, q), rtol=1e-4, atol=1e-4
    )
  assert int(state.count) == steps


def test_read_cleanup_recovers_all_pairs():
  d, n = 512, 12
  keys = hrr.random_vectors(jax.random.key(0), n, d)
  values = hrr.random_vectors(jax.random.key(1), n, d)

  @jax.jit
  def fill(keys, values):
    state = holographic.init_state(d)
    for i in range(n):
      state = holographic.write(state, keys[i], values[i])
    return state

  state = fill(keys, values)
  assert int(state.count) == n
  r = jax.vmap(holographic.read_cleanup, in_axes=(None, 0, None))(state, keys, values)
  np.testing.assert_array_equal(r.indices, np.arange(n))
  np.testing.assert_array_equal(r.values, values)
  reset = holographic.reset(state)
  chex.assert_trees_all_equal(reset, holographic.init_state(d))


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_write_read_jit_equals_eager(self):
    def run(keys, values, query):
      state = holographic.init_state(keys.shape[-1])
      for i in range(keys.shape[0]):
        state = holographic.write(state, keys[i], values[i])
      return holographic.read(state, query)

    rng = np.random.default_rng(2)
    keys, values, q = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=5)
    out = self.variant(run)(*(jnp.asarray(x, jnp.float32) for x in (keys, values, q)))
    want = refs.circular_correlation(
      sum(refs.circular_convolution(keys[i], values[i]) for i in range(3)), q
    )
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_grads_through_write_and_read():
  k, v, q = hrr.random_vectors(jax.random.key(3), 3, 8)

  def f(k, v, q):
    state = holographic.write(holographic.init_state(8), k, v, 0.7)
    return holographic.read(state, q)

  check_grads(f, (k, v, q), order=1, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


def _cell_numpy_loop(params, x, dim):
  p = jax.tree.map(np.asarray, params)
  out = np.zeros(x.shape[:2] + (dim,))
  traces = np.zeros((x.shape[0], dim))
  for b in range(x.shape[0]):
    trace = np.zeros(dim)
    for t in range(x.shape[1]):
      xt = x[b, t]
      k = _np_normalize(xt @ p["key"]["kernel"])
      v = xt @ p["value"]["kernel"]
      q = _np_normalize(xt @ p["query"]["kernel"])
      g = 1 / (1 + np.exp(-(xt @ p["gate"]["kernel"] + p["gate"]["bias"])[0]))
      trace = trace + g * refs.circular_convolution(k, v)
      out[b, t] = refs.circular_correlation(trace, q)
    traces[b] = trace
  return out, traces


def test_learned_cell_matches_numpy_loop():
  dim = 6
  cell = holographic.HolographicCell(dim=dim)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 5, 3)), jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  params = jax.tree.map(lambda a: a + 0.3, params)  # nonzero gate bias too
  carry, y = rnn.apply({"params": params}, x)
  want_y, want_trace = _cell_numpy_loop(params["cell"], np.asarray(x), dim)
  np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(carry.trace, want_trace, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(carry.count, [5, 5])


def test_unlearned_cell_splits_input_and_recalls():
  d = 256
  cell = holographic.HolographicCell(dim=d, learned=False)
  keys = hrr.random_vectors(jax.random.key(5), 4, d)
  values = hrr.random_vectors(jax.random.key(6), 4, d)
  keys = keys / jnp.linalg.norm(keys, axis=-1, keepdims=True)
  # Steps 0-3 store four pairs (query = own key); step 4 has zero key and value (adds
  # nothing to the trace) and queries with key 2.
  x = jnp.concatenate([keys, values, keys], -1)
  x = jnp.concatenate([x, jnp.concatenate([jnp.zeros(d), jnp.zeros(d), keys[2]])[None]], 0)
  carry, y = nn.RNN(cell, return_carry=True).apply({}, x[None])
  assert y.shape == (1, 5, d) and carry.trace.shape == (1, d)
  # Gate 1: the trace after step t is sum_{i <= t} k_i (*) v_i, and y_t reads it with q_t.
  k, v = _np_normalize(np.asarray(keys, np.float64)), np.asarray(values, np.float64)
  traces = np.cumsum(refs.circular_convolution(k, v), axis=0)  # [4, D]
  traces = np.concatenate([traces, traces[-1:]])  # step 4 adds k = v = 0
  queries = np.concatenate([k, k[2:3]])
  np.testing.assert_allclose(carry.trace[0], traces[-1], atol=1e-5)
  np.testing.assert_allclose(y[0], refs.circular_correlation(traces, queries), atol=1e-5)
  assert int(hrr.cleanup(y[0, 4], values).indices) == 2


def test_cell_grads_wrt_params_are_finite():
  cell = holographic.HolographicCell(dim=8)
  x = jnp.asarray(np.random.default_rng(9).normal(size=(2, 4)), jnp.float32)
  carry = cell.initialize_carry(None, x.shape)
  params = cell.init(jax.random.key(0), carry, x)
  carry = cell.apply(params, carry, -x)[0]  # a non-empty memory

  @jax.jit
  def loss(p):
    return jnp.sum(cell.apply(p, carry, x)[1] ** 2)

  check_grads(loss, (params,), order=1, modes=["rev"], atol=5e-2, rtol=5e-2)
  grads = jax.grad(loss)(params)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["params"]["gate"]["kernel"]).sum()) > 0


_S = holographic.init_state(4)
_FIXED = holographic.HolographicCell(dim=4, learned=False)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: holographic.write(_S, jnp.ones(3), jnp.ones(4)), ValueError, r"\bkey\b.* 3"),
    (lambda: holographic.write(_S, jnp.ones(4), jnp.ones(5)), ValueError, r"\bvalue\b.* 5"),
    (
      lambda: holographic.write(_S, jnp.ones(4), jnp.ones(4, jnp.int32)),
      TypeError,
      "value must have a floating",
    ),
    (
      lambda: holographic.write(_S, jnp.ones(4), jnp.ones(4), jnp.ones(2)),
      ValueError,
      r"\bweight\b",
    ),
    (
      lambda: holographic.read(
        holographic.HRRState(jnp.ones((2, 4)), jnp.zeros(2, jnp.int32)), jnp.ones(4)
      ),
      ValueError,
      r"state\.trace",
    ),
    (lambda: holographic.init_state(0), ValueError, r"\bdim\b"),
    (
      lambda: _FIXED.apply({}, _FIXED.initialize_carry(None, (2, 10)), jnp.ones((2, 10))),
      ValueError,
      r"x must have 12 features \(\[key ; value ; query\], 3 \* dim\)",
    ),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
