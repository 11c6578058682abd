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


def _np_softmax(s):
  e = np.exp(s - s.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _np_cosine(q, m, eps=1e-6):
  return (m / (np.linalg.norm(m, axis=-1, keepdims=True) + eps)) @ (q / (np.linalg.norm(q) + eps))


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
      address = _np_softmax(rng.normal(size=n))
      ref += strength * address[:, None] * vector[None, :]
      address = jnp.asarray(address, jnp.float32)
    state = matrix.write(state, jnp.asarray(vector, jnp.float32), address, strength)
    query, beta = rng.normal(size=d), rng.uniform(0.5, 5.0)
    want_w = _np_softmax(beta * _np_cosine(query, ref))
    read, w = matrix.read_by_content(state, jnp.asarray(query, jnp.float32), "cosine", beta)
    np.testing.assert_allclose(w, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(read, want_w @ ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(state.memory, ref, rtol=1e-5, atol=1e-6)
  assert int(state.position) == 12


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_batch_shapes_via_vmap(batch):
  rng = np.random.default_rng(1)
  vectors = jnp.asarray(rng.normal(size=batch + (2,)), jnp.float32)
  addresses = jnp.asarray(rng.integers(0, 4, size=batch), jnp.int32)
  state = jax.tree.map(lambda a: jnp.broadcast_to(a, batch + a.shape), matrix.init_state(4, 2))
  write, read = matrix.write, matrix.read_by_content
  for _ in batch:
    write, read = jax.vmap(write), jax.vmap(read)
  state = write(state, vectors, addresses)
  out, w = read(state, vectors)
  assert state.memory.shape == batch + (4, 2) and out.shape == batch + (2,)
  assert w.shape == batch + (4,)
  for i in range(int(np.prod(batch, dtype=int))):
    s1 = matrix.write(matrix.init_state(4, 2), vectors.reshape(-1, 2)[i], addresses.reshape(-1)[i])
    np.testing.assert_allclose(state.memory.reshape(-1, 4, 2)[i], s1.memory)
    np.testing.assert_allclose(
      out.reshape(-1, 2)[i], matrix.read_by_content(s1, vectors.reshape(-1, 2)[i])[0], rtol=1e-6
    )


def test_eval_shape_of_write_is_state():
  state = matrix.init_state(4, 3, jnp.bfloat16)
  for address in (jnp.array(2), jnp.ones(4) / 4):
    out = jax.eval_shape(matrix.write, state, jnp.ones(3), address, 0.5)
    assert jax.tree.structure(out) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state
    )


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


def test_bad_inputs_name_the_argument():
  state = matrix.init_state(3, 2)
  with pytest.raises(ValueError, match="vector has feature size 3"):
    matrix.write(state, jnp.ones(3), 0)
  with pytest.raises(ValueError, match="vector must have rank 1"):
    matrix.write(state, jnp.ones((2, 2)), 0)
  with pytest.raises(ValueError, match="address weights have 4"):
    matrix.write(state, jnp.ones(2), jnp.ones(4))
  with pytest.raises(ValueError, match="integer address"):
    matrix.write(state, jnp.ones(2), jnp.array([0, 1]))
  with pytest.raises(ValueError, match="strength"):
    matrix.write(state, jnp.ones(2), 0, jnp.ones(2))
  with pytest.raises(TypeError, match="query"):
    matrix.read_by_content(state, jnp.ones(2, jnp.int32))
  with pytest.raises(ValueError, match="query has feature size 4"):
    matrix.read_by_content(state, jnp.ones(4))
  with pytest.raises(TypeError, match="address"):
    matrix.read_by_address(state, jnp.array([True, False, True]))
  with pytest.raises(ValueError, match="rows"):
    matrix.reset(state, jnp.ones(4, bool))


def _cell_numpy_loop(params, x, input_size, n, addressing, sharpness=1.0):
  """Numpy reference of MatrixMemoryCell (Dense encoder, scaled-dot read) over [B, T, F]."""
  p = jax.tree.map(np.asarray, params)
  dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]
  d = p["query"]["kernel"].shape[1]
  out = np.zeros(x.shape[:2] + (d,))
  for b in range(x.shape[0]):
    memory = np.zeros((n, d))
    for t in range(x.shape[1]):
      q = dense("query", x[b, t, :input_size])
      w = _np_softmax(sharpness * memory @ q / math.sqrt(d))
      out[b, t] = w @ memory
      address = np.eye(n)[t % n] if addressing == "ring" else w
      memory = memory + p["strength"] * address[:, None] * dense("encoder", x[b, t])[None, :]
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


def test_cell_user_encoder_and_noise_init():
  encoder = nn.Sequential([nn.Dense(8), nn.tanh, nn.Dense(3)])
  cell = matrix.MatrixMemoryCell(
    num_slots=4, slot_size=3, input_size=2, encoder=encoder, addressing="content", init_scale=0.1
  )
  x = jnp.ones((2, 5, 4))
  carry0 = cell.initialize_carry(jax.random.key(1), x[:, 0].shape)
  assert float(jnp.std(carry0.memory)) > 0.01  # noise breaks the symmetry of the rows
  np.testing.assert_array_equal(carry0.memory[0], carry0.memory[1])  # same across the batch
  rnn = nn.RNN(cell)
  variables = rnn.init(jax.random.key(0), x)
  assert set(variables["params"]["cell"]) == {"query", "encoder", "strength"}
  y = rnn.apply(variables, x)
  assert y.shape == (2, 5, 3) and bool(jnp.isfinite(y).all())
  bad = matrix.MatrixMemoryCell(num_slots=4, slot_size=3, encoder=nn.Dense(7))
  with pytest.raises(ValueError, match="encoder output"):
    nn.RNN(bad).init(jax.random.key(0), x)
