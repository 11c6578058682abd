"""memjax.meta.inner: the inner loop against numpy loops; masks, rates, losses, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memjax.meta import inner
from tests.meta._quadratic import apply_linear, make_tasks, np_grad, np_sgd


def _task(i=0):
  tasks = make_tasks(dtype=np.float32)
  return tasks.support_x[i], tasks.support_y[i]


def test_adapt_sgd_matches_numpy_loop():
  x, y = _task()
  w0 = np.linspace(-1, 1, 4).astype(np.float32)
  adapted, _ = inner.adapt(
    {"w": jnp.asarray(w0)},
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.sgd(0.05),
    num_steps=3,
  )
  np.testing.assert_allclose(adapted["w"], np_sgd(w0.astype(np.float64), x, y, 0.05, 3), rtol=1e-5)
  unrolled, _ = inner.adapt(
    {"w": jnp.asarray(w0)},
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.sgd(0.05),
    num_steps=3,
    unroll=True,
  )
  np.testing.assert_allclose(unrolled["w"], adapted["w"], rtol=1e-6)


def _np_adam(w, x, y, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
  m = v = np.zeros_like(w)
  for t in range(1, steps + 1):
    g = np_grad(w, x, y)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
    w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
  return w


def test_adapt_carries_the_optimizer_state_across_steps():
  # Adam's moments live in the scan carry: a reset per step would give three first steps.
  x, y = _task(1)
  w0 = np.zeros(4, np.float32)
  adapted, _ = inner.adapt(
    {"w": jnp.asarray(w0)},
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.adam(0.1),
    num_steps=3,
  )
  np.testing.assert_allclose(adapted["w"], _np_adam(w0.astype(np.float64), x, y, 0.1, 3), rtol=1e-4)


def test_observe_records_every_step():
  x, y = _task()
  w0 = np.ones(4, np.float32)
  _, seen = inner.adapt(
    {"w": jnp.asarray(w0)},
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.sgd(0.05),
    num_steps=3,
    observe=lambda p: p["w"],
  )
  expect = [np_sgd(w0.astype(np.float64), x, y, 0.05, s) for s in (1, 2, 3)]
  np.testing.assert_allclose(seen, np.stack(expect), rtol=1e-5)


def test_zero_steps_returns_the_params():
  x, y = _task()
  params = {"w": jnp.ones(4)}
  adapted, seen = inner.adapt(
    params,
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.sgd(1.0),
    num_steps=0,
  )
  assert adapted is params and seen is None


def test_learned_rates_per_step_and_per_parameter():
  # rates [2, D]: step 0 and step 1 use their own row, step 2 reuses the last one.
  x, y = _task(2)
  w0 = np.full(4, 0.3)
  rates = np.array([[0.01, 0.02, 0.03, 0.04], [0.05, 0.06, 0.07, 0.08]], np.float32)
  adapted, _ = inner.adapt(
    {"w": jnp.asarray(w0, jnp.float32)},
    x,
    y,
    apply_fn=apply_linear,
    loss_fn=inner.mse,
    optimizer=optax.sgd(1.0),
    num_steps=3,
    rates={"w": jnp.asarray(rates)},
  )
  w = w0
  for r in (rates[0], rates[1], rates[1]):
    w = w - r * np_grad(w, x, y)
  np.testing.assert_allclose(adapted["w"], w, rtol=1e-5)


def test_init_rates_shapes():
  params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
  per_param = inner.init_rates(params, 0.1, num_steps=4)
  per_layer = inner.init_rates(params, 0.1, num_steps=4, per_parameter=False)
  assert per_param["a"].shape == (4, 2, 3) and per_param["b"].shape == (4, 3)
  assert per_layer["a"].shape == (4,) and float(per_layer["b"][2]) == pytest.approx(0.1)


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2, name="head")(nn.relu(nn.Dense(5, name="body")(x)))


def test_mask_adapts_only_the_selected_leaves():
  net = _Net()
  x = jax.random.normal(jax.random.key(0), (6, 3))
  y = jax.random.normal(jax.random.key(1), (6, 2))
  params = net.init(jax.random.key(2), x)["params"]
  apply_fn = lambda p, x: net.apply({"params": p}, x)
  for mask in (
    inner.path_contains("head"),
    {"body": {"bias": False, "kernel": False}, "head": {"bias": True, "kernel": True}},
  ):
    adapted, _ = inner.adapt(
      params,
      x,
      y,
      apply_fn=apply_fn,
      loss_fn=inner.mse,
      optimizer=optax.sgd(0.5),
      num_steps=2,
      mask=mask,
    )
    for name in ("kernel", "bias"):
      np.testing.assert_array_equal(adapted["body"][name], params["body"][name])
      assert not np.allclose(adapted["head"][name], params["head"][name])


def test_leaf_mask_errors_name_the_problem():
  params = {"body": {"kernel": jnp.zeros(2)}, "head": {"kernel": jnp.zeros(2)}}
  assert inner.leaf_paths(params) == [("body", "kernel"), ("head", "kernel")]
  with pytest.raises(ValueError, match=r"selects no parameter.*body/kernel"):
    inner.leaf_mask(params, inner.path_contains("tail"))
  with pytest.raises(ValueError, match="differs from the params"):
    inner.leaf_mask(params, {"body": True})


def test_adapt_rejects_bad_input():
  x, y = _task()
  kw = dict(apply_fn=apply_linear, loss_fn=inner.mse, optimizer=optax.sgd(0.1))
  with pytest.raises(ValueError, match="num_steps=-1"):
    inner.adapt({"w": jnp.ones(4)}, x, y, num_steps=-1, **kw)
  with pytest.raises(ValueError, match="different numbers of examples"):
    inner.adapt({"w": jnp.ones(4)}, x, y[:3], num_steps=1, **kw)


def test_losses_and_accuracy_against_numpy():
  logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
  labels = np.array([0, 1])
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expect = -np.mean(log_probs[np.arange(2), labels])
  assert float(inner.cross_entropy(jnp.asarray(logits), labels)) == pytest.approx(expect, rel=1e-6)
  assert float(inner.accuracy(jnp.asarray(logits), labels)) == 0.5
  assert float(inner.mse(jnp.ones(3), jnp.zeros(3))) == 1.0
  with pytest.raises(ValueError, match=r"mse: predictions \(3,\) and targets \(3, 1\)"):
    inner.mse(jnp.ones(3), jnp.zeros((3, 1)))
  with pytest.raises(ValueError, match="do not match labels"):
    inner.cross_entropy(jnp.asarray(logits), jnp.zeros(3, jnp.int32))
