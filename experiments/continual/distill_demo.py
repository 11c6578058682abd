"""Knowledge distillation demo: a small student trained from a larger teacher against the
same student trained alone, at equal steps (scikit-learn's digits, all 10 classes).

Per seed, three runs of ``memjax.train.run_all`` (each a ``memjax.train.fit`` with Orbax
checkpoints and resume): the teacher (a wide MLP on the whole training split), the student
alone (cross-entropy on the labels of a small labelled subset, ``student_examples``) and
the student with the teacher (``memjax.continual.kd_loss`` on the same subset: the
teacher's soft targets at temperature T mixed with the labels). The soft targets carry
what the teacher learned from the rest of the data (Hinton et al. 2015, section 6: "soft
targets as regularizers", a model trained on 3% of the data). The two students of a seed
start from the same parameters, see the same batches and take the same number of steps;
the teacher is the same seed's. ``results.json`` has the
test accuracy of each (mean, sd over seeds), the paired difference (KD minus alone) and
the learning curves; ``distillation.png`` plots them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.continual.train import make_model
from memjax import continual, train
from memjax.data import digits
from memjax.train.checkpoint import Checkpointer

ROLES = ("teacher", "student", "student_kd")


def _data(config):
  """The digits' train/test split; the students' labelled subset of the training split
  (``student_examples``, as many of each class, seeded; 0 = all)."""
  x, y = digits.load_digits()
  train_idx, test_idx = digits.stratified_split(
    y, config.data.test_fraction, config.data.split_seed
  )
  n = config.distill_demo.student_examples
  student = np.arange(len(train_idx))
  if n:
    if n % digits.NUM_CLASSES:
      raise ValueError(f"config.distill_demo.student_examples={n} must be a multiple of 10")
    rng = np.random.default_rng(config.data.split_seed)
    labels = y[train_idx]
    student = np.sort(
      np.concatenate(
        [
          rng.choice(np.flatnonzero(labels == c), n // digits.NUM_CLASSES, replace=False)
          for c in range(10)
        ]
      )
    )
  return {
    "x": jnp.asarray(x[train_idx]),
    "y": jnp.asarray(y[train_idx]),
    "student": jnp.asarray(student, jnp.int32),
    "test_x": jnp.asarray(x[test_idx]),
    "test_y": jnp.asarray(y[test_idx]),
  }


def _model(config, role: str):
  d = config.distill_demo
  hidden = d.teacher_hidden if role == "teacher" else d.student_hidden
  spec = ml_collections.ConfigDict({"kind": "mlp", "hidden_sizes": tuple(hidden)})
  return make_model(spec, digits.NUM_CLASSES, digits.IMAGE_SHAPE)


def _steps(config, role: str) -> int:
  d = config.distill_demo
  return d.teacher_steps if role == "teacher" else d.student_steps


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the teachers, the students alone and with their teacher; writes results.json."""
  d = config.distill_demo
  for role in ROLES:
    if _steps(config, role) % d.rounds:
      raise ValueError(
        f"config.distill_demo.rounds={d.rounds} must divide the teacher's and the student's steps"
      )
  data = _data(config)
  n = int(data["y"].shape[0])
  models = {role: _model(config, role) for role in ("teacher", "student")}
  optimizer = optax.adam(config.optimizer.lr)
  compiled: dict[str, Any] = {}

  def accuracy(apply_fn, params):
    return jnp.mean(jnp.argmax(apply_fn(params, data["test_x"]), -1) == data["test_y"])

  def pieces(role):
    if role in compiled:
      return compiled[role]
    apply_fn, init_params = models["teacher" if role == "teacher" else "student"]
    teacher_apply = models["teacher"][0]

    pool = jnp.arange(n) if role == "teacher" else data["student"]

    def batch_fn(x_i, key, context):
      del x_i, context
      idx = pool[jax.random.randint(key, (config.batch_size,), 0, pool.shape[0])]
      return {"x": data["x"][idx], "y": data["y"][idx]}

    def loss_fn(params, batch, key, context):
      del key
      logits = apply_fn(params, batch["x"])
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))
      if role != "student_kd":
        return ce, {"ce": ce}
      teacher_logits = teacher_apply(context["teacher"], batch["x"])
      loss = continual.kd_loss(
        logits, teacher_logits, batch["y"], temperature=d.temperature, alpha=d.alpha
      )
      return loss, {"ce": ce}

    steps = train.make_train_steps(
      loss_fn, optimizer, num_steps=_steps(config, role) // d.rounds, batch_fn=batch_fn
    )
    compiled[role] = (apply_fn, init_params, steps, jax.jit(lambda p: accuracy(apply_fn, p)))
    return compiled[role]

  def teacher_params(seed):
    _, init_params, _, _ = pieces("teacher")
    target = jax.eval_shape(
      lambda: train.TrainState.create(init_params(jax.random.key(0)), optimizer, jax.random.key(0))
    )
    teacher_dir = train.run_dir(workdir, train.Run(f"role=teacher,seed={seed}", {}))
    with Checkpointer(os.path.join(teacher_dir, "checkpoints")) as ckpt:
      restored = ckpt.restore_latest(target)
    if restored is None:
      raise FileNotFoundError(f"no teacher checkpoint for seed {seed} in {teacher_dir}")
    return restored[1].params

  def train_one(run: train.Run, directory: str) -> dict[str, Any]:
    role, seed = run.spec["role"], run.spec["seed"]
    apply_fn, init_params, steps, test_accuracy = pieces(role)
    context = {"teacher": teacher_params(seed)} if role == "student_kd" else {}
    # The students of one seed start alike and see the same batches.
    init_seed = seed if role == "teacher" else seed + 1000
    key = jax.random.key(init_seed)
    result = train.fit(
      lambda: train.TrainState.create(init_params(key), optimizer, jax.random.fold_in(key, 1)),
      lambda state, r: steps(state, None, context),
      workdir=directory,
      num_rounds=d.rounds,
      eval_fn=lambda state: {"test_accuracy": float(test_accuracy(state.params))},
      progress=config.progress_bar,
      desc=f"distill {role} seed {seed}",
      steps_per_round=_steps(config, role) // d.rounds,
      postfix=("ce", "test_accuracy"),
    )
    curve = [[row["step"], row["test_accuracy"]] for row in result.history]
    return {
      "role": role,
      "seed": seed,
      "test_accuracy": curve[-1][1],
      "curve": curve,
      "steps": int(result.state.step),
    }

  runs = train.grid(role=list(ROLES), seed=list(config.seeds))
  results, wall = train.run_all(workdir, runs, train_one)
  by_role = {role: [r for r in results if r["role"] == role] for role in ROLES}
  acc = {role: np.array([r["test_accuracy"] for r in rs]) for role, rs in by_role.items()}
  diff = acc["student_kd"] - acc["student"]
  sd = lambda v: float(v.std(ddof=1)) if v.size > 1 else 0.0
  metrics = {
    "test_accuracy": {
      role: {"mean": float(a.mean()), "sd": sd(a), "n": int(a.size)} for role, a in acc.items()
    },
    "kd_minus_alone": {"mean": float(diff.mean()), "sd": sd(diff), "wins": int(np.sum(diff > 0))},
    "student_steps": d.student_steps,
    "teacher_steps": d.teacher_steps,
    "curves": {role: [r["curve"] for r in rs] for role, rs in by_role.items()},
    "data": {
      "teacher_train_examples": n,
      "student_train_examples": int(data["student"].shape[0]),
      "test_examples": int(data["test_y"].shape[0]),
    },
  }
  if config.plots:
    curves = {}
    for role in ("student", "student_kd"):
      c = np.array(metrics["curves"][role])  # [seeds, points, 2]
      curves[role] = 100 * c[:, :, 1].mean(0)
    train.plots.plot_curves(
      os.path.join(workdir, "distillation.png"),
      np.array(metrics["curves"]["student"][0])[:, 0],
      curves,
      title=f"student {tuple(d.student_hidden)} alone vs from a {tuple(d.teacher_hidden)} teacher",
      xlabel="student steps",
    )
  train.write_results(workdir, metrics, config, wall)
  t = metrics["test_accuracy"]
  print(
    f"distillation on digits, {len(config.seeds)} seeds, {d.student_steps} student steps: "
    f"teacher {100 * t['teacher']['mean']:.1f}%, student alone "
    f"{100 * t['student']['mean']:.1f} +- {100 * t['student']['sd']:.1f}%, student from the "
    f"teacher {100 * t['student_kd']['mean']:.1f} +- {100 * t['student_kd']['sd']:.1f}% "
    f"(KD - alone {100 * diff.mean():+.1f} points, better in {int(np.sum(diff > 0))}/{diff.size} "
    f"seeds)\nresults: {os.path.join(workdir, 'results.json')}"
  )
  return metrics
