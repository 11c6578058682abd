"""The carry protocol shared by the memory cells: nn.RNN, nn.scan, NNX bridge, no retrace,
compile size independent of T, an 8-device sharded run equal to the unsharded one, and the
scan carry rule (a step returns the carry's structure, shapes and dtypes) for every cell."""

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

F = 5  # x_t has 3 features, y_t 2

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
}

# Every memory cell (CELLS: the cells whose input is x_t ++ y_t, which the tests above use).
EVERY_CELL = {
  **CELLS,
  "gated": lambda: gated.GatedMemoryCell(num_slots=3),
  "holographic": lambda: holographic.HolographicCell(dim=4),
  "ntm": lambda: ntm.NTMCell(output_size=2, num_slots=4, slot_size=3, controller_size=4),
  "persistent": lambda: persistent.PersistentMemoryCell(num_heads=1, num_persistent=2, window=3),
}


def _inputs(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _step_loop(cell, params, x):
  """Reference: apply the cell one step at a time in a Python loop over x [B, T, F]."""
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  apply = jax.jit(cell.apply)
  ys, carries = [], []
  for t in range(x.shape[1]):
    carry, y = apply({"params": params}, carry, x[:, t])
    ys.append(y)
    carries.append(carry)
  return carries, jnp.stack(ys, axis=1)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_rnn_return_carry_equals_step_loop(name):
  cell = CELLS[name]()
  x = _inputs((3, 6, F))
  rnn = nn.RNN(cell, return_carry=True)
  params = rnn.init(jax.random.key(0), x)["params"]
  apply = jax.jit(rnn.apply)
  carry, y = apply({"params": params}, x)
  carries, want_y = _step_loop(cell, params["cell"], x)
  chex.assert_trees_all_close(carry, carries[-1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
  init = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  chex.assert_trees_all_equal_shapes_and_dtypes(carry, init)
  # seq_lengths: the returned carry is the memory after each sequence's own length.
  lengths = jnp.array([6, 2, 4])
  carry_l, _ = apply({"params": params}, x, seq_lengths=lengths)
  for b, n in enumerate(lengths.tolist()):
    chex.assert_trees_all_close(
      jax.tree.map(lambda a, b=b: a[b], carry_l),
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
  scanned = _Scanned(CELLS[name])
  params = scanned.init(jax.random.key(0), x)["params"]
  carry, y = scanned.apply({"params": params}, x)
  rnn_carry, rnn_y = nn.RNN(CELLS[name](), return_carry=True).apply({"params": params}, x)
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


@pytest.mark.parametrize("name", sorted(CELLS))
def test_no_retrace_across_steps(name):
  cell = CELLS[name]()
  x = _inputs((2, 4, F), seed=3)
  params = cell.init(
    jax.random.key(0), cell.initialize_carry(jax.random.key(0), x[:, 0].shape), x[:, 0]
  )

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(carry, x_t):
    return cell.apply(params, carry, x_t)

  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  for t in range(x.shape[1]):  # the carry keeps its structure, shapes and dtypes
    carry, _ = step(carry, x[:, t])
  chex.clear_trace_counter()


@pytest.mark.parametrize("name", sorted(CELLS))
def test_compiled_size_does_not_grow_with_length(name):
  rnn = nn.RNN(CELLS[name](), return_carry=True)
  params = rnn.init(jax.random.key(0), jnp.ones((2, 1, F)))

  def hlo_size(length):
    x = jax.ShapeDtypeStruct((2, length, F), jnp.float32)
    return len(jax.jit(rnn.apply).lower(params, x).as_text())

  short, long = hlo_size(10), hlo_size(1000)
  assert long < 1.02 * short, (short, long)  # one scan body, not 1000 unrolled steps


@pytest.mark.parametrize("name", sorted(CELLS))
def test_sharded_batch_equals_unsharded(name):
  assert len(jax.devices()) >= 8
  mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
  rnn = nn.RNN(CELLS[name](), return_carry=True, time_major=True)
  x = _inputs((6, 8, F), seed=4)  # time-major [T, B, F]; B is sharded, T is scanned
  params = rnn.init(jax.random.key(0), x)
  apply = jax.jit(rnn.apply)
  want_carry, want_y = apply(params, x)
  x_sharded = jax.device_put(x, NamedSharding(mesh, P(None, "batch")))
  params_rep = jax.device_put(params, NamedSharding(mesh, P()))
  carry, y = apply(params_rep, x_sharded)
  assert len(y.sharding.device_set) == 8
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(carry, want_carry, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_bad_inputs_name_the_argument(name):
  cell = CELLS[name]()
  x = jnp.ones((2, F))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  params = cell.init(jax.random.key(0), carry, x)
  with pytest.raises(TypeError, match="x must have a floating dtype"):
    cell.apply(params, carry, jnp.ones((2, F), jnp.int32))
  with pytest.raises(ValueError, match="input_size=3"):
    cell.apply(params, cell.initialize_carry(jax.random.key(0), (2, 2)), jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="carry"):
    cell.apply(params, cell.initialize_carry(jax.random.key(0), (3, F)), x)
  with pytest.raises(ValueError, match="input_size=3"):
    nn.RNN(cell).init(jax.random.key(0), jnp.ones((2, 4, 2)))


def test_kv_cell_rejects_k_above_capacity_and_unknown_policy():
  x = jnp.ones((2, 3, F))
  with pytest.raises(ValueError, match="k=5"):
    nn.RNN(kv.KVCell(num_slots=4, key_size=3, value_size=2, k=5)).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="policy='lfu'"):
    nn.RNN(kv.KVCell(num_slots=4, key_size=3, value_size=2, policy="lfu")).init(
      jax.random.key(0), x
    )
  with pytest.raises(ValueError, match="addressing='soft'"):
    nn.RNN(matrix.MatrixMemoryCell(num_slots=4, slot_size=3, addressing="soft")).init(
      jax.random.key(0), x
    )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_long_sequence_stays_finite(name):
  rnn = nn.RNN(CELLS[name]())
  x = _inputs((2, 400, F), seed=5) * 10.0
  params = rnn.init(jax.random.key(0), x[:, :1])
  y = jax.jit(rnn.apply)(params, x)
  assert y.shape == (2, 400, 2 if name != "matrix" else 3)
  assert bool(jnp.isfinite(y).all())


@pytest.mark.parametrize("name", sorted(CELLS))
def test_bfloat16_memory_keeps_its_dtype(name):
  cell = CELLS[name]().clone(dtype=jnp.bfloat16)
  x = _inputs((2, 4, F), seed=6).astype(jnp.bfloat16)
  (carry, y), _ = nn.RNN(cell, return_carry=True).init_with_output(jax.random.key(0), x)
  init = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  chex.assert_trees_all_equal_shapes_and_dtypes(carry, init)
  assert jax.tree.leaves(init)[0].dtype == jnp.bfloat16 and y.dtype == jnp.bfloat16
  assert bool(jnp.isfinite(y.astype(jnp.float32)).all())


def test_every_memory_cell_is_in_the_table():
  cells = set()
  for info in pkgutil.iter_modules(memjax.memory.__path__, "memjax.memory."):
    module = importlib.import_module(info.name)
    cells |= {
      obj
      for obj in vars(module).values()
      if isinstance(obj, type) and issubclass(obj, nn.RNNCellBase) and obj.__module__ == info.name
    }
  assert cells == {type(make()) for make in EVERY_CELL.values()}


def _weak_types(tree):
  return [jax.typeof(a).weak_type for a in jax.tree.leaves(tree)]


@pytest.mark.parametrize(
  "batch, dtype, x64",
  [((), jnp.float32, False), ((2, 3), jnp.float32, False), ((3,), jnp.bfloat16, False)]
  + [((3,), jnp.float32, True)],  # 64-bit mode: an int64 / float64 leaf would show
)
@pytest.mark.parametrize("name", sorted(EVERY_CELL))
def test_call_returns_a_carry_typed_like_the_one_it_got(name, batch, dtype, x64):
  with jax.enable_x64(x64):
    cell = EVERY_CELL[name]().clone(dtype=dtype)
    x = _inputs(batch + (F,), seed=7).astype(dtype)
    carry = cell.initialize_carry(jax.random.key(0), x.shape)
    params = cell.init(jax.random.key(1), carry, x)
    for apply in (cell.apply, jax.jit(cell.apply)):
      new, _ = apply(params, carry, x)
      chex.assert_trees_all_equal_structs(new, carry)
      chex.assert_trees_all_equal_shapes_and_dtypes(new, carry)
      assert _weak_types(new) == _weak_types(carry)


@pytest.mark.parametrize("name", sorted(EVERY_CELL))
def test_call_checks_the_carry_rule_with_its_name(name, monkeypatch):
  calls = []
  check = _carry.check_carry_kept
  monkeypatch.setattr(_carry, "check_carry_kept", lambda *a: calls.append(a) or check(*a))
  cell = EVERY_CELL[name]()
  x = jnp.ones((2, F))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  cell.init(jax.random.key(1), carry, x)
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
