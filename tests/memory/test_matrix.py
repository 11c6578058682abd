"""Tests for memjax.memory.matrix (external memory matrix)."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import matrix
from tests import _numpy_refs as refs


def _known_state():
  state = matrix.init_state(3, 2)
  state = matrix.write(state, jnp.array([1.0, 2.0]), 1, 0.5)  # row 1 += [0.5, 1]
  return matrix.write(state, jnp.array([2.0, 0.0]), jnp.array([0.5, 0.5, 0.0]))


def test_known_answer_writes_and_address_reads():
  state = _known_state()
  np.testing.assert_allclose(state.memory, [[1.0, 0.0], [1.5, 1.0], [0.0, 0.0]])
  assert int(state.position) == 2
  np.testing.assert_allclose(matrix.read_by_address(state, 1), [1.5, 1.0])
  np.testing.assert_allclose(
    matrix.read_by_address(state, jnp.array([0, 2])), [[1.0, 0.0], [0.0, 0.0]]
  )
  np.testing.assert_allclose(
    matrix.read_by_address(state, jnp.array([0.25, 0.75, 0.0])), [1.375, 0.75]
  )
  one_hot = jax.nn.one_hot(1, 3)
  np.testing.assert_allclose(
    matrix.read_by_address(state, one_hot), matrix.read_by_address(state, 1)
  )


def test_known_answer_content_read():
  state = matrix.MatrixState(jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), jnp.array(0))
  # dot scores [1, 0, 0] times ln 3 -> weights [3/5, 1/5, 1/5]
  read, w = matrix.read_by_content(state, jnp.array([1.0, 0.0]), "dot", math.log(3.0))
  np.testing.assert_allclose(w, [0.6, 0.2, 0.2], rtol=1e-6)
  np.testing.assert_allclose(read, [0.6, 0.2], rtol=1e-6)
  # Per-query sharpness [Q]: beta 0 gives uniform weights.
  reads, ws = matrix.read_by_content(state, jnp.ones((2, 2)), "dot", jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(ws[0], [1 / 3] * 3, rtol=1e-6)
  assert reads.shape == (2, 2) and ws.shape == (2, 3)


def test_matches_numpy_loop():
  rng = np.random.default_rng(0)
  n, d = 5, 3
  ref = np.full((n, d), 0.01)
  state = matrix.init_state(n, d, init_value=0.01)
  for t in range(12):
    vector, strength = rng.normal(size=d), rng.uniform(0.1, 2.0)
    if t % 2:
      address = int(rng.integers(n))
      ref[address] += strength * vector
    else:
      address = refs.softmax(rng.normal(size=n))
      ref += strength * address[:, None] * vector[None, :]
      address = jnp.asarray(address, jnp.float32)
    state = matrix.write(state, jnp.asarray(vector, jnp.float32), address, strength)
    query, beta = rng.normal(size=d), rng.uniform(0.5, 5.0)
    want_w = refs.softmax(beta * refs.cosine(query, ref))
    read, w = matrix.read_by_content(state, jnp.asarray(query, jnp.float32), "cosine", beta)
    np.testing.assert_allclose(w, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(read, want_w @ ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(state.memory, ref, rtol=1e-5, atol=1e-6)
  assert int(state.position) == 12


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_equals_eager(self):
    def run(vector, weights, strength):
      state = matrix.write(matrix.init_state(3, 2), vector, 2, strength)
      state = matrix.write(state, vector, weights, strength)
      return state.memory, matrix.read_by_address(state, weights)

    memory, read = self.variant(run)(jnp.array([1.0, -1.0]), jnp.array([0.5, 0.0, 0.5]), 2.0)
    np.testing.assert_allclose(memory, [[1.0, -1.0], [0.0, 0.0], [3.0, -3.0]])
    np.testing.assert_allclose(read, [2.0, -2.0])


def test_grads_through_soft_read_and_write():
  rng = np.random.default_rng(2)
  memory = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  vector = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
  weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(4,)), jnp.float32))
  query = jnp.asarray(rng.normal(size=(3,)), jnp.float32)

  def f(memory, vector, weights, strength, query):
    state = matrix.write(matrix.MatrixState(memory, jnp.array(0)), vector, weights, strength)
    read, w = matrix.read_by_content(state, query, "cosine", 3.0)
    return read + matrix.read_by_address(state, w)

  check_grads(
    jax.jit(f),
    (memory, vector, weights, jnp.array(0.7), query),
    order=1,
    modes=["rev", "fwd"],
    atol=1e-2,
    rtol=1e-2,
  )


def test_reset():
  state = _known_state()
  part = matrix.reset(state, jnp.array([False, True, False]), init_value=0.5)
  np.testing.assert_allclose(part.memory, [[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
  assert int(part.position) == 2
  chex.assert_trees_all_equal(matrix.reset(state), matrix.init_state(3, 2))


_S = matrix.init_state(3, 2)


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: matrix.write(_S, jnp.ones(3), 0), ValueError, "vector has feature size 3"),
    (lambda: matrix.write(_S, jnp.ones((2, 2)), 0), ValueError, "vector must have rank 1"),
    (lambda: matrix.write(_S, jnp.ones(2), jnp.ones(4)), ValueError, "address weights have 4"),
    (lambda: matrix.write(_S, jnp.ones(2), jnp.array([0, 1])), ValueError, "integer address"),
    (lambda: matrix.write(_S, jnp.ones(2), 0, jnp.ones(2)), ValueError, r"\bstrength\b"),
    (
      lambda: matrix.read_by_content(_S, jnp.ones(2, jnp.int32)),
      TypeError,
      "query must have a floating",
    ),
    (lambda: matrix.read_by_content(_S, jnp.ones(4)), ValueError, "query has feature size 4"),
    (
      lambda: matrix.read_by_address(_S, jnp.array([True, False, True])),
      TypeError,
      r"\baddress\b",
    ),
    (lambda: matrix.reset(_S, jnp.ones(4, bool)), ValueError, r"\brows\b"),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()


def _cell_numpy_loop(params, x, input_size, n, addressing, sharpness=1.0, encode=None, memory=None):
  """Numpy reference of MatrixMemoryCell (scaled-dot read) over [B, T, F].

  ``encode(p, x_t)`` is the encoder (default: the cell's Dense ``encoder``); ``memory``
  the initial [B, N, D] memory (default zeros).
  """
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  dense = lambda q, a: a @ q["kernel"] + q["bias"]
  if encode is None:
    encode = lambda p, a: dense(p["encoder"], a)
  d = p["query"]["kernel"].shape[1]
  out = np.zeros(x.shape[:2] + (d,))
  for b in range(x.shape[0]):
    mem = np.zeros((n, d)) if memory is None else np.float64(memory[b])
    for t in range(x.shape[1]):
      q = dense(p["query"], x[b, t, :input_size])
      w = refs.softmax(sharpness * mem @ q / math.sqrt(d))
      out[b, t] = w @ mem
      address = np.eye(n)[t % n] if addressing == "ring" else w
      mem = mem + p["strength"] * address[:, None] * encode(p, x[b, t])[None, :]
  return out


@pytest.mark.parametrize("addressing", ["ring", "content"])
def test_cell_matches_numpy_loop(addressing):
  n, input_size = 4, 3
  cell = matrix.MatrixMemoryCell(
    num_slots=n,
    slot_size=5,
    input_size=input_size,
    addressing=addressing,
    sharpness=2.0,
    strength_init=0.8,
  )
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, input_size + 2)), jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  assert float(params["cell"]["strength"]) == pytest.approx(0.8)
  carry, y = rnn.apply({"params": params}, x)
  want = _cell_numpy_loop(params["cell"], np.asarray(x), input_size, n, addressing, 2.0)
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(carry.position, [7, 7])


def test_cell_ring_rows_are_encodings():
  # With zero init and T <= N, row t is lambda * Encoder(x_t).
  cell = matrix.MatrixMemoryCell(num_slots=6, slot_size=3, strength_init=2.0)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(5, 4)), jnp.float32)  # [T, F], B = ()
  rnn = nn.RNN(cell, return_carry=True, time_major=True)
  variables = rnn.init(jax.random.key(0), x)
  carry, _ = rnn.apply(variables, x)
  enc = variables["params"]["cell"]["encoder"]
  want = 2.0 * (x @ enc["kernel"] + enc["bias"][None])
  np.testing.assert_allclose(carry.memory[:5], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(carry.memory[5], 0.0)


@pytest.mark.parametrize("addressing", ["ring", "content"])
def test_cell_user_encoder_and_noisy_memory_match_numpy_loop(addressing):
  encoder = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
  cell = matrix.MatrixMemoryCell(
    num_slots=4, slot_size=3, input_size=2, encoder=encoder, addressing=addressing, init_scale=0.1
  )
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 4)), jnp.float32)
  carry0 = cell.initialize_carry(jax.random.key(1), x[:, 0].shape)
  assert float(jnp.std(carry0.memory)) > 0.01  # noise breaks the symmetry of the rows
  np.testing.assert_array_equal(carry0.memory[0], carry0.memory[1])  # same across the batch
  rnn = nn.RNN(cell)
  variables = rnn.init(jax.random.key(0), x, initial_carry=carry0)
  params = variables["params"]["cell"]
  assert set(params) == {"query", "encoder", "strength"}
  y = rnn.apply(variables, x, initial_carry=carry0)

  def encode(p, a):  # the Sequential above, from its parameters
    e = p["encoder"]
    h = np.tanh(a @ e["layers_0"]["kernel"] + e["layers_0"]["bias"])
    return h @ e["layers_2"]["kernel"] + e["layers_2"]["bias"]

  want = _cell_numpy_loop(
    params, np.asarray(x), 2, 4, addressing, encode=encode, memory=np.asarray(carry0.memory)
  )
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_read_is_the_content_read():
  """matrix.read (the family's read) is read_by_content."""
  state = matrix.write(matrix.init_state(3, 2), jnp.array([1.0, -2.0]), 1)
  query = jnp.array([0.5, -1.0])
  for args in ((), ("dot", 3.0)):
    got, got_w = matrix.read(state, query, *args)
    want, want_w = matrix.read_by_content(state, query, *args)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_w, want_w)
  assert int(jnp.argmax(matrix.read(state, query)[1])) == 1
