"""Tests for memjax.memory.holographic (HRR associative memory)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx
from jax.test_util import check_grads

from memjax.memory import holographic
from memjax.ops import hrr


def _np_conv(a, b):
  d = len(a)
  return np.array([sum(a[k] * b[(j - k) % d] for k in range(d)) for j in range(d)])


def _np_corr(trace, key):
  d = len(trace)
  return np.array([sum(key[k] * trace[(j + k) % d] for k in range(d)) for j in range(d)])


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
    trace = trace + w * _np_conv(k, v)
    f = lambda x: jnp.asarray(x, jnp.float32)
    state = holographic.write(state, f(k), f(v), f(w))
    np.testing.assert_allclose(state.trace, trace, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
      holographic.read(state, f(q)), _np_corr(trace, q), rtol=1e-4, atol=1e-4
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


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_batch_shapes_via_vmap(batch):
  d = 8
  rng = np.random.default_rng(1)
  keys = jnp.asarray(rng.normal(size=batch + (d,)), jnp.float32)
  values = jnp.asarray(rng.normal(size=batch + (d,)), jnp.float32)
  state = jax.tree.map(lambda a: jnp.broadcast_to(a, batch + a.shape), holographic.init_state(d))
  write, read = holographic.write, holographic.read
  for _ in batch:
    write, read = jax.vmap(write), jax.vmap(read)
  state = write(state, keys, values)
  out = read(state, keys)
  assert state.trace.shape == batch + (d,) and state.count.shape == batch
  assert out.shape == batch + (d,)
  flat_k, flat_v = keys.reshape(-1, d), values.reshape(-1, d)
  for i in range(flat_k.shape[0]):
    s1 = holographic.write(holographic.init_state(d), flat_k[i], flat_v[i])
    np.testing.assert_allclose(out.reshape(-1, d)[i], holographic.read(s1, flat_k[i]), atol=1e-6)


def test_eval_shape_of_write_is_state():
  for dtype in (jnp.float32, jnp.bfloat16):
    state = holographic.init_state(16, dtype)
    out = jax.eval_shape(holographic.write, state, jnp.ones(16), jnp.ones(16))
    assert jax.tree.structure(out) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state
    )


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
    want = _np_corr(sum(_np_conv(keys[i], values[i]) for i in range(3)), q)
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
      trace = trace + g * _np_conv(k, v)
      out[b, t] = _np_corr(trace, q)
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
  np.testing.assert_allclose(carry.trace[0], hrr.superpose(keys, values), atol=1e-5)
  np.testing.assert_allclose(y[0, 4], hrr.unbind(carry.trace[0], keys[2]), atol=1e-5)
  assert int(hrr.cleanup(y[0, 4], values).indices) == 2


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_cell_batch_shapes(batch):
  cell = holographic.HolographicCell(dim=8)
  x = jnp.asarray(np.random.default_rng(7).normal(size=batch + (5,)), jnp.float32)
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  assert carry.trace.shape == batch + (8,) and carry.count.shape == batch
  assert cell.num_feature_axes == 1
  (new, y), params = cell.init_with_output(jax.random.key(1), carry, x)
  assert y.shape == batch + (8,) and new.trace.shape == batch + (8,)
  flat = x.reshape(-1, 5)
  apply1 = jax.jit(cell.apply)
  for i in range(flat.shape[0]):
    _, y1 = apply1(params, cell.initialize_carry(None, (5,)), flat[i])
    np.testing.assert_allclose(y.reshape(-1, 8)[i], y1, rtol=1e-5, atol=1e-6)


def test_nnx_bridge_matches_linen():
  x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 4, 3)), jnp.float32)
  model = nnx.bridge.ToNNX(nn.RNN(holographic.HolographicCell(dim=8)), rngs=nnx.Rngs(0))
  nnx.bridge.lazy_init(model, x)
  y = model(x)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  want = nn.RNN(holographic.HolographicCell(dim=8)).apply({"params": params}, x)
  assert y.shape == (2, 4, 8)
  np.testing.assert_allclose(y, want, rtol=1e-6)


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


def test_no_retrace_across_steps():
  cell = holographic.HolographicCell(dim=8)
  x = jnp.ones((2, 4))
  carry = cell.initialize_carry(None, x.shape)
  params = cell.init(jax.random.key(0), carry, x)

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def holographic_step(carry, x):
    return cell.apply(params, carry, x)

  for t in range(5):
    carry, _ = holographic_step(carry, x * t)
  np.testing.assert_array_equal(carry.count, [5, 5])


def test_long_sequence_stays_finite():
  cell = holographic.HolographicCell(dim=32)
  x = jnp.asarray(np.random.default_rng(10).normal(size=(2, 2000, 4)) * 10, jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  carry, y = rnn.apply(rnn.init(jax.random.key(0), x), x)
  assert bool(jnp.isfinite(y).all()) and bool(jnp.isfinite(carry.trace).all())
  np.testing.assert_array_equal(carry.count, [2000, 2000])


def test_bad_inputs_name_the_argument():
  state = holographic.init_state(4)
  with pytest.raises(ValueError, match="key"):
    holographic.write(state, jnp.ones(3), jnp.ones(4))
  with pytest.raises(ValueError, match="value"):
    holographic.write(state, jnp.ones(4), jnp.ones(5))
  with pytest.raises(TypeError, match="value"):
    holographic.write(state, jnp.ones(4), jnp.ones(4, jnp.int32))
  with pytest.raises(ValueError, match="weight"):
    holographic.write(state, jnp.ones(4), jnp.ones(4), jnp.ones(2))
  with pytest.raises(ValueError, match="state.trace"):
    holographic.read(holographic.HRRState(jnp.ones((2, 4)), jnp.zeros(2, jnp.int32)), jnp.ones(4))
  with pytest.raises(ValueError, match="dim"):
    holographic.init_state(0)
  cell = holographic.HolographicCell(dim=4, learned=False)
  with pytest.raises(ValueError, match="x must have 12 features"):
    cell.apply({}, cell.initialize_carry(None, (2, 10)), jnp.ones((2, 10)))
  with pytest.raises(ValueError, match="carry.trace"):
    cell.apply({}, cell.initialize_carry(None, (3, 12)), jnp.ones((2, 12)))
