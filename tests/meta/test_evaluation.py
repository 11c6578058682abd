"""memjax.meta.evaluation: per-task scores before / after adaptation and their 95% CI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax import meta
from tests.meta._quadratic import apply_linear, make_tasks, np_sgd


def test_task_scores_match_numpy_per_task():
  tasks = make_tasks(seed=2, num_tasks=5)
  theta = np.array([0.3, -0.2, 0.1, 0.5])
  with jax.enable_x64(True):
    learner = meta.maml(apply_linear, meta.mse, inner_lr=0.05, num_inner_steps=1)
    mp = learner.init({"w": jnp.asarray(theta)})
    scores = jax.device_get(meta.make_task_scores(learner, num_steps=3, chunk_size=2)(mp, tasks))
    whole = jax.device_get(meta.make_task_scores(learner, num_steps=3, chunk_size=None)(mp, tasks))
    single = jax.device_get(meta.make_task_scores(learner, num_steps=3, chunk_size=1)(mp, tasks))
  after = [
    np.mean((qx @ np_sgd(theta, sx, sy, 0.05, 3) - qy) ** 2)
    for sx, sy, qx, qy in zip(*tasks, strict=True)
  ]
  before = [
    np.mean((qx @ theta - qy) ** 2) for qx, qy in zip(tasks.query_x, tasks.query_y, strict=True)
  ]
  assert set(scores) == {"loss", "loss_before"}
  np.testing.assert_allclose(scores["loss"], after, rtol=1e-10)
  np.testing.assert_allclose(scores["loss_before"], before, rtol=1e-10)
  # 5 tasks in chunks of 2 (the last chunk short) equal one chunk of 5.
  np.testing.assert_allclose(scores["loss"], whole["loss"], rtol=1e-12)
  np.testing.assert_allclose(single["loss"], whole["loss"], rtol=1e-12)


def test_metrics_are_scored_before_and_after():
  rng = np.random.default_rng(0)
  tasks = meta.Tasks(
    rng.standard_normal((3, 4, 2)).astype(np.float32),
    rng.integers(0, 2, (3, 4)),
    rng.standard_normal((3, 6, 2)).astype(np.float32),
    rng.integers(0, 2, (3, 6)),
  )
  learner = meta.maml(
    lambda p, x: x @ p["w"],
    meta.cross_entropy,
    inner_lr=0.5,
    metric_fns={"accuracy": meta.accuracy},
  )
  mp = learner.init({"w": jnp.asarray([[1.0, -1.0], [0.5, 0.2]])})
  summary = meta.evaluate(learner, mp, tasks)
  assert set(summary) == {"loss", "accuracy", "loss_before", "accuracy_before"}
  logits = tasks.query_x @ np.asarray(mp.params["w"])
  expect = np.mean(np.argmax(logits, -1) == tasks.query_y, axis=1)
  assert summary["accuracy_before"]["mean"] == pytest.approx(expect.mean())
  assert summary["accuracy"]["n"] == 3


def test_confidence_interval_is_the_normal_95_percent_half_width():
  values = np.array([0.2, 0.5, 0.1, 0.9, 0.4, 0.3])
  mean, half = meta.confidence_interval(values)
  sd = np.sqrt(np.sum((values - values.mean()) ** 2) / (values.size - 1))
  assert mean == pytest.approx(values.mean())
  assert half == pytest.approx(1.96 * sd / np.sqrt(values.size))
  assert meta.summarize({"x": values})["x"] == {"mean": mean, "ci95": half, "n": 6}
  with pytest.raises(ValueError, match="of no values"):
    meta.confidence_interval([])
