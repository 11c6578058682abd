"""The NTM sequence model (memjax.models.ntm): the feed-forward controller against a numpy
loop, ``trace_ntm`` against the same loop, and the model under the NNX bridge against linen."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from memjax.models.ntm import ntm_model, trace_ntm
from tests import _numpy_refs as refs

N, W, H, F, OUT, T = 8, 5, 12, 6, 4, 7


def _random_params(model, xs, scale, seed=0):
  """N(0, scale) parameters of ``model``'s shapes: big enough that the heads move."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), xs)["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0.0, scale, s.shape).astype(np.float32), shapes)


# ------------------------------------------------------------ numpy reference (one sequence)


def _softplus(x):
  return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _heads(raw, k):
  """Raw controller outputs [Hd, P] -> per-head parameters (Graves et al. 2014, 3.3)."""
  s = 2 * k + 1
  shift = np.exp(raw[:, W + 2 : W + 2 + s])
  return dict(
    key=raw[:, :W],
    beta=_softplus(raw[:, W]),
    gate=_sigmoid(raw[:, W + 1]),
    shift=shift / shift.sum(1, keepdims=True),
    gamma=1 + _softplus(raw[:, W + 2 + s]),
    erase=_sigmoid(raw[:, W + 3 + s : 2 * W + 3 + s]),
    add=np.tanh(raw[:, 2 * W + 3 + s :]),
  )


def _address(memory, heads, w_prev):
  """Every head's addressing ([Hd, N]) by the shared numpy reference."""
  names = ("key", "beta", "gate", "shift", "gamma")
  return np.stack(
    [refs.ntm_address(memory, *(heads[n][h] for n in names), w_prev[h]) for h in range(len(w_prev))]
  )


def _np_feedforward_ntm(p, xs, reads_n, writes_n, k=1, clip=20.0):
  """A feed-forward-controller NTM over ``xs [T, F]``: logits and every step's weightings."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  dense = lambda name, v: v @ p[name]["kernel"] + p[name]["bias"]
  memory = np.full((N, W), 1e-6)
  read_w = np.tile(np.eye(N)[0], (reads_n, 1))
  write_w = np.tile(np.eye(N)[0], (writes_n, 1))
  reads = np.zeros((reads_n, W))
  logits, read_ws, write_ws = [], [], []
  for x in xs:
    h = np.clip(np.tanh(dense("controller", np.concatenate([x, reads.ravel()]))), -clip, clip)
    wheads = _heads(np.clip(dense("write_heads", h), -clip, clip).reshape(writes_n, -1), k)
    rheads = _heads(np.clip(dense("read_heads", h), -clip, clip).reshape(reads_n, -1), k)
    write_w = _address(memory, wheads, write_w)
    keep = np.prod(1 - write_w[:, :, None] * wheads["erase"][:, None, :], axis=0)
    memory = memory * keep + write_w.T @ wheads["add"]
    read_w = _address(memory, rheads, read_w)
    reads = read_w @ memory
    logits.append(np.clip(dense("output", np.concatenate([h, reads.ravel()])), -clip, clip))
    read_ws.append(read_w)
    write_ws.append(write_w)
  return np.stack(logits), np.stack(read_ws), np.stack(write_ws)


# ------------------------------------------------------------------------------------ tests


def test_feedforward_controller_matches_numpy_loop():
  """The recall config's model (configs/recall_ntm_ff.py): a one-layer tanh controller, one
  read and one write head (several heads: tests/memory/test_ntm.py, LSTM controller)."""
  reads_n, writes_n = 1, 1
  model = ntm_model(
    OUT,
    num_slots=N,
    slot_size=W,
    controller="feedforward",
    controller_size=H,
    num_read_heads=reads_n,
    num_write_heads=writes_n,
  )
  xs = np.random.default_rng(1).integers(0, 2, (2, T, F)).astype(np.float32)
  params = _random_params(model, xs, scale=0.7)
  logits = jax.jit(model.apply)({"params": params}, xs)
  for b in range(xs.shape[0]):
    ref, ref_read_w, ref_write_w = _np_feedforward_ntm(params["cell"], xs[b], reads_n, writes_n)
    np.testing.assert_allclose(logits[b], ref, rtol=2e-4, atol=2e-4)
  # trace_ntm records the last sequence's weightings and sigmoid outputs.
  trace = jax.jit(lambda p, x: trace_ntm(model.cell, p, x))({"cell": params["cell"]}, xs[-1])
  np.testing.assert_allclose(trace["read_weights"], ref_read_w, atol=2e-4)
  np.testing.assert_allclose(trace["write_weights"], ref_write_w, atol=2e-4)
  np.testing.assert_allclose(trace["outputs"], _sigmoid(ref), atol=2e-4)
  # The heads moved off the initial focus on slot 0, and not all in the same way.
  assert np.max(np.abs(ref_write_w - np.eye(N)[0])) > 0.1
  assert np.max(np.abs(np.diff(ref_read_w, axis=0))) > 0.1


@nnx.jit
def _lazy_init(module, xs):
  """``nnx.bridge.lazy_init`` as one program (eagerly it compiles every op of the init)."""
  nnx.bridge.lazy_init(module, xs)


def test_nnx_bridge_equals_linen_with_the_same_params():
  """``nnx.bridge.ToNNX`` (the README's NNX route) computes the linen model's function: the
  same parameter tree, and with the same values the same logits (so the same gradients)."""
  model = ntm_model(OUT, num_slots=N, slot_size=W, controller_size=H)  # LSTM controller
  xs = jnp.asarray(np.random.default_rng(2).normal(size=(2, T, F)), jnp.float32)
  params = _random_params(model, xs, scale=0.5, seed=3)
  bridged = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(0))
  _lazy_init(bridged, xs)
  state = nnx.state(bridged, nnx.Param)
  assert jax.tree.structure(nnx.to_pure_dict(state)) == jax.tree.structure(params)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(bridged, state)
  got = nnx.jit(lambda m, x: m(x))(bridged, xs)
  want = jax.jit(model.apply)({"params": params}, xs)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert np.std(np.asarray(want)) > 0.1  # the logits move with the inputs
