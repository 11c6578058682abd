"""Tests for memjax.memory.attention (soft attention ring memory)."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import attention
from tests import _numpy_refs as refs


class _NumpyRing:
  """Loop reference: a Python list of (key, value) pairs, oldest overwritten first."""

  def __init__(self, n, key_size, value_size):
    self.n = n
    self.keys = np.zeros((n, key_size))
    self.values = np.zeros((n, value_size))
    self.valid = np.zeros(n, bool)
    self.count = 0

  def write(self, key, value):
    slot = self.count - self.n * (self.count // self.n)
    self.keys[slot], self.values[slot], self.valid[slot] = key, value, True
    self.count += 1

  def read(self, query):
    return refs.scaled_dot_read(self.keys, self.values, self.valid, query)


def test_known_answer_dot():
  state = attention.init_state(2, 2, 1)
  out, w = attention.read(state, jnp.array([1.0, 0.0]), "dot")
  np.testing.assert_array_equal(out, [0.0])  # empty memory reads zeros
  np.testing.assert_array_equal(w, [0.0, 0.0])
  state = attention.write(state, jnp.array([1.0, 0.0]), jnp.array([1.0]))
  state = attention.write(state, jnp.array([0.0, 1.0]), jnp.array([2.0]))
  # scores [ln 3, 0] -> weights [3/4, 1/4] -> 0.75 * 1 + 0.25 * 2
  out, w = attention.read(state, jnp.array([math.log(3.0), 0.0]), "dot")
  np.testing.assert_allclose(w, [0.75, 0.25], rtol=1e-6)
  np.testing.assert_allclose(out, [1.25], rtol=1e-6)
  # A third write overwrites slot 0 (the oldest): scores [0, 0] -> mean of 5 and 2.
  state = attention.write(state, jnp.array([0.0, 0.0]), jnp.array([5.0]))
  out, w = attention.read(state, jnp.array([math.log(3.0), 0.0]), "dot")
  np.testing.assert_allclose(out, [3.5], rtol=1e-6)
  np.testing.assert_array_equal(state.written, [2, 1])
  assert int(state.position) == 3


def test_single_write_masks_empty_slots():
  state = attention.init_state(3, 2, 2)
  state = attention.write(state, jnp.array([-5.0, 1.0]), jnp.array([7.0, 8.0]))
  out, w = attention.read(state, jnp.array([1.0, 0.0]))
  np.testing.assert_array_equal(w, [1.0, 0.0, 0.0])  # zero keys of empty slots ignored
  np.testing.assert_array_equal(out, [7.0, 8.0])
  np.testing.assert_array_equal(state.valid, [True, False, False])


def test_matches_numpy_loop():
  rng = np.random.default_rng(0)
  n, k, v, steps = 4, 3, 2, 11
  ref = _NumpyRing(n, k, v)
  state = attention.init_state(n, k, v)
  for _ in range(steps):
    key, value, query = rng.normal(size=k), rng.normal(size=v), rng.normal(size=k)
    want_out, want_w = ref.read(query)
    got_out, got_w = attention.read(state, jnp.asarray(query, jnp.float32))
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    ref.write(key, value)
    state = attention.write(state, jnp.asarray(key, jnp.float32), jnp.asarray(value, jnp.float32))
  np.testing.assert_allclose(state.keys, ref.keys, rtol=1e-6)
  np.testing.assert_array_equal(state.valid, ref.valid)


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_write_read_jit_equals_eager(self):
    def run(keys, values, query):
      state = attention.init_state(3, 2, 2)
      for i in range(keys.shape[0]):
        state = attention.write(state, keys[i], values[i])
      return attention.read(state, query)

    keys = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    values = jnp.arange(8.0).reshape(4, 2)
    out, w = self.variant(run)(keys, values, jnp.array([0.3, -0.2]))
    # 4 writes into 3 slots: slot 0 holds write 3, slots 1 and 2 writes 1 and 2.
    ref_out, ref_w = refs.scaled_dot_read(
      np.asarray(keys)[[3, 1, 2]],
      np.asarray(values)[[3, 1, 2]],
      np.ones(3, bool),
      np.array([0.3, -0.2]),
    )
    np.testing.assert_allclose(out, ref_out, rtol=1e-5)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5)


def test_grads_through_soft_read():
  rng = np.random.default_rng(2)
  keys = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  values = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  query = jnp.asarray(rng.normal(size=(4,)), jnp.float32)

  def f(keys, values, query):
    state = attention.init_state(4, 4, 2)  # one slot stays empty (masked)
    for i in range(3):
      state = attention.write(state, keys[i], values[i])
    return attention.read(state, query)[0]

  check_grads(
    jax.jit(f), (keys, values, query), order=1, modes=["rev", "fwd"], atol=1e-2, rtol=1e-2
  )
  g = jax.grad(lambda q: f(keys, values, q).sum())(query)
  assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_reset_all_and_by_mask():
  state = attention.init_state(3, 2, 1)
  for i in range(4):
    state = attention.write(state, jnp.full((2,), float(i + 1)), jnp.array([float(i)]))
  part = attention.reset(state, jnp.array([False, True, False]))
  np.testing.assert_array_equal(part.valid, [True, False, True])
  np.testing.assert_array_equal(part.written, [3, -1, 2])
  np.testing.assert_array_equal(part.keys[1], [0.0, 0.0])
  assert int(part.position) == 4
  out, w = attention.read(part, jnp.array([1.0, 1.0]))
  assert float(w[1]) == 0.0
  full = attention.reset(state)
  chex.assert_trees_all_equal(full, attention.init_state(3, 2, 1))


_S = attention.init_state(3, 4, 2)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: attention.write(_S, jnp.ones(3), jnp.ones(2)), ValueError, "key has feature size 3"),
    (lambda: attention.write(_S, jnp.ones(4), jnp.ones(5)), ValueError, "value has feature size 5"),
    (
      lambda: attention.write(_S, jnp.ones((2, 4)), jnp.ones(2)),
      ValueError,
      "key must have rank 1",
    ),
    (
      lambda: attention.write(_S, jnp.ones(4, jnp.int32), jnp.ones(2)),
      TypeError,
      "key must have a floating",
    ),
    (
      lambda: attention.read(_S, jnp.ones(4, jnp.int32)),
      TypeError,
      "query must have a floating",
    ),
    (lambda: attention.read(_S, jnp.ones(5)), ValueError, "query has feature size 5"),
    (lambda: attention.reset(_S, jnp.ones(2, bool)), ValueError, r"\bslots\b"),
    (lambda: attention.init_state(0, 4, 2), ValueError, r"\bnum_slots\b"),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()


def _cell_numpy_loop(params, x, input_size, n):
  """Numpy reference of AttentionMemoryCell over x [B, T, F] (no y_t: input_size=None)."""
  p = jax.tree.map(np.asarray, params)
  dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]
  out = np.zeros(x.shape[:2] + (p["value"]["kernel"].shape[1],))
  for b in range(x.shape[0]):
    ref = _NumpyRing(n, p["key"]["kernel"].shape[1], p["value"]["kernel"].shape[1])
    for t in range(x.shape[1]):
      xt, yt = x[b, t, :input_size], x[b, t, input_size:]
      if input_size is None:  # the value is projected from x_t itself
        yt = xt
      out[b, t] = ref.read(dense("query", xt))[0]
      ref.write(dense("key", xt), dense("value", yt))
  return out


@pytest.mark.parametrize("input_size", [2, None])
def test_cell_matches_numpy_loop_and_reads_before_write(input_size):
  n, features = 3, 5
  cell = attention.AttentionMemoryCell(num_slots=n, key_size=4, value_size=3, input_size=input_size)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, features)), jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  # The value projection reads y_t (features - input_size of them), or all of x_t.
  assert params["cell"]["value"]["kernel"].shape == (features - (input_size or 0), 3)
  carry, y = rnn.apply({"params": params}, x)
  np.testing.assert_allclose(
    y, _cell_numpy_loop(params["cell"], np.asarray(x), input_size, n), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_array_equal(y[:, 0], 0.0)  # read before the first write: empty memory
  np.testing.assert_array_equal(carry.position, [7, 7])
  assert bool(carry.valid.all())
