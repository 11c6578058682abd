"""memjax.meta.algorithms: meta-gradients against finite differences, an explicit unrolled
computation and the closed forms on a quadratic loss (numpy, float64)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memjax import meta
from tests.meta._quadratic import apply_linear, make_tasks, mse, np_grad, np_hessian, np_sgd

LR, STEPS = 0.07, 2


def _theta(dim=4):
  return np.linspace(-0.5, 0.8, dim)


def _grad(learner, meta_params, tasks, **kw):
  """The meta-gradient, jitted (test_jit_and_no_jit_agree covers the eager path)."""
  return jax.jit(jax.grad(lambda mp: learner.loss(mp, tasks, **kw)[0]))(meta_params)


# ------------------------------------------------------------- closed forms on a quadratic


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_meta_gradient_closed_form_on_a_quadratic(algorithm):
  tasks = make_tasks()
  theta = _theta()
  with jax.enable_x64(True):
    learner = meta.make_learner(algorithm, apply_linear, mse, inner_lr=LR, num_inner_steps=STEPS)
    mp = learner.init({"w": jnp.asarray(theta)})
    loss, metrics = learner.loss(mp, tasks)
    grad = np.asarray(_grad(learner, mp, tasks).params["w"])
  expect, query_losses = [], []
  for sx, sy, qx, qy in zip(*tasks, strict=True):
    phi = np_sgd(theta, sx, sy, LR, STEPS)
    query_losses.append(np.mean((qx @ phi - qy) ** 2))
    g_query = np_grad(phi, qx, qy)
    jacobian = np.linalg.matrix_power(np.eye(4) - LR * np_hessian(sx), STEPS)  # d phi / d theta
    expect.append(
      {"maml": jacobian.T @ g_query, "fomaml": g_query, "reptile": theta - phi}[algorithm]
    )
  np.testing.assert_allclose(grad, np.mean(expect, axis=0), rtol=1e-10, atol=1e-12)
  # Every algorithm's loss value is the post-adaptation query loss.
  assert float(loss) == pytest.approx(np.mean(query_losses), rel=1e-10)
  assert float(metrics["query_loss"]) == pytest.approx(np.mean(query_losses), rel=1e-10)


def test_meta_sgd_rates_get_their_closed_form_gradient():
  # phi = theta - r * g_s(theta): dL_q/dr = -g_s * g_q(phi), dL_q/dtheta = (I - H_s diag r) g_q.
  tasks = make_tasks(seed=3, num_tasks=2)
  theta = _theta()
  with jax.enable_x64(True):
    learner = meta.meta_sgd(apply_linear, mse, inner_lr=LR, num_inner_steps=1)
    mp = learner.init({"w": jnp.asarray(theta)})
    rates = np.array([0.02, 0.05, 0.08, 0.11])
    mp = mp._replace(rates={"w": jnp.asarray(rates[None])})
    grad = _grad(learner, mp, tasks)
  d_theta, d_rates = [], []
  for sx, sy, qx, qy in zip(*tasks, strict=True):
    g_s = np_grad(theta, sx, sy)
    g_q = np_grad(theta - rates * g_s, qx, qy)
    d_rates.append(-g_s * g_q)
    d_theta.append((np.eye(4) - np_hessian(sx) * rates[None, :]) @ g_q)
  assert grad.rates["w"].shape == (1, 4)
  np.testing.assert_allclose(grad.rates["w"][0], np.mean(d_rates, axis=0), rtol=1e-10)
  np.testing.assert_allclose(grad.params["w"], np.mean(d_theta, axis=0), rtol=1e-10)


def test_multi_step_loss_value_weights_every_step():
  tasks = make_tasks(seed=4, num_tasks=2)
  theta = _theta()
  weights = np.array([0.2, 0.3, 0.5])
  with jax.enable_x64(True):
    learner = meta.maml(apply_linear, mse, inner_lr=LR, num_inner_steps=3, multi_step_loss=True)
    loss, metrics = learner.loss(learner.init({"w": jnp.asarray(theta)}), tasks, weights)
  expect, last = [], []
  for sx, sy, qx, qy in zip(*tasks, strict=True):
    losses = [np.mean((qx @ np_sgd(theta, sx, sy, LR, s) - qy) ** 2) for s in (1, 2, 3)]
    expect.append(np.dot(weights, losses))
    last.append(losses[-1])
  assert float(loss) == pytest.approx(np.mean(expect), rel=1e-10)
  assert float(metrics["query_loss"]) == pytest.approx(np.mean(last), rel=1e-10)


def test_multi_step_weights_anneal_to_the_last_step():
  np.testing.assert_allclose(meta.multi_step_weights(4, 0.0), [0.25] * 4)
  end = np.asarray(meta.multi_step_weights(4, 1.0))
  np.testing.assert_allclose(end[:3], 0.03 / 4)
  assert end.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(meta.multi_step_weights(1, 0.5), [1.0])


# ------------------------------------------------------ a nonlinear model, second order


class _Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(3, name="body")(x))
    return nn.Dense(1, name="head")(h)


def _mlp_setup(num_tasks=3, dtype=jnp.float64):
  net = _Mlp()
  rng = np.random.default_rng(7)
  tasks = meta.Tasks(
    rng.uniform(-2, 2, (num_tasks, 5, 1)),
    rng.standard_normal((num_tasks, 5, 1)),
    rng.uniform(-2, 2, (num_tasks, 4, 1)),
    rng.standard_normal((num_tasks, 4, 1)),
  )
  tasks = meta.Tasks(*(jnp.asarray(a, dtype) for a in tasks))
  params = net.init(jax.random.key(0), jnp.zeros((1, 1), dtype))["params"]
  params = jax.tree.map(lambda p: jnp.asarray(p, dtype) + 0.3, params)
  return (lambda p, x: net.apply({"params": p}, x)), params, tasks


def _unrolled_loss(apply_fn, tasks, adapted_names=None, lr=LR, steps=STEPS):
  """MAML's objective written out: Python loops over tasks and SGD steps, no scan/vmap."""

  def loss(params):
    total = 0.0
    for t in range(tasks.support_x.shape[0]):
      phi = params
      for _ in range(steps):
        g = jax.grad(lambda p, t=t: mse(apply_fn(p, tasks.support_x[t]), tasks.support_y[t]))(phi)
        phi = {
          name: jax.tree.map(lambda p, d: p - lr * d, phi[name], g[name])
          if adapted_names is None or name in adapted_names
          else phi[name]
          for name in phi
        }
      total = total + mse(apply_fn(phi, tasks.query_x[t]), tasks.query_y[t])
    return total / tasks.support_x.shape[0]

  return loss


def test_maml_meta_gradient_against_finite_differences_and_unrolled():
  with jax.enable_x64(True):
    apply_fn, params, tasks = _mlp_setup()
    learner = meta.maml(apply_fn, mse, inner_lr=LR, num_inner_steps=STEPS)
    ours = _grad(learner, learner.init(params), tasks).params
    unrolled = jax.jit(jax.grad(_unrolled_loss(apply_fn, tasks)))(params)
    first_order = _grad(
      meta.fomaml(apply_fn, mse, inner_lr=LR, num_inner_steps=STEPS), learner.init(params), tasks
    ).params
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    objective = jax.jit(lambda v: learner.loss(learner.init(unravel(v)), tasks)[0])
    eps = 1e-5
    numeric = np.array(
      [
        (float(objective(flat.at[i].add(eps))) - float(objective(flat.at[i].add(-eps)))) / (2 * eps)
        for i in range(flat.size)
      ]
    )
    ours_flat = np.asarray(jax.flatten_util.ravel_pytree(ours)[0])
    fo_flat = np.asarray(jax.flatten_util.ravel_pytree(first_order)[0])
  np.testing.assert_allclose(ours_flat, numeric, rtol=1e-6, atol=1e-9)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), ours, unrolled
  )
  # The second-order terms matter here: first-order MAML is measurably different.
  assert np.max(np.abs(fo_flat - ours_flat)) > 1e-3


def test_anil_adapts_only_the_head_and_differentiates_through_it():
  with jax.enable_x64(True):
    apply_fn, params, tasks = _mlp_setup()
    learner = meta.anil(apply_fn, mse, head="head", inner_lr=LR, num_inner_steps=STEPS)
    mp = learner.init(params)
    adapted, _ = learner.adapt(mp, tasks.support_x[0], tasks.support_y[0])
    ours = _grad(learner, mp, tasks).params
    unrolled = jax.jit(jax.grad(_unrolled_loss(apply_fn, tasks, adapted_names={"head"})))(params)
  jax.tree.map(np.testing.assert_array_equal, adapted["body"], params["body"])
  for name in ("kernel", "bias"):
    assert not np.allclose(adapted["head"][name], params["head"][name])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), ours, unrolled
  )


def test_maml_plus_plus_per_step_rates_against_unrolled():
  # Per-layer per-step rates and the multi-step loss, written out by hand.
  with jax.enable_x64(True):
    apply_fn, params, tasks = _mlp_setup(num_tasks=2)
    learner = meta.maml_plus_plus(apply_fn, mse, inner_lr=LR, num_inner_steps=2)
    mp = learner.init(params)
    mp = mp._replace(rates=jax.tree.map(lambda r: r * jnp.asarray([1.0, 2.5]), mp.rates))
    weights = jnp.asarray([0.4, 0.6])
    ours = _grad(learner, mp, tasks, step_weights=weights)

    def unrolled(mp):
      total = 0.0
      for t in range(2):
        phi = mp.params
        for s in range(2):
          support = (tasks.support_x[t], tasks.support_y[t])
          g = jax.grad(lambda p, xy=support: mse(apply_fn(p, xy[0]), xy[1]))(phi)
          phi = jax.tree.map(lambda p, d, r, s=s: p - r[s] * d, phi, g, mp.rates)
          total = total + weights[s] * mse(apply_fn(phi, tasks.query_x[t]), tasks.query_y[t])
      return total / 2

    expect = jax.jit(jax.grad(unrolled))(mp)
  assert jax.tree.map(jnp.shape, ours.rates) == jax.tree.map(lambda _: (2,), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13), ours, expect)


def test_jit_and_no_jit_agree():
  apply_fn, params, tasks = _mlp_setup(num_tasks=2, dtype=jnp.float32)
  learner = meta.meta_sgd(apply_fn, mse, inner_lr=LR, num_inner_steps=1)
  mp = learner.init(params)
  grad_fn = jax.value_and_grad(lambda mp, t: learner.loss(mp, t)[0])
  eager = grad_fn(mp, tasks)
  jitted = jax.jit(grad_fn)(mp, tasks)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), eager, jitted)


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_tasks_one_after_another_or_in_chunks_equal_one_vmap(algorithm):
  tasks = make_tasks(num_tasks=5)
  with jax.enable_x64(True):
    out = {}
    for per_vmap, unroll in ((None, False), (1, False), (2, False), (1, True), (2, True)):
      learner = meta.make_learner(
        algorithm,
        apply_linear,
        mse,
        tasks_per_vmap=per_vmap,
        unroll_tasks=unroll,
        unroll_inner=unroll,
        num_inner_steps=2,
      )
      mp = learner.init({"w": jnp.asarray(_theta())})
      loss = functools.partial(learner.loss, tasks=tasks)
      out[per_vmap, unroll] = jax.jit(jax.value_and_grad(loss, has_aux=True))(mp)
  for value in out.values():
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), value, out[None, False])
  with pytest.raises(ValueError, match="tasks_per_vmap=0 must be None or >= 1"):
    meta.maml(apply_linear, mse, tasks_per_vmap=0)


def test_inner_optimizer_is_any_optax_transformation():
  # A momentum inner optimizer: the learner's adapted params equal optax run by hand.
  tasks = make_tasks(dtype=np.float32)
  opt = optax.sgd(0.05, momentum=0.9)
  learner = meta.maml(apply_linear, mse, inner_optimizer=opt, num_inner_steps=3)
  mp = learner.init({"w": jnp.ones(4)})
  adapted, _ = learner.adapt(mp, tasks.support_x[0], tasks.support_y[0])
  p, s = {"w": jnp.ones(4)}, opt.init({"w": jnp.ones(4)})
  for _ in range(3):
    g = jax.grad(lambda p: mse(apply_linear(p, tasks.support_x[0]), tasks.support_y[0]))(p)
    u, s = opt.update(g, s, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(adapted["w"], p["w"], rtol=1e-6)


def test_bad_arguments_name_the_problem():
  learner = meta.maml(apply_linear, mse, num_inner_steps=2)
  mp = learner.init({"w": jnp.ones(4)})
  tasks = make_tasks(dtype=np.float32)
  with pytest.raises(ValueError, match=r"step_weights \(3,\) must be \[2\]"):
    learner.loss(mp, tasks, jnp.ones(3))
  with pytest.raises(ValueError, match="support_y.*different examples"):
    learner.loss(mp, tasks._replace(support_y=tasks.support_y[:, :2]))
  with pytest.raises(ValueError, match="different numbers of tasks"):
    learner.loss(mp, tasks._replace(query_x=tasks.query_x[:1], query_y=tasks.query_y[:1]))
  with pytest.raises(TypeError, match="must have a field 'support_x'"):
    learner.loss(mp, (1, 2))
  with pytest.raises(ValueError, match="unknown meta-learning algorithm 'mamll'"):
    meta.make_learner("mamll", apply_linear, mse)
  with pytest.raises(ValueError, match="per_step_rates needs learn_rates"):
    meta.maml(apply_linear, mse, per_step_rates=True)
  with pytest.raises(ValueError, match="num_inner_steps=0"):
    meta.maml(apply_linear, mse, num_inner_steps=0)
