"""The NNX cells against the linen cells, and what an NNX user does with them.

For every family (the cells of ``test_carry_protocol.CELLS``): the NNX cell holding the
linen parameters gives the linen outputs and the same parameter gradients, jitted or
not; ``nnx.Bidirectional`` accepts it; an ``nnx.Optimizer`` step moves its parameters
and lowers the loss; ``nnx.split`` / ``nnx.merge`` and an Orbax round trip of its state
are exact. Parameter transfer: layouts that differ are named, the NTM's LSTM gates fuse.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from memjax.memory import kv, load_linen_params, ntm, persistent
from memjax.memory._nnx import _flat
from tests.memory.test_carry_protocol import CELLS, F, _inputs, _nnx_cell, _params

NAMES = sorted(CELLS)


def _linen_loss(name):
  rnn = nn.RNN(CELLS[name]())
  return lambda params, x: jnp.mean(rnn.apply({"params": params}, x) ** 2)


def _nnx_loss(model, x):
  return jnp.mean(model(x) ** 2)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", NAMES)
def test_nnx_cell_matches_linen_outputs_and_gradients(name, jit):
  x = _inputs((2, 4, F), seed=11)
  params = _params(name)
  linen_grad = jax.value_and_grad(_linen_loss(name))
  model = nnx.RNN(_nnx_cell(name), rngs=False)
  if name == "matrix":  # its initial noise: the key nn.RNN uses without a 'carry' rng
    carry = model.cell.initialize_carry((2, F), jax.random.key(0))
    model_loss = lambda m, x_: jnp.mean(m(x_, initial_carry=carry) ** 2)
  else:
    model_loss = _nnx_loss
  nnx_grad = nnx.value_and_grad(model_loss)
  if jit:
    linen_grad, nnx_grad = jax.jit(linen_grad), nnx.jit(nnx_grad)
  want_loss, want = linen_grad(params, x)
  loss, grads = nnx_grad(model, x)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
  got = _flat(nnx.to_pure_dict(grads)["cell"])
  want = _flat(want["cell"])
  if name == "ntm":  # the same gradients, in the NNX layout of the LSTM controller
    want = ntm._linen_to_nnx_layout(want)
  assert sorted(got) == sorted(want)
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=2e-5, atol=1e-7, err_msg=str(path))
  assert any(float(jnp.abs(g).max()) > 0 for g in got.values())


@pytest.mark.parametrize("name", NAMES)
def test_bidirectional_accepts_the_nnx_cell(name):
  x = _inputs((2, 4, F), seed=12)
  c0 = _nnx_cell(name).initialize_carry((2, F), jax.random.key(0))
  both = nnx.Bidirectional(nnx.RNN(_nnx_cell(name)), nnx.RNN(_nnx_cell(name)))
  y = both(x, initial_carry=(c0, c0))
  fwd = nnx.RNN(_nnx_cell(name))(x, initial_carry=c0)
  width = fwd.shape[-1]
  assert y.shape == (2, 4, 2 * width)
  np.testing.assert_allclose(y[..., :width], fwd, rtol=1e-6)
  # The backward half is the cell run over the reversed sequence, re-reversed.
  bwd = nnx.RNN(_nnx_cell(name))(x[:, ::-1], initial_carry=c0)[:, ::-1]
  np.testing.assert_allclose(y[..., width:], bwd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_an_optimizer_step_changes_the_parameters_and_lowers_the_loss(name):
  x = _inputs((2, 4, F), seed=13)
  model = nnx.RNN(_nnx_cell(name))
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(_nnx_loss)(model, x)
    optimizer.update(model, grads)
    return loss

  first = train_step(model, optimizer)
  for _ in range(4):
    last = train_step(model, optimizer)
  after = nnx.state(model, nnx.Param)
  moved = [
    bool(jnp.any(a != b))
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
  ]
  assert any(moved)
  assert float(last) < float(first)


@pytest.mark.parametrize("name", NAMES)
def test_split_merge_and_orbax_round_trip_are_exact(name, tmp_path):
  x = _inputs((2, 4, F), seed=14)
  model = nnx.RNN(_nnx_cell(name), rngs=nnx.Rngs(carry=5))
  c0 = model.cell.initialize_carry((2, F), jax.random.key(0))
  run = lambda graph, state: nnx.merge(graph, state)(x, initial_carry=c0)
  graph, state = nnx.split(model)
  y = model(x, initial_carry=c0)
  np.testing.assert_array_equal(run(graph, state), y)  # the same state, same answer
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / "state", nnx.to_pure_dict(state))
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
    restored = checkpointer.restore(tmp_path / "state", abstract)
  chex.assert_trees_all_equal(restored, nnx.to_pure_dict(state))
  fresh = nnx.RNN(_nnx_cell(name), rngs=nnx.Rngs(carry=5))
  fresh_graph, fresh_state = nnx.split(fresh)
  nnx.replace_by_pure_dict(fresh_state, restored)
  np.testing.assert_array_equal(run(fresh_graph, fresh_state), y)


def test_load_linen_params_names_what_does_not_match():
  cell = kv.KVCell(num_slots=4, key_size=3, value_size=2, input_size=3)
  params = _params("kv")["cell"]
  with pytest.raises(ValueError, match=r"missing \[\('value', 'bias'\)\].*unexpected \[\]"):
    load_linen_params(cell.to_nnx(F), {**params, "value": {"kernel": params["value"]["kernel"]}})
  with pytest.raises(
    ValueError,
    match=r"parameter query/kernel: linen has float32\[3, 4\], .* expects float32\[3, 3\]",
  ):
    load_linen_params(
      cell.to_nnx(F), {**params, "query": {**params["query"], "kernel": jnp.ones((3, 4))}}
    )
  target = cell.to_nnx(F)
  assert load_linen_params(target, {"params": params}) is target  # a variables dict works too
  np.testing.assert_array_equal(target.query.kernel[...], params["query"]["kernel"])


def test_ntm_lstm_gates_fuse_in_order_i_f_g_o():
  params = _params("ntm")["cell"]
  cell = CELLS["ntm"]().to_nnx(F, params=params)
  kernel = cell.controller_layer.dense_i.kernel[...]
  h = kernel.shape[-1] // 4
  for gate, name in enumerate(("ii", "if", "ig", "io")):
    np.testing.assert_array_equal(
      kernel[:, gate * h : (gate + 1) * h], params["controller"][name]["kernel"]
    )
  bias = cell.controller_layer.dense_h.bias[...]
  np.testing.assert_array_equal(bias[2 * h : 3 * h], params["controller"]["hg"]["bias"])


def test_nnx_persistent_attention_matches_linen():
  layer = persistent.PersistentMemoryAttention(num_heads=1, num_persistent=2, causal=True)
  x = _inputs((2, 4, F), seed=15)
  params = layer.init(jax.random.key(0), x)["params"]
  twin = layer.to_nnx(F, params=params)
  want, want_w = layer.apply({"params": params}, x, return_weights=True)
  got, got_w = twin(x, return_weights=True)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(got_w, want_w, rtol=1e-6)
