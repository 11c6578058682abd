"""Continual-learning study: tasks learned one after another, with and without forgetting.

Task sequences from ``memjax.data.digits`` (Split-digits, Permuted-digits, Omniglot
alphabets) and the methods of ``memjax.continual`` on ``memjax.train``:

* ``finetune``: plain training on each task in turn (the lower bound);
* ``ewc`` / ``online_ewc``: ``optax.chain(add_ewc_penalty(strength), adam)``, the Fisher
  consolidated after each task (online EWC: decayed, latest anchor);
* ``lwf``: the outputs of the previous tasks' classes distilled towards the model frozen
  at the end of the previous task (Learning without Forgetting);
* ``replay``: a reservoir buffer of earlier tasks' examples; each step adds a replayed
  batch (class-balanced in class-incremental runs) to the current one, weighted
  ``t / (t + 1)`` against ``1 / (t + 1)`` after ``t`` tasks;
* ``replay_distill``: replay, and the replayed examples also distilled towards the
  previous model (hard labels and soft targets);
* ``joint``: task ``t`` trains on the union of tasks ``0..t`` (the upper bound).

Scenarios (van de Ven & Tolias): ``task`` (the model is told the task: its outputs are
masked to that task's classes), ``class`` (outputs over every class seen so far),
``domain`` (the same classes in every task, e.g. Permuted-digits).

Each (method, seed) is one run of ``memjax.train.run_all`` (its own directory, resumed
after a kill); each run is one ``memjax.train.fit`` whose rounds are slices of tasks, so
its Orbax checkpoints hold the parameters, the optimizer (with the EWC state), the
previous model and the replay buffer. After each task the run is evaluated on every
task's test set: the accuracy matrix gives the average accuracy and the forgetting after
each task. ``results.json`` has them per method (mean and standard deviation over seeds)
with van de Ven & Tolias's Split-MNIST class-incremental figures beside ours, and
``accuracy_per_task.png`` shows each task's accuracy over time.

The distillation demo (``config.study = 'distill'``) lives in ``distill_demo.py``.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memjax import continual, train
from memjax.continual import replay
from memjax.data import digits

METHODS = ("finetune", "ewc", "online_ewc", "lwf", "replay", "replay_distill", "joint")
SCENARIOS = ("task", "class", "domain")
PAPER = {
  "source": (
    "van de Ven & Tolias 2019, 'Three scenarios for continual learning', Split-MNIST "
    "class-incremental, average accuracy over the 5 tasks (a different dataset: MNIST's "
    "60k 28x28 images, ours scikit-learn's 1,797 8x8 digits)"
  ),
  # Our methods' counterparts: None (finetune), EWC, Online EWC, LwF, offline (joint).
  "finetune": 19.9,
  "ewc": 20.0,
  "online_ewc": 20.0,
  "lwf": 23.9,
  "joint": 97.9,
  # Replay methods of the paper (generative replay, exemplars), not ours.
  "dgr": 90.8,
  "dgr_distill": 91.8,
  "icarl": 94.6,
}


# ----------------------------------------------------------------------------- models


class MLP(nn.Module):
  """A ReLU MLP over the flattened input."""

  hidden_sizes: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x):  # [B, ...] -> [B, C]
    x = x.reshape(x.shape[0], -1)
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x)


class ConvNet(nn.Module):
  """Blocks of 3x3 convolution (stride 2) and ReLU, then a linear layer (no batch norm:
  the parameters are the whole model, as EWC's Fisher assumes)."""

  num_filters: int
  num_blocks: int
  num_classes: int

  @nn.compact
  def __call__(self, x):  # [B, S, S] -> [B, C]
    x = x[..., None]
    for _ in range(self.num_blocks):
      x = nn.relu(nn.Conv(self.num_filters, (3, 3), strides=2, padding="SAME")(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def make_model(model_config, num_classes: int, input_shape) -> tuple[Any, Any]:
  """``(apply_fn(params, x), init_fn(key) -> params)`` of the configured model (the same
  functions for the same settings, so a second study in one process reuses the jitted
  initialisation)."""
  if model_config.kind == "mlp":
    spec = ("mlp", tuple(model_config.hidden_sizes))
  elif model_config.kind == "conv":
    spec = ("conv", (model_config.num_filters, model_config.num_blocks))
  else:
    raise ValueError(f"config.model.kind={model_config.kind!r} must be 'mlp' or 'conv'")
  return _model_functions(*spec, num_classes, tuple(input_shape))


@functools.lru_cache(maxsize=16)
def _model_functions(kind: str, sizes: tuple[int, ...], num_classes: int, input_shape):
  if kind == "mlp":
    model = MLP(sizes, num_classes)
  else:
    model = ConvNet(sizes[0], sizes[1], num_classes)
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  return (
    lambda p, x: model.apply({"params": p}, x),
    jax.jit(lambda key: model.init(key, dummy)["params"]),
  )


# ----------------------------------------------------------------------------- data


class StudyData(NamedTuple):
  """The task sequence on device (T tasks, C classes, N training examples in all)."""

  x: jax.Array  # [N, *input] every task's training examples
  y: jax.Array  # [N] int32 labels
  task: jax.Array  # [N] int32 the task of each example
  index: jax.Array  # [T, L] int32 the examples trained on during task t (padded)
  count: jax.Array  # [T] int32 valid entries of each row of index
  own: jax.Array  # [T, L] int32 task t's own examples (padded; for the Fisher, the buffer)
  own_count: jax.Array  # [T] int32
  task_masks: jax.Array  # [T, C] bool the classes of each task
  seen_masks: jax.Array  # [T, C] bool the classes of tasks 0..t
  test_x: jax.Array  # [T, M, *input]
  test_y: jax.Array  # [T, M] int32
  test_valid: jax.Array  # [T, M] bool


def load_sequence(config) -> digits.TaskSequence:
  """The configured task sequence."""
  d = config.data
  if d.name == "split_digits":
    return digits.split_digits(d.classes_per_task, test_fraction=d.test_fraction, seed=d.split_seed)
  if d.name == "permuted_digits":
    return digits.permuted_digits(d.num_tasks, test_fraction=d.test_fraction, seed=d.split_seed)
  if d.name == "omniglot_alphabets":
    if d.source == "random":  # smoke tests: random images, the real layout
      from memjax.data.omniglot import OmniglotArrays  # noqa: PLC0415

      rng = np.random.default_rng(d.split_seed)
      chars = d.random_characters
      arrays = OmniglotArrays(
        rng.random((chars, 20, d.image_size, d.image_size)).astype(np.float32),
        np.arange(chars, dtype=np.int32) * d.num_alphabets // chars,
        tuple(f"alphabet_{i}" for i in range(d.num_alphabets)),
        tuple(f"c{i}" for i in range(chars)),
      )
    elif d.source == "zips":
      from memjax.data import omniglot  # noqa: PLC0415  (tensorflow_datasets on first use)

      arrays = omniglot.load(d.data_dir or None, image_size=d.image_size)
    else:
      raise ValueError(f"config.data.source={d.source!r} must be 'zips' or 'random'")
    return digits.omniglot_alphabets(
      arrays, num_alphabets=d.num_alphabets or None, num_train_drawers=d.num_train_drawers
    )
  raise ValueError(
    f"config.data.name={d.name!r} must be 'split_digits', 'permuted_digits' or 'omniglot_alphabets'"
  )


def _pad_rows(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  width = max(len(r) for r in rows)
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, : len(r)] = r
  return out, np.array([len(r) for r in rows], np.int32)


def make_data(seq: digits.TaskSequence, cumulative: bool) -> StudyData:
  """``seq`` as :class:`StudyData`; ``cumulative``: task t trains on tasks 0..t (joint)."""
  sizes = [len(t.train_y) for t in seq.tasks]
  starts = np.concatenate([[0], np.cumsum(sizes)])
  own = [np.arange(starts[i], starts[i + 1]) for i in range(len(sizes))]
  rows = [np.concatenate(own[: i + 1]) for i in range(len(own))] if cumulative else own
  index, count = _pad_rows(rows)
  own_index, own_count = _pad_rows(own)
  num_tasks, c = len(seq.tasks), seq.num_classes
  task_masks = np.zeros((num_tasks, c), bool)
  for i, t in enumerate(seq.tasks):
    task_masks[i, t.classes] = True
  m = max(len(t.test_y) for t in seq.tasks)
  test_x = np.zeros((num_tasks, m, *seq.input_shape), np.float32)
  test_y = np.zeros((num_tasks, m), np.int32)
  test_valid = np.zeros((num_tasks, m), bool)
  for i, t in enumerate(seq.tasks):
    n = len(t.test_y)
    test_x[i, :n], test_y[i, :n], test_valid[i, :n] = t.test_x, t.test_y, True
  return StudyData(
    x=jnp.asarray(np.concatenate([t.train_x for t in seq.tasks])),
    y=jnp.asarray(np.concatenate([t.train_y for t in seq.tasks])),
    task=jnp.asarray(np.repeat(np.arange(num_tasks, dtype=np.int32), sizes)),
    index=jnp.asarray(index),
    count=jnp.asarray(count),
    own=jnp.asarray(own_index),
    own_count=jnp.asarray(own_count),
    task_masks=jnp.asarray(task_masks),
    seen_masks=jnp.asarray(np.cumsum(task_masks, axis=0) > 0),
    test_x=jnp.asarray(test_x),
    test_y=jnp.asarray(test_y),
    test_valid=jnp.asarray(test_valid),
  )


# ----------------------------------------------------------------------------- the method


class ContinualState(NamedTuple):
  """The study's part of the train state (``TrainState.extra``)."""

  tasks_done: jax.Array  # [] int32
  previous: Any  # the params frozen at the end of the last task (LwF, distillation), or ()
  buffer: Any  # a ReplayState of {x, y, task}, or ()


def output_mask(scenario: str, data: StudyData, t: jax.Array, example_task: jax.Array):
  """[B, C] bool: the outputs the model may use for each example while training task t."""
  b, c = example_task.shape[0], data.task_masks.shape[1]
  if scenario == "task":
    return data.task_masks[example_task]
  if scenario == "class":
    return jnp.broadcast_to(data.seen_masks[t], (b, c))
  return jnp.ones((b, c), bool)


def masked_cross_entropy(logits, labels, mask):
  """Mean softmax cross-entropy over the masked-in outputs (labels are always in)."""
  logits = jnp.where(mask, logits, -jnp.inf)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def old_class_distillation(scenario, data, t, logits, previous_logits, example_task, temperature):
  """[] the distillation of the earlier tasks' outputs (0 during the first task).

  task: each earlier task's head (softmax over its classes), averaged over them; class:
  the classes seen before task t, one softmax; domain: every output."""
  after_first = (t > 0).astype(jnp.float32)
  if scenario == "task":
    num_tasks = data.task_masks.shape[0]
    per_task = jnp.stack(
      [
        continual.distillation_loss(
          logits, previous_logits, temperature=temperature, mask=data.task_masks[j]
        )
        for j in range(num_tasks)
      ]
    )
    earlier = (jnp.arange(num_tasks) < t).astype(jnp.float32)
    return jnp.sum(per_task * earlier) / jnp.maximum(jnp.sum(earlier), 1.0)
  if scenario == "class":
    old = data.seen_masks[jnp.maximum(t - 1, 0)]
    loss = continual.distillation_loss(logits, previous_logits, temperature=temperature, mask=old)
    return after_first * loss
  del example_task
  return after_first * continual.distillation_loss(logits, previous_logits, temperature=temperature)


def make_optimizer(config, method: str) -> optax.GradientTransformation:
  adam = optax.adam(config.optimizer.lr)
  if method == "ewc":
    return optax.chain(continual.add_ewc_penalty(config.ewc.strength), adam)
  if method == "online_ewc":
    return optax.chain(continual.add_ewc_penalty(config.online_ewc.strength), adam)
  return adam


def _uses_previous(method: str) -> bool:
  return method in ("lwf", "replay_distill")


def _uses_buffer(method: str) -> bool:
  return method in ("replay", "replay_distill")


class Method(NamedTuple):
  """One method's compiled pieces, shared by its seeds (one compile per method)."""

  init: Any  # fn(seed) -> TrainState
  steps: Any  # train_steps(state, None, context) -> (state, metrics)
  finish: Any  # fn(state, data, t) -> state  (end of task t)
  evaluate: Any  # fn(params, data, t) -> [T] accuracies after task t


def make_method(config, method: str, apply_fn, init_params, example) -> Method:
  """The train state, the scanned steps, the end-of-task update and the evaluation."""
  if method not in METHODS:
    raise ValueError(f"config.methods holds {method!r}; the methods are {METHODS}")
  scenario = config.scenario
  if scenario not in SCENARIOS:
    raise ValueError(f"config.scenario={scenario!r} must be one of {SCENARIOS}")
  if config.lwf.balance not in ("sum", "tasks"):
    raise ValueError(f"config.lwf.balance={config.lwf.balance!r} must be 'sum' or 'tasks'")
  optimizer = make_optimizer(config, method)
  rep = config.replay

  def init(seed: int) -> train.TrainState:
    key = jax.random.key(seed)
    params = init_params(key)  # jitted once per model, shared by the methods
    extra = ContinualState(
      tasks_done=jnp.zeros((), jnp.int32),
      previous=jax.tree.map(jnp.copy, params) if _uses_previous(method) else (),
      buffer=replay.init_state(rep.capacity, example) if _uses_buffer(method) else (),
    )
    return train.TrainState.create(params, optimizer, jax.random.fold_in(key, 1), extra)

  def batch_fn(x_i, key, context):
    del x_i
    data, t = context["data"], context["task"]
    k_now, k_replay = jax.random.split(key)
    pick = jax.random.randint(k_now, (config.batch_size,), 0, data.count[t])
    idx = data.index[t, pick]
    batch = {"x": data.x[idx], "y": data.y[idx], "task": data.task[idx]}
    if _uses_buffer(method):
      buffer = context["buffer"]
      if rep.balance == "class":
        drawn = replay.sample_balanced(
          buffer, k_replay, rep.batch_size, buffer.items["y"], data.task_masks.shape[1]
        )
      elif rep.balance == "task":
        drawn = replay.sample_balanced(
          buffer, k_replay, rep.batch_size, buffer.items["task"], data.task_masks.shape[0]
        )
      else:
        drawn = replay.sample(buffer, k_replay, rep.batch_size)
      batch["replay"] = drawn
    return batch

  def loss_fn(params, batch, key, context):
    del key
    data, t = context["data"], context["task"]
    logits = apply_fn(params, batch["x"])
    mask = output_mask(scenario, data, t, batch["task"])
    ce = masked_cross_entropy(logits, batch["y"], mask)
    loss, metrics = ce, {"ce": ce}
    if method == "lwf":
      previous_logits = apply_fn(context["previous"], batch["x"])
      term = old_class_distillation(
        scenario, data, t, logits, previous_logits, batch["task"], config.lwf.temperature
      )
      if config.lwf.balance == "tasks":
        # van de Ven & Tolias's weighting: the current task 1 / (t + 1), the earlier t / (t + 1).
        old = t.astype(jnp.float32) / (t + 1.0)
        loss = (1.0 - old) * ce + old * config.lwf.weight * term
      else:
        loss = loss + config.lwf.weight * term
      metrics["distill"] = term
    if _uses_buffer(method):
      r = batch["replay"]
      r_logits = apply_fn(params, r["x"])
      r_mask = output_mask(scenario, data, t, r["task"])
      r_ce = masked_cross_entropy(r_logits, r["y"], r_mask)
      # Weighted as the tasks seen: the current one 1 / (t + 1), the replayed t / (t + 1).
      old = t.astype(jnp.float32) / (t + 1.0)
      old = old * (replay.size(context["buffer"]) > 0)
      loss = (1.0 - old) * ce + old * r_ce
      metrics["replay_ce"] = r_ce
      if method == "replay_distill":
        previous_logits = apply_fn(context["previous"], r["x"])
        term = old_class_distillation(
          scenario, data, t, r_logits, previous_logits, r["task"], config.distill.temperature
        )
        loss = loss + old * config.distill.weight * term
        metrics["distill"] = term
    return loss, metrics

  steps = train.make_train_steps(
    loss_fn,
    optimizer,
    num_steps=config.steps_per_task // config.rounds_per_task,
    batch_fn=batch_fn,
    donate=False,  # the context holds arrays of the state (previous model, buffer)
  )

  @jax.jit
  def finish(state: train.TrainState, data: StudyData, t: jax.Array) -> train.TrainState:
    extra = state.extra
    key = jax.random.fold_in(jax.random.split(jax.random.wrap_key_data(state.rng))[1], t)
    if method in ("ewc", "online_ewc"):
      k = config.ewc.num_examples
      pick = jax.random.randint(key, (k,), 0, data.own_count[t])
      idx = data.own[t, pick]
      mask = None
      if scenario == "task":
        mask = data.task_masks[t]
      elif scenario == "class":
        mask = data.seen_masks[t]
      fisher = continual.classifier_fisher(
        apply_fn,
        state.params,
        data.x[idx],
        data.y[idx],
        kind=config.ewc.fisher,
        key=jax.random.fold_in(key, 1),
        class_mask=mask,
        chunk_size=config.ewc.chunk_size,
      )
      decay = config.online_ewc.decay if method == "online_ewc" else None
      opt_state = continual.consolidate_opt_state(
        state.opt_state, state.params, fisher, decay=decay
      )
      state = state._replace(opt_state=opt_state)
    if _uses_previous(method):
      extra = extra._replace(previous=state.params)
    if _uses_buffer(method):
      idx = data.own[t]
      valid = jnp.arange(idx.shape[0]) < data.own_count[t]
      items = {"x": data.x[idx], "y": data.y[idx], "task": data.task[idx]}
      buffer = replay.add(extra.buffer, items, key, valid, policy=rep.policy)
      extra = extra._replace(buffer=buffer)
    return state._replace(extra=extra._replace(tasks_done=extra.tasks_done + 1))

  @jax.jit
  def evaluate(params, data: StudyData, t: jax.Array) -> jax.Array:
    num_tasks, m = data.test_y.shape
    logits = apply_fn(params, data.test_x.reshape(num_tasks * m, *data.test_x.shape[2:]))
    owner = jnp.repeat(jnp.arange(num_tasks), m)
    mask = output_mask(scenario, data, t, owner)
    predicted = jnp.argmax(jnp.where(mask, logits, -jnp.inf), axis=-1).reshape(num_tasks, m)
    correct = (predicted == data.test_y) & data.test_valid
    return jnp.sum(correct, axis=1) / jnp.sum(data.test_valid, axis=1)

  return Method(init, steps, finish, evaluate)


# ----------------------------------------------------------------------------- one run


def train_one_run(config, method: str, seed: int, pieces: Method, data: StudyData, workdir: str):
  """Trains one (method, seed) run through ``memjax.train.fit``; returns its result."""
  num_tasks = int(data.count.shape[0])
  per_task = config.rounds_per_task

  def context(state, t):
    out = {"data": data, "task": jnp.asarray(t, jnp.int32)}
    if _uses_previous(method):
      out["previous"] = state.extra.previous
    if _uses_buffer(method):
      out["buffer"] = state.extra.buffer
    return out

  def train_fn(state, round_index):
    t = round_index // per_task
    state, metrics = pieces.steps(state, None, context(state, t))
    if (round_index + 1) % per_task == 0:
      state = pieces.finish(state, data, jnp.asarray(t, jnp.int32))
    return state, metrics

  def eval_fn(state):
    t = jnp.maximum(state.extra.tasks_done - 1, 0)
    acc = np.asarray(jax.device_get(pieces.evaluate(state.params, data, t)))
    row = {f"acc_task_{j}": float(a) for j, a in enumerate(acc)}
    row["tasks_done"] = int(state.extra.tasks_done)
    row["average_accuracy"] = float(np.mean(acc[: max(int(state.extra.tasks_done), 1)]))
    return row

  result = train.fit(
    lambda: pieces.init(seed),
    train_fn,
    workdir=workdir,
    num_rounds=num_tasks * per_task,
    eval_fn=eval_fn,
    log_every=per_task,
    checkpoint_every=config.checkpoint_every_rounds,
    steps_per_round=config.steps_per_task // per_task,
    progress=config.progress_bar,
    desc=f"{config.name} {method} seed {seed}",
    postfix=("ce", "average_accuracy"),
  )
  acc = np.array([[row[f"acc_task_{j}"] for j in range(num_tasks)] for row in result.history])
  average = continual.average_accuracy(acc)
  forgetting = continual.forgetting(acc)
  steps = result.timed_rounds * (config.steps_per_task // per_task)
  return {
    "method": method,
    "seed": seed,
    "accuracy_matrix": acc.tolist(),
    "average_accuracy": average.tolist(),
    "forgetting": forgetting.tolist(),
    "final_average_accuracy": float(average[-1]),
    "final_forgetting": float(forgetting[-1]) if num_tasks > 1 else None,
    "backward_transfer": continual.backward_transfer(acc),
    "steps": int(result.state.step),
    "steps_per_second": steps / result.train_time_s if result.train_time_s else None,
    "wall_time_s": result.wall_time_s,
  }


# ----------------------------------------------------------------------------- the study


def _mean_sd(values) -> dict[str, float]:
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return {"mean": None, "sd": None, "n": 0}
  return {
    "mean": float(v.mean()),
    "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
    "n": int(v.size),
  }


def summarize(results: list[dict[str, Any]], methods) -> dict[str, Any]:
  """Per method: final average accuracy and forgetting (mean, sd over seeds), the curves
  after each task (means), the mean accuracy matrix."""
  out = {}
  for m in methods:
    runs = [r for r in results if r["method"] == m]
    if not runs:
      continue
    avg = np.array([r["average_accuracy"] for r in runs])
    forget = np.array([r["forgetting"] for r in runs], np.float64)
    out[m] = {
      "final_average_accuracy": _mean_sd([r["final_average_accuracy"] for r in runs]),
      "final_forgetting": _mean_sd([r["final_forgetting"] for r in runs]),
      "average_accuracy_after_each_task": avg.mean(axis=0).tolist(),
      "average_accuracy_sd_after_each_task": avg.std(
        axis=0, ddof=1 if len(runs) > 1 else 0
      ).tolist(),
      "forgetting_after_each_task": [None, *forget[:, 1:].mean(axis=0).tolist()],
      "mean_accuracy_matrix": np.mean([r["accuracy_matrix"] for r in runs], axis=0).tolist(),
      "seeds": [r["seed"] for r in runs],
    }
  return out


def plot_accuracy_per_task(path: str, summary: dict[str, Any], title: str) -> None:
  """One panel per method: each task's test accuracy (mean over seeds) after each task,
  and the average over the tasks seen (black)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  methods = list(summary)
  cols = min(4, len(methods))
  rows = -(-len(methods) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, m in zip(axes.ravel(), methods, strict=False):
    acc = np.asarray(summary[m]["mean_accuracy_matrix"])
    num_tasks = acc.shape[0]
    x = np.arange(1, num_tasks + 1)
    for j in range(num_tasks):
      ax.plot(x[j:], 100 * acc[j:, j], marker=".", label=f"task {j + 1}")
    ax.plot(
      x,
      100 * np.asarray(summary[m]["average_accuracy_after_each_task"]),
      "k--",
      lw=2,
      label="average",
    )
    ax.set_title(m, fontsize=10)
    ax.set_ylim(0, 101)
    ax.set_xticks(x)
    ax.set_xlabel("tasks trained")
  for ax in axes.ravel()[len(methods) :]:
    ax.axis("off")
  axes[0, 0].set_ylabel("test accuracy %")
  axes[0, 0].legend(fontsize=6)
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _table(config, summary) -> str:
  lines = [f"{config.name} ({config.scenario}-incremental), {len(config.seeds)} seeds:"]
  paper = config.compare_paper
  head = f"  {'method':<16}{'avg accuracy %':>20}{'forgetting %':>20}"
  lines.append(head + (f"{'paper %':>10}" if paper else ""))
  for m, s in summary.items():
    a, f = s["final_average_accuracy"], s["final_forgetting"]
    fs = f"{100 * f['mean']:6.1f} +- {100 * f['sd']:4.1f}" if f["mean"] is not None else "-"
    row = f"  {m:<16}{100 * a['mean']:>11.1f} +- {100 * a['sd']:4.1f}{fs:>20}"
    if paper:
      row += f"{PAPER[m]:>10.1f}" if m in PAPER else f"{'-':>10}"
    lines.append(row)
  if paper:
    lines.append(
      "  paper: van de Ven & Tolias 2019, Split-MNIST class-IL (different data); its replay "
      f"methods: DGR {PAPER['dgr']}%, DGR+distill {PAPER['dgr_distill']}%, "
      f"iCaRL {PAPER['icarl']}%"
    )
  return "\n".join(lines)


# A method's jitted pieces depend on the config's settings only (the data are arguments):
# a study run again in the same process (a notebook, the tests) reuses their compilations.
_COMPILED: collections.OrderedDict[str, Method] = collections.OrderedDict()
_COMPILED_MAX = 16
_PER_RUN_FIELDS = ("name", "seeds", "methods", "progress_bar", "plots", "compare_paper")


def _compiled(config, method: str, build) -> Method:
  """The cached :class:`Method` of ``(config's settings, method)``, built on a miss."""
  settings = {k: v for k, v in config.to_dict().items() if k not in _PER_RUN_FIELDS}
  key = json.dumps([settings, method], sort_keys=True, default=str)
  if key in _COMPILED:
    _COMPILED.move_to_end(key)
  else:
    _COMPILED[key] = build()
    while len(_COMPILED) > _COMPILED_MAX:
      _COMPILED.popitem(last=False)
  return _COMPILED[key]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every (method, seed) of the config (resuming), writes ``results.json`` and the
  plot, prints the table; returns the metrics written."""
  if config.study == "distill":
    from experiments.continual import distill_demo  # noqa: PLC0415

    return distill_demo.train_and_evaluate(config, workdir)
  if config.study != "continual":
    raise ValueError(f"config.study={config.study!r} must be 'continual' or 'distill'")
  if config.steps_per_task % config.rounds_per_task:
    raise ValueError(
      f"config.steps_per_task={config.steps_per_task} must be a multiple of "
      f"config.rounds_per_task={config.rounds_per_task}"
    )
  seq = load_sequence(config)
  apply_fn, init_params = make_model(config.model, seq.num_classes, seq.input_shape)
  example = {
    "x": jnp.zeros(seq.input_shape, jnp.float32),
    "y": jnp.zeros((), jnp.int32),
    "task": jnp.zeros((), jnp.int32),
  }
  datasets = {cumulative: make_data(seq, cumulative) for cumulative in (False, True)}

  def train_one(run: train.Run, directory: str) -> dict[str, Any]:
    method, seed = run.spec["method"], run.spec["seed"]
    pieces = _compiled(
      config,
      method,  # a copy: the jitted functions read the settings when they trace
      lambda: make_method(copy.deepcopy(config), method, apply_fn, init_params, example),
    )
    data = datasets[method == "joint"]
    return train_one_run(config, method, seed, pieces, data, directory)

  for m in config.methods:
    if m not in METHODS:
      raise ValueError(f"config.methods holds {m!r}; the methods are {METHODS}")
  runs = train.grid(method=list(config.methods), seed=list(config.seeds))
  results, wall = train.run_all(workdir, runs, train_one)
  summary = summarize(results, config.methods)
  metrics = {
    "scenario": config.scenario,
    "tasks": [t.classes.tolist() for t in seq.tasks] if seq.num_classes <= 20 else len(seq.tasks),
    "methods": summary,
    "runs": [
      {k: r[k] for k in ("method", "seed", "final_average_accuracy", "final_forgetting")}
      for r in results
    ],
    "paper": PAPER if config.compare_paper else None,
    "data": seq.info if seq.name != "permuted_digits" else {**seq.info, "permutations": "..."},
  }
  if config.plots:
    plot_accuracy_per_task(
      os.path.join(workdir, "accuracy_per_task.png"),
      summary,
      f"{config.name}: {config.scenario}-incremental, mean of {len(config.seeds)} seeds",
    )
  train.write_results(workdir, metrics, config, wall)
  print(_table(config, summary))
  print(f"results: {os.path.join(workdir, 'results.json')}")
  return metrics


__all__ = [
  "train_and_evaluate",
  "make_method",
  "make_data",
  "load_sequence",
  "summarize",
  "METHODS",
]
