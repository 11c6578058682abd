"""Meta-learning study: MAML and its relatives on the sinusoid and on Omniglot.

The study on ``memjax.train`` and ``memjax.meta``: its models (the paper's 1-40-40-1 MLP,
the 4-block convolutional net), its task sources (``memjax.data.sinusoid``,
``memjax.data.omniglot`` with held-out characters), the meta-learner named by
``config.algorithm``, a held-out evaluation (adapt on the support set, score the query
set, mean and 95% CI over many tasks), and its outputs: ``results.json`` with the paper's
figure beside ours, the learning curve and, on the sinusoid, the adaptation figure.
``memjax.train.fit`` runs the loop (checkpoints, resume after a kill, progress, history).
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memjax import meta, train
from memjax.data import sinusoid
from memjax.train.plots import plot_curves

# The papers' figures we could confirm (Finn et al. 2017, Table 1, Omniglot: MAML and its
# first-order approximation; the sinusoid figures are learn2learn's as reported for it).
PAPER = {
  "sinusoid_k10": {
    "metric": "post-update MSE, 1 step",
    "maml": "0.457 +- 0.033 (learn2learn, 10k iterations; target <= 0.45)",
    "fomaml": "0.745 (learn2learn, 10k iterations)",
  },
  "omniglot_5way_1shot": {"metric": "accuracy %", "maml": "98.7 +- 0.4", "fomaml": "98.3 +- 0.5"},
  "omniglot_5way_5shot": {"metric": "accuracy %", "maml": "99.9 +- 0.1", "fomaml": "99.2 +- 0.2"},
  "omniglot_20way_1shot": {"metric": "accuracy %", "maml": "95.8 +- 0.3", "fomaml": "89.4 +- 0.5"},
  "omniglot_20way_5shot": {"metric": "accuracy %", "maml": "98.9 +- 0.2", "fomaml": "97.9 +- 0.1"},
}
PAPER_SOURCE = "Finn, Abbeel, Levine 2017 (MAML), Table 1, full Omniglot; sinusoid: learn2learn"

# ----------------------------------------------------------------------------- models


class SineMLP(nn.Module):
  """The MAML sinusoid regressor: ReLU hidden layers, a linear ``head``."""

  hidden_sizes: tuple[int, ...] = (40, 40)

  @nn.compact
  def __call__(self, x):  # [K, 1] -> [K, 1]
    for i, size in enumerate(self.hidden_sizes):
      x = nn.relu(nn.Dense(size, name=f"hidden_{i}")(x))
    return nn.Dense(1, name="head")(x)


class ConvNet(nn.Module):
  """MAML's Omniglot net: blocks of 3x3 conv (stride 2), batch norm, ReLU; a linear head.

  Batch norm is transductive (the batch's own statistics, no running averages), as in MAML.
  """

  num_classes: int
  num_filters: int = 64
  num_blocks: int = 4

  @nn.compact
  def __call__(self, x):  # [B, S, S, 1] -> [B, N]
    for i in range(self.num_blocks):
      x = nn.Conv(self.num_filters, (3, 3), strides=2, padding="SAME", name=f"conv_{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=False, name=f"norm_{i}")(x))
    return nn.Dense(self.num_classes, name="head")(x.reshape(x.shape[0], -1))


def make_model(config: ml_collections.ConfigDict):
  """``(apply_fn(params, x), params)`` of the config's model, initialised from its seed."""
  key = jax.random.key(config.seed)
  if config.data.name == "sinusoid":
    model = SineMLP(tuple(config.model.hidden_sizes))
    params = model.init(key, jnp.zeros((1, 1)))["params"]
    return (lambda p, x: model.apply({"params": p}, x)), params
  if config.data.name == "omniglot":
    s = config.data.image_size
    model = ConvNet(config.data.num_ways, config.model.num_filters, config.model.num_blocks)
    params = model.init(key, jnp.zeros((2, s, s, 1)))["params"]
    return (lambda p, x: model.apply({"params": p}, x, mutable=["batch_stats"])[0]), params
  raise ValueError(f"config.data.name={config.data.name!r} must be 'sinusoid' or 'omniglot'")


def make_optimizer(name: str, lr: float, what: str) -> optax.GradientTransformation:
  """``optax.sgd(lr)`` or ``optax.adam(lr)``; ``what`` names the config field in errors."""
  if name == "sgd":
    return optax.sgd(lr)
  if name == "adam":
    return optax.adam(lr)
  raise ValueError(f"config.{what}.optimizer={name!r} must be 'sgd' or 'adam'")


def make_learner(config: ml_collections.ConfigDict, apply_fn) -> meta.MetaLearner:
  """``config.algorithm`` over the config's model, loss and inner loop."""
  classify = config.data.name == "omniglot"
  kwargs: dict[str, Any] = {
    "inner_lr": config.inner.lr,
    "num_inner_steps": config.inner.num_steps,
    "metric_fns": {"accuracy": meta.accuracy} if classify else None,
    "tasks_per_vmap": config.tasks_per_vmap or None,
    "unroll_tasks": config.unroll,
    "unroll_inner": config.unroll,
  }
  learned = config.algorithm in ("meta_sgd", "maml_plus_plus")
  if config.inner.optimizer != "sgd" or not learned:
    kwargs["inner_optimizer"] = make_optimizer(
      config.inner.optimizer, 1.0 if learned else config.inner.lr, "inner"
    )
  if config.algorithm == "anil":
    kwargs["head"] = "head"
  loss_fn = meta.cross_entropy if classify else meta.mse
  return meta.make_learner(config.algorithm, apply_fn, loss_fn, **kwargs)


# ----------------------------------------------------------------------------- tasks


class TaskSource(NamedTuple):
  """Where the tasks come from: samplers of the meta-train and meta-test splits."""

  sample_train: Any  # fn(key, context) -> tasks (inside the jitted meta-steps)
  sample_test: Any  # fn(key, num_tasks, num_queries) -> tasks (jitted)
  context: dict  # device data the meta-steps receive (meta-train images)
  info: dict  # what results.json records about the data


def _omniglot_arrays(config):
  """(meta-train images, meta-test images, info): the zips, or random images (tests)."""
  d = config.data
  if d.source == "random":
    shape = (d.random_characters, 20, d.image_size, d.image_size)
    images = np.random.default_rng(d.split_seed).random(shape)
    cut = d.random_characters - d.num_test
    info = {"source": "random images (smoke tests)", "characters": [cut, d.num_test]}
    return images[:cut].astype(np.float32), images[cut:].astype(np.float32), info
  if d.source != "zips":
    raise ValueError(f"config.data.source={d.source!r} must be 'zips' or 'random'")
  from memjax.data import omniglot  # noqa: PLC0415  (tensorflow_datasets on first use)

  arrays = omniglot.load(d.data_dir or None, image_size=d.image_size, tfds_dir=d.tfds_dir or None)
  meta_train, meta_test = omniglot.split_characters(
    arrays, num_test=d.num_test, by=d.split_by, seed=d.split_seed
  )
  info = {
    "source": "memjax.data.omniglot",
    "alphabets": list(arrays.alphabet_names),
    "characters": [len(meta_train.character_names), len(meta_test.character_names)],
    "test_characters": list(meta_test.character_names),
    "split_by": d.split_by,
  }
  return meta_train.images, meta_test.images, info


def make_tasks(config: ml_collections.ConfigDict) -> TaskSource:
  """The config's :class:`TaskSource`."""
  d, batch = config.data, config.meta_batch_size
  if d.name == "sinusoid":

    def sample_test(key, num_tasks, num_queries):
      return sinusoid.sample_tasks(key, num_tasks, d.num_shots, num_queries)

    train_fn = lambda key, context: sinusoid.sample_tasks(key, batch, d.num_shots, d.num_queries)
    return TaskSource(train_fn, jax.jit(sample_test, static_argnums=(1, 2)), {}, {})
  from memjax.data.omniglot import sample_episodes  # noqa: PLC0415

  train_images, test_images, info = _omniglot_arrays(config)
  episodes = functools.partial(sample_episodes, num_ways=d.num_ways, num_shots=d.num_shots)
  test_images = jnp.asarray(test_images)

  def sample_train(key, context):
    return episodes(key, context["images"], num_tasks=batch, num_queries=d.num_queries)

  @functools.partial(jax.jit, static_argnums=(1, 2))
  def sample_test_jit(key, num_tasks, num_queries, images):
    return episodes(key, images, num_tasks=num_tasks, num_queries=num_queries)

  def sample_test(key, num_tasks, num_queries):
    return sample_test_jit(key, num_tasks, num_queries, test_images)

  return TaskSource(sample_train, sample_test, {"images": jnp.asarray(train_images)}, info)


# ----------------------------------------------------------------------------- the study


def _rounds(config, name: str) -> int:
  value = config[name]
  if value % config.steps_per_call:
    raise ValueError(
      f"config.{name}={value} must be a multiple of config.steps_per_call={config.steps_per_call}"
    )
  return value // config.steps_per_call


def _headline(config, test: dict) -> dict[str, Any]:
  """Our figure at ``eval.report_steps`` (accuracy % or MSE) and the paper's."""
  scores = test[f"{config.eval.report_steps}_steps"]
  if config.data.name == "omniglot":
    acc = scores["accuracy"]
    ours = {"metric": "accuracy %", "mean": 100 * acc["mean"], "ci95": 100 * acc["ci95"]}
    ours["n"] = acc["n"]
  else:
    ours = {"metric": f"post-update MSE, {config.eval.report_steps} step(s)", **scores["loss"]}
  paper = PAPER.get(config.name, {})
  return {"ours": ours, "paper": paper.get(config.algorithm), "paper_source": PAPER_SOURCE}


def adaptation_curves(learner, meta_params, task, steps=(1, 10)) -> dict[str, np.ndarray]:
  """One sinusoid task on a grid of 200 x in [-5, 5]: the truth, the model before and after
  each number of ``steps`` on its support set (the MAML paper's Figure 2)."""
  x = jnp.linspace(-5.0, 5.0, 200)[:, None]
  curves = {
    "x": x[:, 0],
    "ground truth": sinusoid.sine(task.amplitude[:1], task.phase[:1], x[None])[0],
  }
  curves["pre-update"] = learner.apply_fn(meta_params.params, x)
  for n in steps:
    adapted, _ = learner.adapt(meta_params, task.support_x[0], task.support_y[0], num_steps=n)
    curves[f"{n} grad step{'s' if n > 1 else ''}"] = learner.apply_fn(adapted, x)
  return {k: np.asarray(v).ravel() for k, v in curves.items()}


def plot_adaptation(path: str, curves: dict[str, np.ndarray], task, title: str) -> None:
  """Saves the curves of :func:`adaptation_curves` with the task's support points."""
  import matplotlib  # noqa: PLC0415  (a plotting backend only when plotting)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6, 3.5))
  styles = {"ground truth": ("k", "-"), "pre-update": ("tab:gray", ":")}
  for i, (label, y) in enumerate((k, v) for k, v in curves.items() if k != "x"):
    color, line = styles.get(label, (f"C{i}", "--"))
    ax.plot(curves["x"], y, color=color, linestyle=line, label=label)
  sx, sy = np.asarray(task.support_x[0]).ravel(), np.asarray(task.support_y[0]).ravel()
  ax.plot(sx, sy, "^", color="tab:purple", label=f"{sx.size} support points")
  ax.set_xlabel("x")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Meta-trains (resuming from ``workdir``), evaluates and writes ``results.json``.

  Args:
    config: see ``experiments/meta/configs/sinusoid_k10.py`` and ``omniglot_5way_1shot.py``.
    workdir: output directory (checkpoints, metrics.jsonl, ``results.json``, PNG plots).

  Returns:
    The metrics written to ``results.json``.
  """
  log_rounds, checkpoint_rounds = _rounds(config, "log_every"), _rounds(config, "checkpoint_every")
  num_rounds = -(-config.num_meta_steps // config.steps_per_call)
  mesh = train.data_mesh(config.num_devices or None)
  train.check_batch_divisible(config.meta_batch_size, mesh, "config.meta_batch_size")
  if mesh.size > 1 and config.tasks_per_vmap:
    raise ValueError(
      f"config.tasks_per_vmap={config.tasks_per_vmap} runs the tasks one chunk after another, "
      f"which cannot split them over the {mesh.size} devices; use config.tasks_per_vmap=0"
    )
  tasks = make_tasks(config)
  apply_fn, params = make_model(config)
  learner = make_learner(config, apply_fn)
  outer = make_optimizer(config.outer.optimizer, config.outer.lr, "outer")
  steps = meta.make_meta_train_steps(
    learner, outer, tasks.sample_train, steps_per_call=config.steps_per_call, mesh=mesh
  )
  chunk = config.eval.chunk_size or None
  scores = {n: meta.make_task_scores(learner, n, chunk) for n in config.eval.num_steps}
  report = config.eval.report_steps
  curve_scores = meta.make_task_scores(learner, report, chunk)
  curve_tasks = tasks.sample_test(
    jax.random.key(config.seed + 1), config.eval.curve_num_tasks, config.eval.num_queries
  )

  def context(round_index):
    out = dict(tasks.context)
    if config.algorithm == "maml_plus_plus":
      anneal = max(config.inner.msl_anneal_fraction * num_rounds, 1)
      out["step_weights"] = meta.multi_step_weights(config.inner.num_steps, round_index / anneal)
    return out

  def eval_fn(state):
    values = jax.device_get(curve_scores(state.params, curve_tasks))
    return {f"eval_{k}": float(np.mean(v)) for k, v in values.items() if not k.endswith("before")}

  result = train.fit(
    lambda: meta.create_state(learner, params, outer, jax.random.key(config.seed + 3)),
    lambda state, r: steps(state, None, context(r)),
    workdir=workdir,
    num_rounds=num_rounds,
    eval_fn=eval_fn,
    log_every=log_rounds,
    checkpoint_every=checkpoint_rounds,
    mesh=mesh,
    steps_per_round=config.steps_per_call,
    progress=config.progress_bar,
    desc=f"{config.name} {config.algorithm}",
    postfix=("query_loss", "eval_loss", "eval_accuracy"),
  )
  state = result.state
  test_tasks = tasks.sample_test(
    jax.random.key(config.seed + 2), config.eval.num_tasks, config.eval.num_queries
  )
  test = {
    f"{n}_steps": meta.summarize(jax.device_get(fn(state.params, test_tasks)))
    for n, fn in scores.items()
  }
  names = [k for k in result.history[0] if k.startswith("eval_")] if result.history else []
  curve = [[r["step"], *(r[k] for k in names)] for r in result.history]
  metrics = {
    "algorithm": config.algorithm,
    "meta_iterations": int(state.step),
    "test": test,
    **_headline(config, test),
    "curve_columns": ["meta_iterations", *names],
    "curve": curve,
    "meta_iterations_per_second": (
      result.timed_rounds * config.steps_per_call / result.train_time_s
      if result.train_time_s
      else None
    ),
    "data": tasks.info,
  }
  if config.plots and curve:
    columns = np.asarray(curve, np.float64).T
    plot_curves(
      os.path.join(workdir, "learning_curve.png"),
      columns[0],
      dict(zip(names, columns[1:], strict=True)),
      title=f"{config.name} ({config.algorithm}): held-out tasks after {report} step(s)",
      xlabel="meta-iterations",
    )
  if config.plots and config.data.name == "sinusoid":
    one = sinusoid.sample_tasks(jax.random.key(config.seed + 4), 1, config.data.num_shots)
    curves = adaptation_curves(learner, state.params, one)
    title = f"{config.name}: {config.algorithm}, {int(state.step)} meta-iterations"
    plot_adaptation(os.path.join(workdir, "adaptation.png"), curves, one, title)
  train.write_results(workdir, metrics, config, result.wall_time_s)
  ours = metrics["ours"]
  print(
    f"{config.name} {config.algorithm} after {metrics['meta_iterations']} meta-iterations: "
    f"{ours['metric']} {ours['mean']:.4g} +- {ours['ci95']:.2g} (95% CI, {ours['n']} test "
    f"tasks); paper: {metrics['paper'] or 'n/a'}   results: {workdir}/results.json"
  )
  return metrics
