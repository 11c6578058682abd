"""The protocol every memory family follows, one table per protocol.

Cells (``CELLS``, every ``nn.RNNCellBase`` in memjax.memory, and each one's NNX form, every
``nnx.RNNCellBase``, built by ``to_nnx`` with the same parameters; ``API`` runs a test on
both): nn.RNN / nnx.RNN equal a linen step loop, nn.scan / nnx.scan equal nn.RNN, the NNX
bridge equals linen, no retrace, compile size independent of T, an 8-device sharded run
equal to the unsharded one, a batch equals its examples run alone, long sequences stay
finite, bfloat16 carries, the scan carry rule (a step returns the carry's structure, shapes
and dtypes), bad inputs named.

Pure state ops (``STATE_OPS``): ``eval_shape`` of every state update is the state, and
nested ``vmap`` over batch axes equals the single-example op on each example.
"""

import functools
import importlib
import pkgutil

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import memjax.memory
from memjax.memory import _carry, attention, gated, holographic, kv, matrix, ntm, persistent

F = 5  # one step's input: x_t has 3 features, y_t 2 (cells with input_size=3)

# Every memory cell. Each reads the whole F-feature step input.
CELLS = {
  "attention": lambda: attention.AttentionMemoryCell(
    num_slots=4, key_size=3, value_size=2, input_size=3
  ),
  "kv": lambda: kv.KVCell(
    num_slots=4, key_size=3, value_size=2, input_size=3, k=2, policy="lru", update_threshold=0.99
  ),
  "matrix": lambda: matrix.MatrixMemoryCell(
    num_slots=4, slot_size=3, input_size=3, addressing="content", init_scale=0.1
  ),
  "gated": lambda: gated.GatedMemoryCell(num_slots=3),
  "holographic": lambda: holographic.HolographicCell(dim=4),
  "ntm": lambda: ntm.NTMCell(output_size=2, num_slots=4, slot_size=3, controller_size=4),
  "persistent": lambda: persistent.PersistentMemoryCell(num_heads=1, num_persistent=2, window=3),
}
OUTPUT_SIZE = {"attention": 2, "kv": 2, "matrix": 3, "gated": F, "holographic": 4, "ntm": 2}
OUTPUT_SIZE["persistent"] = F
# The carry leaf a batch-size check names, and the cells that split x into x_t ++ y_t.
CARRY_LEAF = {"attention": "keys", "kv": "keys", "matrix": "memory", "gated": "slots"}
CARRY_LEAF |= {"holographic": "trace", "ntm": "memory", "persistent": "keys"}
WITH_INPUT_SIZE = ("attention", "kv", "matrix")
# The lengths of the long-sequence runs (gated and ntm have longer runs of their own that
# check invariants of the family: test_gated.py, test_ntm.py).
LONG = {"attention": 500, "kv": 400, "matrix": 400, "gated": 400, "holographic": 2000}
LONG |= {"ntm": 400, "persistent": 2000}


def _inputs(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@functools.cache
def _params(name):
  """The ``nn.RNN(cell)`` parameters ``{"cell": ...}`` of a cell, initialised once.

  They do not depend on the batch shape or the length, so one compiled init per cell
  serves every test.
  """
  cell = CELLS[name]()
  x = jnp.ones((F,))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  return {"cell": jax.jit(cell.init)(jax.random.key(1), carry, x)["params"]}


def _nnx_cell(name, **attributes):
  """The NNX form of ``CELLS[name]`` (attributes replaced), holding the linen parameters."""
  return CELLS[name]().clone(**attributes).to_nnx(F, params=_params(name)["cell"])


API = ["linen", "nnx"]


def _rnn(api, name, **kw):
  """``apply(x, **call_kw) -> rnn output`` of the cell under nn.RNN or nnx.RNN (jitted)."""
  if api == "linen":
    rnn = nn.RNN(CELLS[name](), **kw)
    apply = jax.jit(rnn.apply)
    return lambda x, **call: apply({"params": _params(name)}, x, **call)
  model = nnx.RNN(_nnx_cell(name), **kw)
  apply = nnx.jit(lambda m, x, carry, **call: m(x, initial_carry=carry, **call))
  # The carry nn.RNN starts from without a 'carry' rng (matrix's initial noise: key(0)).
  first = lambda x: model.cell.initialize_carry(x.shape[:-2] + x.shape[-1:], jax.random.key(0))
  return lambda x, **call: apply(model, x, first(x), **call)


def _module_classes(base):
  found = set()
  for info in pkgutil.iter_modules(memjax.memory.__path__, "memjax.memory."):
    module = importlib.import_module(info.name)
    found |= {
      obj
      for obj in vars(module).values()
      if isinstance(obj, type) and issubclass(obj, base) and obj.__module__ == info.name
    }
  return found


def test_every_memory_cell_is_in_the_table():
  assert _module_classes(nn.RNNCellBase) == {type(make()) for make in CELLS.values()}
  assert _module_classes(nnx.RNNCellBase) == {type(_nnx_cell(name)) for name in CELLS}


FAMILIES = {
  "attention": attention,
  "gated": gated,
  "holographic": holographic,
  "kv": kv,
  "matrix": matrix,
  "ntm": ntm,
  "persistent": persistent,
}


def test_every_family_has_the_uniform_api():
  """init_state, write, read (on the state) and reset in every family module."""
  modules = {info.name.split(".")[-1] for info in pkgutil.iter_modules(memjax.memory.__path__)}
  assert {m for m in modules if not m.startswith("_")} == set(FAMILIES)
  for name, module in FAMILIES.items():
    for op in ("init_state", "write", "read", "reset"):
      assert callable(getattr(module, op, None)), f"{name}.{op}"
      assert op in module.__all__, f"{name}.{op} not exported"


# ------------------------------------------------------------------ cells: scans


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_rnn_return_carry_equals_step_loop_without_retrace(name, api):
  cell = CELLS[name]()
  x = _inputs((3, 6, F))
  params = _params(name)
  # seq_lengths: the returned carry is the memory after each sequence's own length
  # (the first sequence runs all 6 steps).
  lengths = [6, 2, 4]
  carry, y = _rnn(api, name, return_carry=True)(x, seq_lengths=jnp.array(lengths))

  if api == "linen":  # the reference: a linen step loop (the NNX cell holds its params)

    @jax.jit
    @chex.assert_max_traces(n=1)  # the carry keeps its structure, shapes and dtypes
    def step(carry, x_t):
      return cell.apply({"params": params["cell"]}, carry, x_t)

  else:  # the same loop over the NNX cell's own step, under nnx.jit
    nnx_step = nnx.jit(chex.assert_max_traces(n=1)(lambda m, c, x_t: m(c, x_t)))
    step = functools.partial(nnx_step, _nnx_cell(name))

  step_carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  ys, carries = [], []
  for t in range(x.shape[1]):  # reference: one step at a time in a Python loop
    step_carry, y_t = step(step_carry, x[:, t])
    ys.append(y_t)
    carries.append(step_carry)
  chex.clear_trace_counter()
  want_y = jnp.stack(ys, axis=1)
  assert y.shape == (3, 6, OUTPUT_SIZE[name])
  chex.assert_trees_all_equal_shapes_and_dtypes(carry, carries[-1])
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(y[b, :n], want_y[b, :n], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(
      jax.tree.map(lambda a, b=b: a[b], carry),
      jax.tree.map(lambda a, b=b: a[b], carries[n - 1]),
      rtol=1e-5,
      atol=1e-6,
    )


class _Scanned(nn.Module):
  make_cell: object

  @nn.compact
  def __call__(self, x):
    scan = nn.scan(
      type(self.make_cell()),
      variable_broadcast="params",
      split_rngs={"params": False},
      in_axes=1,
      out_axes=1,
    )
    cell = self.make_cell()
    scanned = scan(
      **{f: getattr(cell, f) for f in cell.__dataclass_fields__ if f not in ("parent", "name")},
      name="cell",
    )
    carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
    return scanned(carry, x)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_nn_scan_equals_nn_rnn(name):
  x = _inputs((2, 5, F), seed=1)
  params = _params(name)  # nn.scan's parameters live under "cell" as nn.RNN's do
  carry, y = _Scanned(CELLS[name]).apply({"params": params}, x)
  rnn_carry, rnn_y = nn.RNN(CELLS[name](), return_carry=True).apply({"params": params}, x)
  np.testing.assert_allclose(y, rnn_y, rtol=1e-6)
  chex.assert_trees_all_close(carry, rnn_carry, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_nnx_scan_equals_nn_rnn(name):
  x = _inputs((2, 5, F), seed=1)
  cell = _nnx_cell(name)

  @nnx.scan(in_axes=(nnx.Carry, 1), out_axes=(nnx.Carry, 1))
  def scan(carry, x_t):
    return cell(carry, x_t)

  carry, y = scan(cell.initialize_carry(x[:, 0].shape, jax.random.key(0)), x)
  rnn = nn.RNN(CELLS[name](), return_carry=True)
  rnn_carry, rnn_y = rnn.apply({"params": _params(name)}, x)
  np.testing.assert_allclose(y, rnn_y, rtol=1e-6)
  chex.assert_trees_all_close(carry, rnn_carry, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_nnx_bridge_equals_linen(name):
  x = _inputs((2, 5, F), seed=2)
  model = nnx.bridge.ToNNX(nn.RNN(CELLS[name](), return_carry=True), rngs=nnx.Rngs(0))
  nnx.bridge.lazy_init(model, x)
  carry, y = model(x)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  want_carry, want_y = nn.RNN(CELLS[name](), return_carry=True).apply({"params": params}, x)
  np.testing.assert_allclose(y, want_y, rtol=1e-6)
  chex.assert_trees_all_close(carry, want_carry, rtol=1e-6)
  grads = nnx.grad(lambda m: jnp.sum(m(x)[1] ** 2))(model)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_compiled_size_does_not_grow_with_length(name, api):
  if api == "linen":
    rnn = nn.RNN(CELLS[name](), return_carry=True)
    lower = functools.partial(jax.jit(rnn.apply).lower, {"params": _params(name)})
  else:
    graph, state = nnx.split(nnx.RNN(_nnx_cell(name), return_carry=True))
    run = lambda state, x: nnx.merge(graph, state)(x)
    lower = functools.partial(jax.jit(run).lower, state)

  def hlo_size(length):
    x = jax.ShapeDtypeStruct((2, length, F), jnp.float32)
    return len(lower(x).as_text().replace(str(length), ""))

  short, long = hlo_size(10), hlo_size(1000)
  assert long < 1.02 * short, (short, long)  # one scan body, not 1000 unrolled steps


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_sharded_batch_equals_unsharded(name, api):
  # tests/conftest.py forces the CPU platform with 8 fake devices.
  assert jax.default_backend() == "cpu" and len(jax.devices()) == 8
  mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
  x = _inputs((6, 8, F), seed=4)  # time-major [T, B, F]; B is sharded, T is scanned
  if api == "linen":
    rnn = nn.RNN(CELLS[name](), return_carry=True, time_major=True)
    params = {"params": _params(name)}
  else:
    graph, params = nnx.split(nnx.RNN(_nnx_cell(name), return_carry=True, time_major=True))
    rnn = type("Merged", (), {"apply": lambda p, x: nnx.merge(graph, p)(x)})
  apply = jax.jit(rnn.apply)
  want_carry, want_y = apply(params, x)
  x_sharded = jax.device_put(x, NamedSharding(mesh, P(None, "batch")))
  params_rep = jax.device_put(params, NamedSharding(mesh, P()))
  carry, y = apply(params_rep, x_sharded)
  assert len(y.sharding.device_set) == 8
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(carry, want_carry, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_batch_equals_each_example_alone(name, api):
  cell = CELLS[name]()
  batch = (2, 3)  # two batch axes: [*B, T, F]
  x = _inputs(batch + (3, F), seed=5)
  carry, y = _rnn(api, name, return_carry=True)(x)
  single = cell.initialize_carry(jax.random.key(0), (F,))
  assert y.shape == batch + (3, OUTPUT_SIZE[name])
  assert jax.tree.map(jnp.shape, carry) == jax.tree.map(lambda a: batch + a.shape, single)
  apply1 = _rnn(api, name, return_carry=True)  # one compile for every unbatched example
  flat = lambda a: a.reshape((-1,) + a.shape[len(batch) :])
  for i in range(int(np.prod(batch))):
    carry1, y1 = apply1(flat(x)[i])
    np.testing.assert_allclose(flat(y)[i], y1, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: flat(a)[i], carry), carry1, atol=1e-6)


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_long_sequence_stays_finite(name, api):
  x = _inputs((2, LONG[name], F), seed=6) * 10.0
  carry, y = _rnn(api, name, return_carry=True)(x)
  assert y.shape == (2, LONG[name], OUTPUT_SIZE[name])
  assert bool(jnp.isfinite(y).all())
  assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(carry))


# ------------------------------------------------------------- cells: bad inputs


def _bad_int_x(cell, params, carry):
  return cell.apply(params, carry, jnp.ones((2, F), jnp.int32))


def _bad_carry_batch(cell, params, carry):
  return cell.apply(params, cell.initialize_carry(jax.random.key(0), (3, F)), jnp.ones((2, F)))


def _bad_x_features(cell, params, carry):
  return cell.apply(params, cell.initialize_carry(jax.random.key(0), (2, 2)), jnp.ones((2, 2)))


def _bad_rnn_features(cell, params, carry):
  return nn.RNN(cell).init(jax.random.key(0), jnp.ones((2, 4, 2)))


BAD_CELL_INPUTS = [
  (name, _bad_int_x, TypeError, "x must have a floating dtype, got int32") for name in CELLS
]
BAD_CELL_INPUTS += [
  (name, _bad_carry_batch, ValueError, rf"carry\.{CARRY_LEAF[name]} .*shape.*\(3, ")
  for name in CELLS
]
BAD_CELL_INPUTS += [
  (name, bad, ValueError, r"input_size=3 must be in \[1, 2\]")
  for name in WITH_INPUT_SIZE
  for bad in (_bad_x_features, _bad_rnn_features)
]


_KEY0 = jax.random.key(0)
# The same bad inputs given to the NNX cell (the last one: building it for 2 features).
NNX_BAD = {
  _bad_int_x: lambda name: _nnx_cell(name)(
    _nnx_cell(name).initialize_carry((2, F), _KEY0), jnp.ones((2, F), jnp.int32)
  ),
  _bad_carry_batch: lambda name: _nnx_cell(name)(
    _nnx_cell(name).initialize_carry((3, F), _KEY0), jnp.ones((2, F))
  ),
  _bad_x_features: lambda name: _nnx_cell(name)(
    _nnx_cell(name).initialize_carry((2, 2), _KEY0), jnp.ones((2, 2))
  ),
  _bad_rnn_features: lambda name: CELLS[name]().to_nnx(2),
}


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name, bad, error, match", BAD_CELL_INPUTS)
def test_cell_bad_inputs_name_the_argument(name, bad, error, match, api):
  cell = CELLS[name]()
  carry = cell.initialize_carry(jax.random.key(0), (2, F))
  params = {"params": _params(name)["cell"]}
  with pytest.raises(error, match=match):
    if api == "linen":
      bad(cell, params, carry)
    else:
      NNX_BAD[bad](name)


@pytest.mark.parametrize(
  "cell, match",
  [
    (kv.KVCell(num_slots=4, key_size=3, value_size=2, k=5), r"k=5 must be in \[1, 4\]"),
    (kv.KVCell(num_slots=4, key_size=3, value_size=2, policy="lfu"), "policy='lfu' is not one"),
    (
      matrix.MatrixMemoryCell(num_slots=4, slot_size=3, addressing="soft"),
      "addressing='soft' is not 'ring' or 'content'",
    ),
    (
      matrix.MatrixMemoryCell(num_slots=4, slot_size=3, encoder=nn.Dense(7)),
      r"encoder output has shape \(2, 7\), expected \(2, 3\)",
    ),
    (ntm.NTMCell(output_size=2, num_slots=4, slot_size=3, controller="gru"), "controller='gru'"),
    (ntm.NTMCell(output_size=2, num_slots=4, slot_size=3, shift_range=5), "shift_range"),
  ],
)
def test_bad_cell_attributes_are_named(cell, match):
  with pytest.raises(ValueError, match=match):
    nn.RNN(cell).init(jax.random.key(0), jnp.ones((2, 3, F)))


# ------------------------------------------------------------- cells: carry rule


def _weak_types(tree):
  """Each leaf's weak_type (of an array or of a jax.eval_shape result)."""
  return [
    a.weak_type if isinstance(a, jax.ShapeDtypeStruct) else jax.typeof(a).weak_type
    for a in jax.tree.leaves(tree)
  ]


@pytest.mark.parametrize(
  "batch, dtype, x64",
  [((), jnp.float32, False), ((2, 3), jnp.float32, False), ((3,), jnp.bfloat16, False)]
  + [((3,), jnp.float32, True)],  # 64-bit mode: an int64 / float64 leaf would show
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_call_returns_a_carry_typed_like_the_one_it_got(name, api, jit, batch, dtype, x64):
  with jax.enable_x64(x64):
    cell = CELLS[name]().clone(dtype=dtype)
    x = _inputs(batch + (F,), seed=8).astype(dtype)
    carry = cell.initialize_carry(jax.random.key(0), x.shape)
    params = {"params": _params(name)["cell"]}  # float32 parameters for every case
    apply = functools.partial(cell.apply, params)
    if api == "nnx":  # built for this dtype (its own parameters: bf16 ones where linen's are)
      apply = functools.partial(lambda m, c, x_: m(c, x_), cell.to_nnx(F))
    if jit:  # the output types a jitted step compiles to, without compiling
      new, y = jax.eval_shape(apply, carry, x)
    else:
      new, y = apply(carry, x)
      assert bool(jnp.isfinite(y.astype(jnp.float32)).all())
    chex.assert_trees_all_equal_structs(new, carry)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, carry)
    assert _weak_types(new) == _weak_types(carry)
    assert y.dtype == dtype and y.shape == batch + (OUTPUT_SIZE[name],)


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_call_checks_the_carry_rule_with_its_name(name, api, monkeypatch):
  calls = []
  check = _carry.check_carry_kept
  monkeypatch.setattr(_carry, "check_carry_kept", lambda *a: calls.append(a) or check(*a))
  cell = CELLS[name]()
  x = jnp.ones((2, F))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  if api == "linen":
    jax.eval_shape(cell.init, jax.random.key(1), carry, x)  # the check runs while tracing
  else:
    cell = _nnx_cell(name)
    jax.eval_shape(lambda c, x_: cell(c, x_), carry, x)
  assert [c[0] for c in calls] == [type(cell).__name__]  # once, on the step's own carry


def test_a_cell_that_breaks_the_carry_rule_is_named(monkeypatch):
  write = holographic.write
  drift = lambda *a: (s := write(*a))._replace(count=s.count.astype(jnp.float32))
  monkeypatch.setattr(holographic, "write", drift)
  x = jnp.ones((2, 4, F))
  with pytest.raises(TypeError, match=r"HolographicCell must return .* 'count': types: int32"):
    nn.RNN(holographic.HolographicCell(dim=4)).init(jax.random.key(0), x)


@pytest.mark.parametrize(
  "new, match",
  [
    (lambda s: s._replace(step=s.step.astype(jnp.float32)), "'step': types: int32 != float32"),
    (lambda s: s._replace(keys=s.keys[:2]), r"'keys': shapes: \(3, 2\) != \(2, 2\)"),
    (lambda s: s._replace(step=jnp.asarray(0)), r"carry\.step came in as int32\[\] .* ~int32\[\]"),
    (lambda s: tuple(s), "tree structs"),
  ],
)
def test_check_carry_kept_names_the_cell_and_the_leaf(new, match):
  state = kv.init_state(num_slots=3, key_size=2, value_size=1)
  _carry.check_carry_kept("KVCell", state, state)
  with pytest.raises(TypeError, match="KVCell must return") as error:
    _carry.check_carry_kept("KVCell", state, new(state))
  assert error.match(match)


# ------------------------------------------------------------------ pure state ops


def _ntm_step(s):
  raw_r = jnp.zeros((2, ntm.head_param_size(3)))
  raw_w = jnp.zeros((1, ntm.head_param_size(3, write=True)))
  return ntm.step(s, ntm.head_params(raw_r, 3), ntm.head_params(raw_w, 3, write=True))


# (family, update): init(dtype) -> state and update(state) -> state. Inputs are float32
# whatever the state's dtype: an update casts them to the state's dtype.
STATE_UPDATES = {
  "attention.write": (
    lambda dt: attention.init_state(5, 3, 2, dt),
    lambda s: attention.write(s, jnp.ones(3), jnp.ones(2)),
  ),
  "attention.reset": (
    lambda dt: attention.init_state(5, 3, 2, dt),
    lambda s: attention.reset(s, jnp.ones(5, bool)),
  ),
  "kv.write": (
    lambda dt: kv.init_state(5, 3, 2, dt),
    lambda s: kv.write(s, jnp.ones(3), jnp.ones(2), "least_used", 0.5),
  ),
  "kv.write_batch": (
    lambda dt: kv.init_state(5, 3, 2, dt),
    lambda s: kv.write_batch(s, jnp.ones((4, 3)), jnp.ones((4, 2))),
  ),
  "kv.read_and_touch": (
    lambda dt: kv.init_state(5, 3, 2, dt),
    lambda s: kv.read_and_touch(s, jnp.ones(3), 2)[0],
  ),
  "kv.reset": (lambda dt: kv.init_state(5, 3, 2, dt), lambda s: kv.reset(s, jnp.ones(5, bool))),
  "matrix.write(int)": (
    lambda dt: matrix.init_state(4, 3, dt),
    lambda s: matrix.write(s, jnp.ones(3), jnp.array(2), 0.5),
  ),
  "matrix.write(weights)": (
    lambda dt: matrix.init_state(4, 3, dt),
    lambda s: matrix.write(s, jnp.ones(3), jnp.ones(4) / 4, 0.5),
  ),
  "holographic.write": (
    lambda dt: holographic.init_state(16, dt),
    lambda s: holographic.write(s, jnp.ones(16), jnp.ones(16)),
  ),
  "gated.write": (lambda dt: gated.init_state(5, 3, dt), lambda s: gated.write(s, jnp.ones(3))),
  "gated.step": (
    lambda dt: gated.init_state(5, 3, dt),
    lambda s: gated.step(s, jnp.ones(3, s.slots.dtype), jnp.ones(3, s.slots.dtype))[0],
  ),
  "persistent.write": (
    lambda dt: persistent.init_state(4, 2, 3, dt),
    lambda s: persistent.write(s, jnp.ones((2, 3)), jnp.ones((2, 3))),
  ),
  "ntm.step": (lambda dt: ntm.init_state(6, 3, 2, 1, dtype=dt), _ntm_step),
  "ntm.write": (
    lambda dt: ntm.init_state(6, 3, 2, 1, controller_size=4, dtype=dt),
    lambda s: ntm.write(s, jnp.ones((1, 6)) / 6, jnp.ones((1, 3)) / 2, jnp.ones((1, 3))),
  ),
  "ntm.reset": (lambda dt: ntm.init_state(6, 3, 2, 1, controller_size=4, dtype=dt), ntm.reset),
  "matrix.reset": (lambda dt: matrix.init_state(4, 3, dt), lambda s: matrix.reset(s)),
  "holographic.reset": (lambda dt: holographic.init_state(16, dt), holographic.reset),
  "gated.reset": (lambda dt: gated.init_state(5, 3, dt), gated.reset),
  "persistent.reset": (lambda dt: persistent.init_state(4, 2, 3, dt), persistent.reset),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("op", sorted(STATE_UPDATES))
def test_eval_shape_of_update_is_state(op, dtype):
  init, update = STATE_UPDATES[op]
  state = init(dtype)
  out = jax.eval_shape(update, state)
  assert jax.tree.structure(out) == jax.tree.structure(state)
  spec = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert spec(out) == spec(state)


# (family): (init() -> single state, make(rng, batch) -> per-example inputs [*B, ...],
# run(state, *inputs) -> any pytree). run is the single-example op, vmapped per axis.
VMAPPED = {
  "attention": (
    lambda: attention.init_state(4, 3, 2),
    lambda rng, b: (rng.normal(size=b + (3,)), rng.normal(size=b + (2,))),
    lambda s, k, v: (lambda s2: (s2, attention.read(s2, k)))(attention.write(s, k, v)),
  ),
  "kv": (
    lambda: kv.init_state(4, 3, 2),
    lambda rng, b: (rng.normal(size=b + (5, 3)), rng.normal(size=b + (5, 2))),
    lambda s, k, v: kv.read_and_touch(kv.write_batch(s, k, v, policy="lru"), k[0], 2),
  ),
  "matrix": (
    lambda: matrix.init_state(4, 2),
    lambda rng, b: (rng.normal(size=b + (2,)), rng.integers(0, 4, size=b).astype(np.int32)),
    lambda s, v, a: (lambda s2: (s2, matrix.read_by_content(s2, v)))(matrix.write(s, v, a)),
  ),
  "holographic": (
    lambda: holographic.init_state(8),
    lambda rng, b: (rng.normal(size=b + (8,)), rng.normal(size=b + (8,))),
    lambda s, k, v: (lambda s2: (s2, holographic.read(s2, k)))(holographic.write(s, k, v)),
  ),
  "gated": (
    lambda: gated.init_state(3, 4),
    lambda rng, b: (rng.normal(size=b + (2, 4)), rng.uniform(size=b + (4,))),
    lambda s, h, g: gated.step(gated.step(s, h[0], g)[0], h[1], g),
  ),
  "persistent": (
    lambda: persistent.init_state(3, 2, 2),
    lambda rng, b: (rng.normal(size=b + (2, 2)), rng.normal(size=b + (2, 1, 2))),
    lambda s, k, p: (lambda s2: (s2, persistent.read(s2, k, p, p)))(persistent.write(s, k, k)),
  ),
}


@pytest.mark.parametrize("batch", [(3,), (2, 3)])
@pytest.mark.parametrize("family", sorted(VMAPPED))
def test_vmap_over_batch_axes_equals_each_example(family, batch):
  init, make, run = VMAPPED[family]
  rng = np.random.default_rng(9)
  inputs = [jnp.asarray(a) for a in make(rng, batch)]
  inputs = [a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in inputs]
  single = init()
  state = _carry.broadcast_state(single, batch)
  out = jax.jit(_carry.vmap_batch(run, len(batch)))(state, *inputs)
  run1 = jax.jit(run)
  want_shapes = jax.tree.map(
    lambda a: batch + a.shape,
    jax.eval_shape(run1, single, *[a.reshape((-1,) + a.shape[len(batch) :])[0] for a in inputs]),
  )
  assert jax.tree.map(jnp.shape, out) == want_shapes
  flat = lambda a: a.reshape((-1,) + a.shape[len(batch) :])
  for i in range(int(np.prod(batch, dtype=int))):
    want = run1(single, *(flat(a)[i] for a in inputs))
    chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: flat(a)[i], out), want, atol=1e-6)
