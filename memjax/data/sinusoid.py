"""The MAML sinusoid regression tasks, sampled on device by a pure JAX function.

Each task is ``y = A sin(x - phi)`` with the amplitude ``A ~ U[0.1, 5]``, the phase
``phi ~ U[0, pi]`` and the inputs ``x ~ U[-5, 5]``; a task gives ``K`` support points (the
"K shots") and ``Q`` query points drawn independently from the same curve.
:func:`sample_tasks` is pure (jit-able, usable inside a ``lax.scan``), so a meta-training
step draws its tasks from its own key without leaving the device.

Example:
  >>> tasks = sample_tasks(jax.random.key(0), num_tasks=25, num_shots=10)
  >>> tasks.support_x.shape, tasks.query_y.shape, tasks.amplitude.shape
  ((25, 10, 1), (25, 10, 1), (25,))
  >>> bool(jnp.allclose(tasks.support_y, sine(tasks.amplitude, tasks.phase, tasks.support_x)))
  True

References:
  Finn, Abbeel, Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
  Networks", section 5.1.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


class SinusoidTasks(NamedTuple):
  """A batch of sinusoid tasks (fields of :class:`memjax.meta.Tasks` plus the curves)."""

  support_x: jax.Array  # [T, K, 1]
  support_y: jax.Array  # [T, K, 1]
  query_x: jax.Array  # [T, Q, 1]
  query_y: jax.Array  # [T, Q, 1]
  amplitude: jax.Array  # [T]
  phase: jax.Array  # [T]


def sine(amplitude: jax.Array, phase: jax.Array, x: jax.Array) -> jax.Array:
  """``A sin(x - phi)`` for tasks ``amplitude, phase [T]`` and inputs ``x [T, N, 1]``."""
  return amplitude[:, None, None] * jnp.sin(x - phase[:, None, None])


def _check_range(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
  lo, hi = (float(b) for b in bounds)
  if not lo <= hi:
    raise ValueError(f"{name}={bounds} must be (low, high) with low <= high")
  return lo, hi


def sample_tasks(
  key: jax.Array,
  num_tasks: int,
  num_shots: int,
  num_queries: int | None = None,
  *,
  amplitude: tuple[float, float] = AMPLITUDE,
  phase: tuple[float, float] = PHASE,
  x_range: tuple[float, float] = X_RANGE,
  dtype: Any = jnp.float32,
) -> SinusoidTasks:
  """Draws ``num_tasks`` sinusoids and their support and query points.

  Args:
    key: a PRNG key.
    num_tasks: T.
    num_shots: K support points per task.
    num_queries: Q query points per task (default K, as MAML's meta-training).
    amplitude: the uniform range of ``A``.
    phase: the uniform range of ``phi``.
    x_range: the uniform range of ``x``.
    dtype: floating dtype of the arrays.

  Returns:
    :class:`SinusoidTasks` (support ``[T, K, 1]``, query ``[T, Q, 1]``).

  Raises:
    ValueError: a non-positive count, or a range whose low end exceeds its high end.
  """
  num_queries = num_shots if num_queries is None else num_queries
  for name, n in (("num_tasks", num_tasks), ("num_shots", num_shots), ("num_queries", num_queries)):
    if int(n) < 1:
      raise ValueError(f"{name}={n} must be a positive integer")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  (a_lo, a_hi), (p_lo, p_hi) = _check_range("amplitude", amplitude), _check_range("phase", phase)
  x_lo, x_hi = _check_range("x_range", x_range)
  k_amp, k_phase, k_x = jax.random.split(key, 3)
  t, k, q = int(num_tasks), int(num_shots), int(num_queries)
  amp = jax.random.uniform(k_amp, (t,), dtype, a_lo, a_hi)
  ph = jax.random.uniform(k_phase, (t,), dtype, p_lo, p_hi)
  x = jax.random.uniform(k_x, (t, k + q, 1), dtype, x_lo, x_hi)
  y = sine(amp, ph, x)
  return SinusoidTasks(x[:, :k], y[:, :k], x[:, k:], y[:, k:], amp, ph)


__all__ = ["SinusoidTasks", "sine", "sample_tasks", "AMPLITUDE", "PHASE", "X_RANGE"]
