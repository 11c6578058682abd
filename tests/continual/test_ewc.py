"""memjax.continual.ewc: the Fisher against per-example gradients written independently
(numpy closed forms for a softmax regression, a Python loop of jax.grad for an MLP), the
penalty against its per-task sum, positive once the parameters move and exactly 0 at the
anchor, the Optax transformation against the gradient of the penalty, jit vs no-jit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memjax import continual, train
from memjax.continual import ewc

D, C, B = 5, 4, 9


def _linear(params, x):
  return x @ params["w"] + params["b"][None]


def _data(seed=0):
  rng = np.random.default_rng(seed)
  params = {
    "w": rng.normal(size=(D, C)).astype(np.float32),
    "b": rng.normal(size=C).astype(np.float32),
  }
  x = rng.normal(size=(B, D)).astype(np.float32)
  y = rng.integers(0, C, size=B).astype(np.int32)
  return params, x, y


def _np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _np_fisher(params, x, y, kind, mask=None):
  """Softmax regression: d log p_c / dW = x (e_c - p)^T, d log p_c / db = e_c - p."""
  w, b = np.float64(params["w"]), np.float64(params["b"])
  classes = np.arange(C) if mask is None else np.flatnonzero(mask)
  fw, fb = np.zeros_like(w), np.zeros_like(b)
  for xi, yi in zip(np.float64(x), y, strict=True):
    p = np.zeros(C)
    p[classes] = _np_softmax((xi @ w + b)[classes])
    for c in classes:
      weight = p[c] if kind == "exact" else float(c == yi)
      e = np.eye(C)[c]
      fw += weight * np.outer(xi, e - p) ** 2
      fb += weight * (e - p) ** 2
  return {"w": fw / len(x), "b": fb / len(x)}


@pytest.mark.parametrize("kind", ["empirical", "exact"])
def test_classifier_fisher_matches_the_closed_form(kind):
  params, x, y = _data()
  got = jax.jit(lambda p: ewc.classifier_fisher(_linear, p, x, y, kind=kind, chunk_size=4))(params)
  expect = _np_fisher(params, x, y, kind)
  for name in ("w", "b"):
    np.testing.assert_allclose(got[name], expect[name], rtol=2e-5, atol=1e-7)


def test_classifier_fisher_over_a_class_mask():
  params, x, y = _data(1)
  mask = np.array([True, False, True, True])
  y = np.where(mask[y], y, 0)
  for kind in ("exact", "empirical"):
    got = ewc.classifier_fisher(_linear, params, x, y, kind=kind, class_mask=jnp.asarray(mask))
    expect = _np_fisher(params, x, y, kind, mask)
    for name in ("w", "b"):
      np.testing.assert_allclose(got[name], expect[name], rtol=2e-5, atol=1e-7)


def test_sampled_fisher_estimates_the_exact_one():
  params, x, _ = _data(2)
  exact = ewc.classifier_fisher(_linear, params, x, kind="exact")
  sampled = jax.jit(
    lambda p, k: ewc.classifier_fisher(_linear, p, x, kind="sampled", key=k, num_samples=4000)
  )(params, jax.random.key(0))
  for name in ("w", "b"):
    scale = np.abs(exact[name]).max()
    np.testing.assert_allclose(sampled[name], exact[name], atol=0.05 * scale)


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(C)(jnp.tanh(nn.Dense(6)(x)))


def test_fisher_diagonal_of_an_mlp_matches_a_loop_of_per_example_gradients():
  model = _MLP()
  _, x, y = _data(3)
  params = model.init(jax.random.key(0), x[:1])["params"]
  apply_fn = lambda p, xs: model.apply({"params": p}, xs)
  weights = np.linspace(0.5, 2.0, B).astype(np.float32)

  def log_prob(p, ex):
    xi, yi = ex
    return jax.nn.log_softmax(apply_fn(p, xi[None])[0])[yi]

  got = ewc.fisher_diagonal(log_prob, params, (x, y), weights=weights, chunk_size=4)  # pads 3
  # Independently: one jax.grad per example in a Python loop, squared and averaged.
  total = jax.tree.map(lambda p: np.zeros(p.shape), params)
  grad_one = jax.jit(jax.grad(log_prob))  # compiled once, called per example
  for i in range(B):
    g = grad_one(params, (x[i], y[i]))
    total = jax.tree.map(lambda t, gi, w=weights[i]: t + w * np.float64(gi) ** 2, total, g)
  expect = jax.tree.map(lambda t: t / weights.sum(), total)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), got, expect)


# ----------------------------------------------------------------------------- penalty


def _tree(rng, scale=1.0):
  return {
    "w": (scale * rng.normal(size=(3, 2))).astype(np.float32),
    "b": rng.normal(size=2).astype(np.float32),
  }


def _np_penalty(tasks, theta, strength):
  """sum over tasks of strength / 2 * sum F_t (theta - theta_t)^2, in float64."""
  total = 0.0
  for fisher, anchor in tasks:
    for k in theta:
      total += np.sum(np.float64(fisher[k]) * (np.float64(theta[k]) - np.float64(anchor[k])) ** 2)
  return 0.5 * strength * total


def test_penalty_is_zero_before_any_task_and_at_the_anchor_positive_once_moved():
  rng = np.random.default_rng(0)
  theta1, fisher1 = _tree(rng), jax.tree.map(np.abs, _tree(rng))
  state = ewc.init_state(theta1)
  assert float(ewc.ewc_penalty(state, _tree(rng), 5.0)) == 0.0  # no task yet
  state = ewc.consolidate(state, theta1, fisher1)
  assert float(ewc.ewc_penalty(state, theta1, 5.0)) == 0.0  # exactly, at the anchor
  moved = jax.tree.map(lambda t: t + 1e-2, theta1)
  penalty = float(ewc.ewc_penalty(state, moved, 5.0))
  assert penalty > 0.0
  np.testing.assert_allclose(penalty, _np_penalty([(fisher1, theta1)], moved, 5.0), rtol=1e-4)


def test_ewc_over_three_tasks_equals_the_sum_of_their_penalties():
  rng = np.random.default_rng(1)
  tasks = [(jax.tree.map(np.abs, _tree(rng)), _tree(rng)) for _ in range(3)]
  tasks[1][0]["b"][0] = 0.0  # a parameter one task does not care about
  state = ewc.init_state(tasks[0][1])
  consolidate = jax.jit(ewc.consolidate)
  for fisher, theta in tasks:
    state = consolidate(state, theta, fisher)
  assert int(state.num_tasks) == 3 and float(state.offset) > 0
  for _ in range(3):
    theta = _tree(rng)
    np.testing.assert_allclose(
      ewc.ewc_penalty(state, theta, 2.0), _np_penalty(tasks, theta, 2.0), rtol=1e-4
    )
    # The gradient of the penalty is the transformation's term.
    grad = jax.grad(lambda p: ewc.ewc_penalty(state, p, 2.0))(theta)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      grad,
      ewc.ewc_gradient(state, theta, 2.0),
    )


def test_online_ewc_decays_the_fisher_and_keeps_the_latest_anchor():
  rng = np.random.default_rng(2)
  tasks = [(jax.tree.map(np.abs, _tree(rng)), _tree(rng)) for _ in range(3)]
  state = ewc.init_state(tasks[0][1])
  for fisher, theta in tasks:
    state = ewc.consolidate(state, theta, fisher, decay=0.5)
  theta = _tree(rng)
  decayed = jax.tree.map(lambda a, b, c: 0.25 * a + 0.5 * b + c, *(f for f, _ in tasks))
  expect = _np_penalty([(decayed, tasks[-1][1])], theta, 3.0)
  np.testing.assert_allclose(ewc.ewc_penalty(state, theta, 3.0), expect, rtol=1e-5)
  assert float(ewc.ewc_penalty(state, tasks[-1][1], 3.0)) == 0.0


@pytest.mark.parametrize("jit", [False, True])
def test_transformation_adds_the_penalty_gradient(jit):
  rng = np.random.default_rng(3)
  theta0, fisher = _tree(rng), jax.tree.map(np.abs, _tree(rng))
  data = rng.normal(size=(4, 3)).astype(np.float32)

  def loss(p):
    return jnp.mean((data @ p["w"] + p["b"][None]) ** 2)

  opt = optax.chain(continual.add_ewc_penalty(7.0), optax.sgd(0.1))
  opt_state = continual.consolidate_opt_state(opt.init(theta0), theta0, fisher)
  ewc_state = ewc.find_state(opt_state)
  params = _tree(rng)
  update = jax.jit(opt.update) if jit else opt.update
  updates, _ = update(jax.grad(loss)(params), opt_state, params)
  expect = jax.grad(lambda p: loss(p) + ewc.ewc_penalty(ewc_state, p, 7.0))(params)
  jax.tree.map(
    lambda u, g: np.testing.assert_allclose(u, -0.1 * g, rtol=1e-5, atol=1e-7), updates, expect
  )


def test_ewc_holds_parameters_back_in_training():
  """Trained through memjax.train on a second task, the EWC optimizer ends nearer the first
  task's parameters (in the Fisher's metric) than plain SGD, with a positive penalty."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(64, D)).astype(np.float32)
  y1, y2 = (rng.integers(0, C, size=64).astype(np.int32) for _ in range(2))
  params0, _, _ = _data(5)
  fisher = ewc.classifier_fisher(_linear, params0, x, kind="exact")

  def loss_fn(params, batch, rng, context):
    del rng, context
    logits = _linear(params, batch["x"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])), {}

  batches = {"x": np.broadcast_to(x, (50, *x.shape)), "y": np.broadcast_to(y2, (50, 64))}
  distances = {}
  for name, opt in (
    ("sgd", optax.sgd(0.5)),
    ("ewc", optax.chain(continual.add_ewc_penalty(5.0), optax.sgd(0.5))),
  ):
    state = train.TrainState.create(params0, opt, jax.random.key(0))
    if name == "ewc":
      state = state._replace(
        opt_state=continual.consolidate_opt_state(state.opt_state, params0, fisher)
      )
    state, _ = train.make_train_steps(loss_fn, opt)(state, batches)
    anchor_state = ewc.consolidate(ewc.init_state(params0), params0, fisher)
    distances[name] = float(ewc.ewc_penalty(anchor_state, state.params, 1.0))
  assert distances["ewc"] > 0.0
  assert distances["ewc"] < 0.5 * distances["sgd"], distances
  del y1


def test_errors_name_the_problem():
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match=r"decay=1.5 must be in \[0, 1\]"):
    ewc.consolidate(ewc.init_state(params), params, params, decay=1.5)
  with pytest.raises(ValueError, match="fisher's tree .* differs"):
    ewc.consolidate(ewc.init_state(params), params, {"v": jnp.ones(2)})
  opt = continual.add_ewc_penalty(1.0)
  with pytest.raises(ValueError, match="ewc needs the current params"):
    opt.update(params, opt.init(params))
  with pytest.raises(ValueError, match="holds no EWCState"):
    continual.consolidate_opt_state(optax.sgd(1.0).init(params), params, params)
  with pytest.raises(ValueError, match="kind='fisher' must be one of"):
    ewc.classifier_fisher(_linear, params, jnp.ones((2, 2)), kind="fisher")
  with pytest.raises(ValueError, match="kind='empirical' needs the observed labels"):
    ewc.classifier_fisher(_linear, params, jnp.ones((2, 2)), kind="empirical")
  with pytest.raises(ValueError, match="kind='sampled' needs a PRNG key"):
    ewc.classifier_fisher(_linear, params, jnp.ones((2, 2)), kind="sampled")
  with pytest.raises(ValueError, match=r"weights of shape \(3,\) must be \[2\]"):
    ewc.fisher_diagonal(
      lambda p, e: jnp.sum(p["w"] * e), params, jnp.ones((2, 2)), weights=jnp.ones(3)
    )
