"""memjax.meta.steps on memjax.train: many meta-steps per dispatch, tasks split over
devices, and meta-learning a model that reads a memjax memory."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memjax import meta, train
from memjax.data import sinusoid
from memjax.memory import attention
from tests.meta._quadratic import apply_linear, make_tasks, mse


def _sample_linear(key, context=None, num_tasks=8):
  kx, kw, kq = jax.random.split(key, 3)
  w = jax.random.normal(kw, (num_tasks, 4))
  x = jax.random.normal(kx, (num_tasks, 6, 4))
  xq = jax.random.normal(kq, (num_tasks, 5, 4))
  return meta.Tasks(x, jnp.einsum("tkd,td->tk", x, w), xq, jnp.einsum("tkd,td->tk", xq, w))


def test_scanned_meta_steps_equal_a_python_loop():
  learner = meta.maml(apply_linear, mse, inner_lr=0.05, num_inner_steps=2)
  opt = optax.adam(0.01)
  state = meta.create_state(learner, {"w": jnp.zeros(4)}, opt, jax.random.key(3))
  steps = meta.make_meta_train_steps(learner, opt, _sample_linear, steps_per_call=3)
  # By hand: the key of step i is fold_in(key, i) (memjax.train's rule), then grad + adam.
  mp, opt_state = learner.init({"w": jnp.zeros(4)}), opt.init(learner.init({"w": jnp.zeros(4)}))
  losses = []
  for i in range(3):
    tasks = _sample_linear(jax.random.fold_in(jax.random.key(3), i))
    (loss, _), g = jax.jit(jax.value_and_grad(learner.loss, has_aux=True))(mp, tasks)
    updates, opt_state = opt.update(g, opt_state, mp)
    mp = optax.apply_updates(mp, updates)
    losses.append(float(loss))
  state, metrics = steps(state)
  assert int(state.step) == 3 and metrics["query_loss"].shape == (3,)
  np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5)
  np.testing.assert_allclose(state.params.params["w"], mp.params["w"], rtol=1e-5, atol=1e-7)


def test_tasks_from_scanned_inputs():
  learner = meta.fomaml(apply_linear, mse, inner_lr=0.05)
  opt = optax.sgd(0.1)
  tasks = make_tasks(num_tasks=4, dtype=np.float32)
  xs = jax.tree.map(lambda a: jnp.stack([a, a]), tasks)  # 2 steps of the same 4 tasks
  params = {"w": jnp.zeros(4)}
  state = meta.create_state(learner, params, opt, jax.random.key(0))
  state, metrics = meta.make_meta_train_steps(learner, opt, None)(state, xs)
  np.testing.assert_array_equal(params["w"], 0.0)  # the state's donation left the caller's
  g = jax.grad(lambda mp: learner.loss(mp, tasks)[0])(learner.init({"w": jnp.zeros(4)}))
  np.testing.assert_allclose(
    metrics["loss"][0], learner.loss(learner.init({"w": jnp.zeros(4)}), tasks)[0], rtol=1e-6
  )
  assert metrics["loss"][1] < metrics["loss"][0]
  assert not np.allclose(state.params.params["w"], -0.1 * g.params["w"])  # two steps taken


def test_eight_devices_give_the_one_device_meta_gradient():
  # Outer SGD with rate 1 from zero: the params after one step are minus the meta-gradient.
  assert jax.device_count() == 8
  learner = meta.meta_sgd(apply_linear, mse, inner_lr=0.05, num_inner_steps=2)
  seen = []

  def loss(mp, tasks, step_weights=None):
    jax.debug.inspect_array_sharding(tasks.support_x, callback=seen.append)
    return learner.loss(mp, tasks, step_weights)

  spy = learner._replace(loss=loss)
  opt = optax.sgd(1.0)
  sample = lambda key, context: _sample_linear(key, num_tasks=16)
  out = {}
  for name, mesh in (("one", None), ("eight", train.data_mesh(8))):
    state = meta.create_state(spy, {"w": jnp.zeros(4)}, opt, jax.random.key(5))
    state, _ = meta.make_meta_train_steps(spy, opt, sample, steps_per_call=1, mesh=mesh)(state)
    out[name] = jax.device_get(state.params)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), out["one"], out["eight"]
  )
  assert np.abs(out["one"].params["w"]).max() > 1e-3  # a real gradient
  # The 16 tasks were split 2 per device on the 8-device mesh.
  assert len(seen[-1].device_set) == 8
  assert seen[-1].shard_shape((16, 6, 4)) == (2, 6, 4)


def test_tasks_that_do_not_divide_over_the_devices_are_refused():
  learner = meta.maml(apply_linear, mse)
  opt = optax.sgd(1.0)
  state = meta.create_state(learner, {"w": jnp.zeros(4)}, opt, jax.random.key(0))
  steps = meta.make_meta_train_steps(
    learner,
    opt,
    lambda k, c: _sample_linear(k, num_tasks=12),
    steps_per_call=1,
    mesh=train.data_mesh(8),
  )
  with pytest.raises(ValueError, match="12, which does not divide over the 8 devices"):
    steps(state)


class _MemoryRegressor(nn.Module):
  """Reads a learned attention memory (memjax.memory.attention) with a query from x."""

  num_slots: int = 8

  @nn.compact
  def __call__(self, x):  # x [K, 1]
    keys = self.param("slot_keys", nn.initializers.normal(1.0), (self.num_slots, 16))
    values = self.param("slot_values", nn.initializers.normal(1.0), (self.num_slots, 16))
    write = lambda state, kv: (attention.write(state, *kv), None)
    state, _ = jax.lax.scan(write, attention.init_state(self.num_slots, 16, 16), (keys, values))
    h = nn.relu(nn.Dense(32)(x))
    read, _ = attention.read(state, nn.Dense(16)(h))  # [K, 16]
    h = nn.relu(nn.Dense(32)(jnp.concatenate([h, read], axis=-1)))
    return nn.Dense(1, name="head")(h)


def test_meta_learning_a_model_that_reads_a_memjax_memory():
  model = _MemoryRegressor()
  params = model.init(jax.random.key(0), jnp.zeros((10, 1)))["params"]
  learner = meta.maml(lambda p, x: model.apply({"params": p}, x), meta.mse, inner_lr=0.01)
  opt = optax.adam(3e-3)
  state = meta.create_state(learner, params, opt, jax.random.key(1))
  steps = meta.make_meta_train_steps(
    learner, opt, lambda k, c: sinusoid.sample_tasks(k, 8, 10), steps_per_call=200
  )
  held_out = sinusoid.sample_tasks(jax.random.key(99), 200, 10, 50)
  before = meta.evaluate(learner, state.params, held_out)["loss"]["mean"]
  for _ in range(2):
    state, metrics = steps(state)
  after = meta.evaluate(learner, state.params, held_out)["loss"]["mean"]
  # The memory is used: its slots got meta-gradients and moved.
  moved = np.abs(state.params.params["slot_values"] - params["slot_values"]).max()
  assert moved > 1e-3
  assert after < 0.6 * before, (before, after)


def test_context_carries_the_data_and_the_multi_step_weights():
  learner = meta.maml(apply_linear, mse, inner_lr=0.05, num_inner_steps=2, multi_step_loss=True)
  opt = optax.sgd(0.0)
  tasks = make_tasks(num_tasks=4, dtype=np.float32)
  steps = meta.make_meta_train_steps(
    learner, opt, lambda key, context: context["tasks"], steps_per_call=1
  )
  mp = learner.init({"w": jnp.ones(4)})
  for weights in ([1.0, 0.0], [0.0, 1.0]):
    state = meta.create_state(learner, {"w": jnp.ones(4)}, opt, jax.random.key(0))
    context = {"tasks": tasks, "step_weights": jnp.asarray(weights)}
    _, metrics = steps(state, None, context)
    expect = learner.loss(mp, tasks, jnp.asarray(weights))[0]
    np.testing.assert_allclose(metrics["loss"][0], expect, rtol=1e-6)
  # the two weightings give different objectives (after 1 step vs after 2 steps)
  assert learner.loss(mp, tasks, jnp.asarray([1.0, 0.0]))[0] != pytest.approx(
    learner.loss(mp, tasks, jnp.asarray([0.0, 1.0]))[0]
  )
