"""Meta-test evaluation: adapt on each task's support set, score its query set, summarise.

:func:`make_task_scores` returns a jitted function giving, for every task, the query
loss and metrics before adaptation (``<name>_before``) and after it (``<name>``);
:func:`summarize` turns such per-task values into a mean and a 95% confidence interval
(``1.96 * std / sqrt(n)``, the normal approximation the MAML and Reptile papers report);
:func:`evaluate` does both.

Example:
  >>> from memjax.meta import Tasks, maml, mse
  >>> learner = maml(lambda p, x: x @ p["w"], mse, inner_lr=0.1)
  >>> tasks = Tasks(*jax.random.normal(jax.random.key(0), (4, 100, 5, 1)))  # 100 tasks
  >>> summary = evaluate(learner, learner.init({"w": jnp.zeros((1, 1))}), tasks)
  >>> sorted(summary), summary["loss"]["n"]
  (['loss', 'loss_before'], 100)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from memjax.meta.algorithms import MetaLearner, MetaParams, _check_tasks, over_tasks


def make_task_scores(
  learner: MetaLearner, num_steps: int | None = None, chunk_size: int | None = 256
) -> Callable[[MetaParams, Any], dict[str, jax.Array]]:
  """A jitted ``fn(meta_params, tasks) -> {name: [T]}`` of per-task query scores.

  Args:
    learner: the meta-learner (its ``adapt`` and ``score``).
    num_steps: inner steps at test time (None = the training setting).
    chunk_size: tasks adapted at once (``lax.map`` over chunks bounds the memory; 1 = one
      after another, the fast choice for convolutions on CPU); None = all in one ``vmap``.

  Returns:
    The function; its dict holds each of ``learner.score``'s names after adaptation and,
    with the suffix ``_before``, at the meta-parameters themselves.
  """

  def one(meta_params, task):
    before = learner.score(meta_params.params, task.query_x, task.query_y)
    adapted, _ = learner.adapt(meta_params, task.support_x, task.support_y, num_steps=num_steps)
    after = learner.score(adapted, task.query_x, task.query_y)
    return {**after, **{f"{k}_before": v for k, v in before.items()}}

  @jax.jit
  def scores(meta_params, tasks):
    _check_tasks(tasks)
    return over_tasks(lambda t: one(meta_params, t), tasks, chunk_size)

  return scores


def confidence_interval(values: Any, z: float = 1.96) -> tuple[float, float]:
  """Mean and half-width ``z * std / sqrt(n)`` (sample std; 1.96: 95%) of ``values`` [n]."""
  v = np.asarray(values, np.float64).ravel()
  if v.size == 0:
    raise ValueError("confidence_interval of no values")
  half = z * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
  return float(v.mean()), float(half)


def summarize(per_task: dict[str, Any]) -> dict[str, dict[str, float]]:
  """``{name: [T]}`` -> ``{name: {'mean', 'ci95', 'n'}}``."""
  out = {}
  for name, values in per_task.items():
    mean, half = confidence_interval(values)
    out[name] = {"mean": mean, "ci95": half, "n": int(np.size(values))}
  return out


def evaluate(
  learner: MetaLearner,
  meta_params: MetaParams,
  tasks: Any,
  *,
  num_steps: int | None = None,
  chunk_size: int | None = 256,
) -> dict[str, dict[str, float]]:
  """Adapts on every task's support set and summarises its query scores.

  Args:
    learner: the meta-learner.
    meta_params: its trained :class:`MetaParams`.
    tasks: a batch of tasks (:class:`memjax.meta.Tasks` or any NamedTuple with the same
      fields, the task on axis 0).
    num_steps: inner steps at test time (None = the training setting).
    chunk_size: tasks adapted at once.

  Returns:
    ``{name: {'mean', 'ci95', 'n'}}`` for every score after adaptation and before it
    (``<name>_before``).
  """
  scores = make_task_scores(learner, num_steps, chunk_size)(meta_params, tasks)
  return summarize(jax.device_get(scores))


__all__ = ["make_task_scores", "confidence_interval", "summarize", "evaluate"]
