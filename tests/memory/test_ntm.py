"""Neural Turing Machine: known answers, a numpy loop reference of full steps, the carry API."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from memjax.memory import ntm
from tests import _numpy_refs as refs

N, W, H, F, OUT = 8, 5, 12, 6, 4


def _cell(**kw):
  args = dict(output_size=OUT, num_slots=N, slot_size=W, controller_size=H)
  args.update(kw)
  return ntm.NTMCell(**args)


_PARAMS = {}


def _init(cell, x):
  """The carry for ``x`` and the cell's parameters (initialised once per cell config)."""
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  name = repr(cell)
  if name not in _PARAMS:
    single = cell.initialize_carry(None, x.shape[-1:])
    _PARAMS[name] = jax.jit(cell.init)(jax.random.key(1), single, x.reshape(-1, F)[0])
  return carry, _PARAMS[name]


def _rnn_params(cell):
  """``nn.RNN(cell)`` parameters from the cached cell parameters."""
  _, params = _init(cell, jnp.ones((F,)))
  return {"params": {"cell": params["params"]}}


# ----------------------------------------------------------------------- pure ops


def test_init_state_constants():
  s = ntm.init_state(4, 3, num_read_heads=2, num_write_heads=1, controller_size=7)
  np.testing.assert_array_equal(s.memory, np.full((4, 3), 1e-6, np.float32))
  np.testing.assert_array_equal(s.read_weights, [[1, 0, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(s.write_weights, [[1, 0, 0, 0]])
  np.testing.assert_array_equal(s.reads, np.zeros((2, 3)))
  assert [c.shape for c in s.controller] == [(7,), (7,)]
  assert ntm.init_state(4, 3).controller == ()


def test_write_erase_add_known_answer():
  memory = jnp.ones((2, 2))
  w, e, a = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0]]), jnp.array([[2.0, 3.0]])
  out = ntm.write_matrix(memory, w, e, a)
  # row 0: 1 * (1 - 1) + 2, 1 * (1 - 0) + 3; row 1 untouched.
  np.testing.assert_allclose(out, [[2.0, 4.0], [1.0, 1.0]])


def test_write_two_heads_multiply_erases_and_sum_adds():
  memory = jnp.ones((2, 2))
  weights = jnp.array([[0.5, 0.5], [1.0, 0.0]])
  erase = jnp.array([[1.0, 1.0], [0.5, 0.0]])
  add = jnp.array([[0.0, 2.0], [4.0, 0.0]])
  out = ntm.write_matrix(memory, weights, erase, add)
  # keep[0] = (1 - .5)(1 - .5), (1 - .5)(1 - 0); keep[1] = (1 - .5), (1 - .5)
  # adds: row 0 = .5 [0, 2] + [4, 0]; row 1 = .5 [0, 2].
  np.testing.assert_allclose(out, [[0.25 + 4.0, 0.5 + 1.0], [0.5, 0.5 + 1.0]])
  swapped = ntm.write_matrix(memory, weights[::-1], erase[::-1], add[::-1])
  np.testing.assert_allclose(out, swapped, atol=1e-6)


def test_state_read_write_reset_match_the_matrix_ops():
  """The family API: read/write take the NTMState; reset gives init_state back."""
  state = ntm.init_state(3, 2, num_read_heads=2, num_write_heads=1, controller_size=4)
  w, e, a = jnp.array([[0.0, 1.0, 0.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[2.0, 3.0]])
  written = ntm.write(state, w, e, a)
  np.testing.assert_allclose(written.memory, [[1e-6, 1e-6], [2.0, 3.0], [1e-6, 1e-6]])
  np.testing.assert_array_equal(written.write_weights, w)
  np.testing.assert_array_equal(written.read_weights, state.read_weights)  # untouched
  rw = jnp.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
  np.testing.assert_allclose(ntm.read(written, rw), [[1.0, 1.5], [2.0, 3.0]], rtol=1e-5)
  np.testing.assert_allclose(
    ntm.read(written), written.memory[jnp.array([0, 0])]
  )  # heads on slot 0
  fresh = ntm.reset(written._replace(reads=jnp.ones((2, 2))))
  chex.assert_trees_all_equal(fresh, state)
  with pytest.raises(ValueError, match=r"write_weights \(1, 3\)"):
    ntm.write(state, jnp.ones((2, 3)), jnp.ones((2, 2)), jnp.ones((2, 2)))


def test_matrix_calls_of_read_and_write_still_work_with_a_deprecation_warning():
  memory = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  w = jnp.array([[0.0, 1.0]])
  with pytest.warns(DeprecationWarning, match=r"ntm.read_matrix"):
    np.testing.assert_array_equal(ntm.read(memory, w), ntm.read_matrix(memory, w))
  with pytest.warns(DeprecationWarning, match=r"ntm.write_matrix"):
    old = ntm.write(memory, w, jnp.ones((1, 2)), jnp.ones((1, 2)))
  np.testing.assert_array_equal(
    old, ntm.write_matrix(memory, w, jnp.ones((1, 2)), jnp.ones((1, 2)))
  )


def test_read_known_answer():
  memory = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
  out = ntm.read_matrix(memory, jnp.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
  np.testing.assert_allclose(out, [[2.0, 3.0], [5.0, 6.0]])


def test_head_params_constraints():
  raw = jnp.linspace(-30, 30, 2 * ntm.head_param_size(W, 1, write=True)).reshape(2, -1)
  p = ntm.head_params(raw, W, 1, write=True)
  assert p.key.shape == (2, W) and p.shift.shape == (2, 3) and p.erase.shape == (2, W)
  assert np.all(p.beta >= 0) and np.all(p.gamma >= 1)
  assert np.all((p.gate >= 0) & (p.gate <= 1)) and np.all((p.erase >= 0) & (p.erase <= 1))
  np.testing.assert_allclose(jnp.sum(p.shift, -1), 1.0, atol=1e-6)
  assert ntm.head_params(raw[:, : ntm.head_param_size(W, 1)], W, 1).erase is None


# ------------------------------------------------------- numpy reference of the cell


def _sig(x):
  return 1 / (1 + np.exp(-x))


def _softplus(x):
  return np.log1p(np.exp(x))


def _np_heads(raw, write):
  out = []
  for r in raw:
    key, beta, gate = r[:W], _softplus(r[W]), _sig(r[W + 1])
    shift = np.exp(r[W + 2 : W + 5]) / np.exp(r[W + 2 : W + 5]).sum()
    gamma = 1 + _softplus(r[W + 5])
    head = dict(key=key, beta=beta, gate=gate, shift=shift, gamma=gamma)
    if write:
      head.update(erase=_sig(r[W + 6 : 2 * W + 6]), add=np.tanh(r[2 * W + 6 :]))
    out.append(head)
  return out


def _np_step(p, state, x, num_reads, num_writes, clip=20.0, clip_kind="hard"):
  """One NTM step for one example, written with plain numpy loops.

  The controller is an LSTM when ``state`` carries its ``(c, h)``, else feed-forward
  (one tanh layer, no state). ``clip_kind='soft'`` bounds with ``clip * tanh(v / clip)``.
  """
  if clip_kind == "soft":
    np_clip = lambda v, lo, hi: hi * np.tanh(v / hi)
  else:
    np_clip = np.clip
  memory, read_w, write_w, reads, controller = state
  inp = np.concatenate([x, reads.reshape(-1)])
  if controller:
    c, h = controller
    lstm = p["controller"]
    gate = lambda g, act: act(
      inp @ lstm["i" + g]["kernel"] + h @ lstm["h" + g]["kernel"] + lstm["h" + g]["bias"]
    )
    i, f, g, o = gate("i", _sig), gate("f", _sig), gate("g", np.tanh), gate("o", _sig)
    c = f * c + i * g
    h = o * np.tanh(c)
    controller = (c, h)
  else:
    h = np.tanh(inp @ p["controller"]["kernel"] + p["controller"]["bias"])
  hc = np_clip(h, -clip, clip)
  dense = lambda name, v: v @ p[name]["kernel"] + p[name]["bias"]
  raw_w = np_clip(dense("write_heads", hc), -clip, clip).reshape(num_writes, -1)
  raw_r = np_clip(dense("read_heads", hc), -clip, clip).reshape(num_reads, -1)
  new_write_w = np.zeros_like(write_w)
  for j, head in enumerate(_np_heads(raw_w, True)):
    new_write_w[j] = refs.ntm_address(
      memory, head["key"], head["beta"], head["gate"], head["shift"], head["gamma"], write_w[j]
    )
  heads = _np_heads(raw_w, True)
  new_memory = memory.copy()
  for row in range(memory.shape[0]):
    for col in range(memory.shape[1]):
      keep = 1.0
      add = 0.0
      for j in range(num_writes):
        keep *= 1 - new_write_w[j, row] * heads[j]["erase"][col]
        add += new_write_w[j, row] * heads[j]["add"][col]
      new_memory[row, col] = memory[row, col] * keep + add
  new_read_w = np.zeros_like(read_w)
  new_reads = np.zeros_like(reads)
  for j, head in enumerate(_np_heads(raw_r, False)):
    new_read_w[j] = refs.ntm_address(
      new_memory, head["key"], head["beta"], head["gate"], head["shift"], head["gamma"], read_w[j]
    )
    new_reads[j] = sum(new_read_w[j, i] * new_memory[i] for i in range(memory.shape[0]))
  y = np_clip(dense("output", np.concatenate([hc, new_reads.reshape(-1)])), -clip, clip)
  return (new_memory, new_read_w, new_write_w, new_reads, controller), y


@pytest.mark.parametrize(
  "num_reads, num_writes, controller, clip",
  [
    (1, 1, "lstm", ("hard", 20.0)),
    (2, 2, "lstm", ("hard", 20.0)),
    (1, 1, "feedforward", ("hard", 20.0)),
    (1, 1, "feedforward", ("hard", 1.5)),  # the bound binds
    (1, 1, "lstm", ("soft", 1.5)),
  ],
)
def test_cell_matches_numpy_loop_reference(num_reads, num_writes, controller, clip):
  kind, bound = clip
  cell = _cell(
    num_read_heads=num_reads,
    num_write_heads=num_writes,
    controller=controller,
    clip=kind,
    clip_value=bound,
  )
  xs = jax.random.bernoulli(jax.random.key(3), 0.5, (6, F)).astype(jnp.float32)
  carry, params = _init(cell, xs[0])
  # Bigger parameters than the default init, so that the heads move and sharpen.
  params = jax.tree.map(lambda a: a * 3.0, params)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  state = tuple(np.asarray(a, np.float64) for a in carry[:4]) + (
    tuple(np.asarray(a, np.float64) for a in carry.controller),
  )
  apply = jax.jit(cell.apply)
  for t in range(xs.shape[0]):
    carry, y = apply(params, carry, xs[t])
    state, y_ref = _np_step(
      p, state, np.asarray(xs[t], np.float64), num_reads, num_writes, bound, kind
    )
    np.testing.assert_allclose(y, y_ref, atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(carry.memory, state[0], atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(carry.read_weights, state[1], atol=2e-4)
    np.testing.assert_allclose(carry.write_weights, state[2], atol=2e-4)
  assert (carry.controller == ()) == (controller == "feedforward")
  # The weightings are not trivially the initial focus.
  assert float(jnp.max(jnp.abs(carry.write_weights - jax.nn.one_hot(0, N)[None]))) > 1e-2


def test_clip_kinds_share_the_range_and_only_soft_keeps_a_gradient_beyond_it():
  a = jnp.array([-50.0, -3.0, 0.5, 3.0, 50.0])
  hard, soft = ntm.clip_fn("hard", 2.0), ntm.clip_fn("soft", 2.0)
  np.testing.assert_allclose(hard(a), np.clip(np.asarray(a), -2, 2))
  np.testing.assert_allclose(soft(a), 2.0 * np.tanh(np.asarray(a) / 2.0), rtol=1e-6)
  assert float(jnp.max(jnp.abs(soft(a)))) <= 2.0
  g_hard = jax.grad(lambda v: jnp.sum(hard(v)))(a)
  g_soft = jax.grad(lambda v: jnp.sum(soft(v)))(a)
  np.testing.assert_array_equal(g_hard, [0.0, 0.0, 1.0, 0.0, 0.0])
  np.testing.assert_allclose(g_soft, 1.0 - np.tanh(np.asarray(a) / 2.0) ** 2, rtol=1e-5)
  assert float(g_soft[3]) > 0.0
  with pytest.raises(ValueError, match="clip='tanh' must be one of"):
    ntm.clip_fn("tanh", 2.0)
  with pytest.raises(ValueError, match="clip='tanh' must be one of"):
    _init(_cell(clip="tanh"), jnp.zeros((F,)))


# ------------------------------------------------------------------ carry protocol


class StepVariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_step_jit_and_no_jit_agree(self):
    state = ntm.init_state(N, W, 1, 1)
    raw_r = jax.random.normal(jax.random.key(5), (1, ntm.head_param_size(W)))
    raw_w = jax.random.normal(jax.random.key(6), (1, ntm.head_param_size(W, write=True)))

    def f(state, raw_r, raw_w):
      return ntm.step(state, ntm.head_params(raw_r, W), ntm.head_params(raw_w, W, write=True))

    out = self.variant(f)(state, raw_r, raw_w)
    ref = f(state, raw_r, raw_w)
    chex.assert_trees_all_close(out, ref, atol=1e-6)
    np.testing.assert_allclose(jnp.sum(out.read_weights, -1), 1.0, atol=1e-5)


def test_gradients_of_step_and_cell():
  state = ntm.init_state(N, W, 1, 1)
  state = state._replace(memory=jax.random.normal(jax.random.key(8), (N, W)))
  raw_r = jax.random.normal(jax.random.key(9), (1, ntm.head_param_size(W)))
  raw_w = jax.random.normal(jax.random.key(10), (1, ntm.head_param_size(W, write=True)))

  def f(memory, raw_r, raw_w):
    s = ntm.step(
      state._replace(memory=memory),
      ntm.head_params(raw_r, W),
      ntm.head_params(raw_w, W, write=True),
    )
    return s.reads

  check_grads(
    jax.jit(f),
    (state.memory, raw_r, raw_w),
    order=1,
    modes=("rev",),
    atol=3e-2,
    rtol=3e-2,
    eps=1e-3,
  )

  cell = _cell()
  xs = jax.random.normal(jax.random.key(11), (2, 12, F))
  rnn = nn.RNN(cell)
  params = _rnn_params(cell)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(rnn.apply(p, xs) ** 2)))(params)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_remat_memory_gives_the_same_outputs_and_gradients():
  xs = jax.random.normal(jax.random.key(12), (2, 9, F))
  params = _rnn_params(_cell())
  out = {}
  for remat in (True, False):
    rnn = nn.RNN(_cell(remat_memory=remat))
    loss = lambda p, rnn=rnn: jnp.sum(rnn.apply(p, xs) ** 2)
    out[remat] = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out[True][1]), jax.tree.leaves(out[False][1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_finite_over_1200_steps():
  cell = _cell()
  xs = jax.random.bernoulli(jax.random.key(12), 0.5, (2, 1200, F)).astype(jnp.float32)
  rnn = nn.RNN(cell, return_carry=True)
  params = _rnn_params(cell)
  params = jax.tree.map(lambda a: a * 3.0, params)  # large weights: sharp heads, big writes
  carry, ys = jax.jit(rnn.apply)(params, xs)
  assert bool(jnp.all(jnp.isfinite(ys)))
  assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(carry))
  np.testing.assert_allclose(jnp.sum(carry.write_weights, -1), 1.0, atol=1e-4)
  assert float(jnp.max(jnp.abs(ys))) <= 20.0


_ONES = jnp.ones


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: ntm.init_state(0, W), ValueError, "num_slots must be a positive int, got 0"),
    (lambda: ntm.init_state(N, W, dtype=jnp.int32), TypeError, "dtype must be floating"),
    (
      lambda: ntm.write_matrix(_ONES((N, W)), _ONES((1, N)), _ONES((1, W + 1)), _ONES((1, W))),
      ValueError,
      r"erase has feature size 6 \(shape \(1, 6\)\) but memory \(8, 5\) has 5",
    ),
    (
      lambda: ntm.write_matrix(_ONES((N, W)), _ONES((1, N + 1)), _ONES((1, W)), _ONES((1, W))),
      ValueError,
      r"weights has feature size 9 .* memory \(8, 5\) has 8",
    ),
    (
      lambda: ntm.read_matrix(_ONES((2, N, W)), _ONES((1, N))),
      ValueError,
      r"memory must have rank 2 \[N, W\] .* got shape \(2, 8, 5\)",
    ),
    (
      lambda: ntm.head_params(_ONES((1, 3)), W),
      ValueError,
      r"raw has feature size 3 .* head_param_size\(slot_size=5, shift_range=1, write=False\)",
    ),
  ],
)
def test_pure_ops_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
