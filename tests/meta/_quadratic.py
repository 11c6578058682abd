"""Linear regression tasks (a quadratic loss in the weights) and numpy closed forms."""

import jax.numpy as jnp
import numpy as np

from memjax.meta import Tasks


def apply_linear(params, x):
  """``x [K, D] @ w [D]``, params ``{'w': [D]}``."""
  return x @ params["w"]


def mse(predictions, targets):
  return jnp.mean((predictions - targets) ** 2)


def make_tasks(seed=0, num_tasks=3, dim=4, shots=6, queries=5, dtype=np.float64):
  rng = np.random.default_rng(seed)
  arrays = (
    rng.standard_normal((num_tasks, shots, dim)),
    rng.standard_normal((num_tasks, shots)),
    rng.standard_normal((num_tasks, queries, dim)),
    rng.standard_normal((num_tasks, queries)),
  )
  return Tasks(*(a.astype(dtype) for a in arrays))


def np_grad(w, x, y):
  """The gradient of mean((x w - y)^2) in float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return 2.0 / x.shape[0] * x.T @ (x @ w - y)


def np_hessian(x):
  x = np.asarray(x, np.float64)
  return 2.0 / x.shape[0] * x.T @ x


def np_sgd(w, x, y, lr, steps):
  for _ in range(steps):
    w = w - lr * np_grad(w, x, y)
  return w
