"""Trains and evaluates MemN2N on bAbI as in Sukhbaatar et al. 2015, Section 4.

The study on ``memjax.train``: the work is a list of runs ("units"): one (task set,
restart) each. Joint training has one unit per restart (all tasks at once); per-task
training has one per (task, restart). Every unit trains with SGD (the paper;
``train.optimizer='adam'`` for our 10k recipe) on the summed (not averaged) batch loss,
gradients clipped to norm 40, the learning rate halved every ``anneal_every`` epochs;
with linear start (LS) it first trains without the hops' softmax at ``ls_learning_rate``
until the validation loss stops decreasing (a hook switches the phase). The best restart
is chosen on validation error (per task for per-task training).

``memjax.train.run_all`` runs the units (``workdir/runs/unit_XXX/``: checkpoints,
metrics.jsonl, result.json; a killed run resumes at the last checkpoint of the first
unfinished unit) and ``memjax.train.fit`` each unit's epochs. An epoch is one jitted
``lax.scan`` over the batches of all length buckets, with the data on device.
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.babi import paper_results
from memjax import train
from memjax.data import babi
from memjax.data.babi import synthetic
from memjax.models import memn2n
from memjax.train import batches, recipes
from memjax.train import clip as clip_lib

FAILED_ERROR = 5.0  # a task fails when its test error exceeds 5% (the paper's count)


class Progress(NamedTuple):
  """A unit's state beside the parameters (checkpointed with them)."""

  best_params: Any  # the softmax-phase params with the best validation error so far
  linear: jax.Array  # [] bool: in the linear-start phase
  switch_epoch: jax.Array  # [] int32 the first softmax-phase epoch
  ls_best_val_loss: jax.Array  # [] float32 (inf before the first LS epoch)
  ls_best_epoch: jax.Array  # [] int32
  best_val_error: jax.Array  # [] float32 (inf before the first softmax epoch)
  best_epoch: jax.Array  # [] int32 (-1 before the first softmax epoch)


# ----------------------------------------------------------------------------- data


def load_data(config: ml_collections.ConfigDict, tasks: list[int]) -> babi.BabiArrays:
  """The arrays of ``tasks`` (``memjax.data.babi.load_arrays`` or the synthetic stand-in)."""
  data = config.data
  if data.source == "synthetic":
    return synthetic.load_arrays(
      num_train=data.synthetic_num_train,
      num_test=data.synthetic_num_test,
      memory_size=data.memory_size,
      max_sentences=data.synthetic_max_sentences,
      validation_fraction=data.validation_fraction,
      seed=data.split_seed,
    )
  if data.source != "babi":
    raise ValueError(f"config.data.source={data.source!r} must be 'babi' or 'synthetic'")
  return babi.load_arrays(
    tasks,
    lang=data.lang,
    data_dir=data.data_dir or None,
    memory_size=data.memory_size,
    validation_fraction=data.validation_fraction,
    seed=data.split_seed,
    tfds_dir=data.get("tfds_dir") or None,
    max_bytes=int(data.get("max_array_gib", 8.0) * 2**30),
  )


def data_record(config: ml_collections.ConfigDict, loaded: list[babi.BabiArrays]) -> dict:
  """What ``results.json`` says about the data: the source, and for bAbI the resolved
  data root, the files read with their MD5 and SHA-256, the content keys and the cache
  folders of the prepared data (``memjax.data.babi.load_arrays``'s ``metadata['data']``),
  merged over every load of the run (per-task mode loads each task)."""
  record: dict[str, Any] = {"source": config.data.source}
  if config.data.source == "babi":
    record["lang"] = config.data.lang
  for data in loaded:
    provenance = (data.metadata or {}).get("data") or {}
    for key, value in provenance.items():
      if isinstance(value, dict):
        record.setdefault(key, {}).update(value)
      else:
        record.setdefault(key, value)
  return record


def units(config) -> list[train.Run]:
  """The study's runs: ``unit_XXX`` with spec ``{'tasks': [...], 'restart': r}``."""
  tasks = list(config.tasks)
  restarts = range(config.train.num_restarts)
  if config.mode == "joint":
    specs = [{"tasks": tasks, "restart": r} for r in restarts]
  elif config.mode == "per_task":
    specs = [{"tasks": [t], "restart": r} for t in tasks for r in restarts]
  else:
    raise ValueError(f"config.mode={config.mode!r} must be 'joint' or 'per_task'")
  return [train.Run(f"unit_{i:03d}", spec) for i, spec in enumerate(specs)]


# ----------------------------------------------------------------------------- model


def make_model(config, vocab_size: int, sentence_size: int = 0) -> memn2n.MemN2N:
  m = config.model
  pe_length = m.get("pe_length", 0)
  if pe_length < 0:  # the reference code's fixed J: the data's longest sentence
    pe_length = sentence_size
  return memn2n.MemN2N(
    vocab_size=vocab_size,
    embedding_size=m.embedding_size,
    num_slots=config.data.memory_size,
    num_hops=m.num_hops,
    encoding=m.encoding,
    temporal=m.temporal,
    tying=m.tying,
    relu=m.relu,
    init_stddev=m.init_stddev,
    pe_length=pe_length,
    empty_attention=m.get("empty_attention", False),
  )


OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


def make_optimizer(config) -> optax.GradientTransformation:
  """Clip the gradient norm, then ``train.optimizer`` (SGD, the paper's, by default) whose
  learning rate lives in the state (``memjax.train.set_hyperparams``)."""
  per_param = config.train.get("clip_per_param", False)
  clip = clip_lib.clip_each_by_norm if per_param else clip_lib.clip_by_global_norm
  name = config.train.get("optimizer", "sgd")
  if name not in OPTIMIZERS:
    raise ValueError(f"train.optimizer={name!r} must be one of {sorted(OPTIMIZERS)}")
  return optax.chain(
    clip(config.train.max_grad_norm),
    optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=config.train.learning_rate),
  )


def init_state(config, model, sentence_size: int, seed: int) -> train.TrainState:
  rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
  story = jnp.zeros((1, config.data.memory_size, sentence_size), jnp.int32)
  params = model.init(init_rng, story, jnp.zeros((1, sentence_size), jnp.int32))
  progress = Progress(
    best_params=jax.tree.map(jnp.copy, params),  # own buffers: the state is donated
    linear=jnp.asarray(bool(config.train.linear_start)),
    switch_epoch=jnp.asarray(0, jnp.int32),
    ls_best_val_loss=jnp.asarray(jnp.inf, jnp.float32),
    ls_best_epoch=jnp.asarray(0, jnp.int32),
    best_val_error=jnp.asarray(jnp.inf, jnp.float32),
    best_epoch=jnp.asarray(-1, jnp.int32),
  )
  return train.TrainState.create(params, make_optimizer(config), rng, progress)


# ----------------------------------------------------------------------------- one epoch


def _settings(config, mesh) -> tuple:
  t = config.train
  return (
    t.get("clip_per_param", False),
    t.get("optimizer", "sgd"),
    t.batch_size,
    t.random_noise,
    t.max_grad_norm,
    t.learning_rate,
    t.eval_batch_size,
    t.get("compute_dtype", ""),
    config.data.memory_size,
    mesh,
  )


_COMPILED: dict = {}  # (kind, model, settings, ...) -> jitted fn: units of equal shapes share it


def make_train_epoch(config, model, mesh, num_buckets: int):
  """``memjax.train.recipes.memn2n_train_epoch`` for this config, compiled once for all
  units of equal shapes: ``(state, buckets, linear) -> (state, {'loss': [S]})``."""
  key = ("train", model, _settings(config, mesh), num_buckets)
  if key in _COMPILED:
    return _COMPILED[key]
  dtype = config.train.get("compute_dtype", "")
  train_epoch = recipes.memn2n_train_epoch(
    model,
    make_optimizer(config),
    batch_size=config.train.batch_size,
    random_noise=config.train.random_noise,
    num_buckets=num_buckets,
    mesh=mesh,
    compute_dtype=jnp.dtype(dtype) if dtype else None,
  )
  _COMPILED[key] = train_epoch
  return train_epoch


def make_evaluate(config, model, mesh=None):
  """``(params, split, linear) -> (loss [E], correct [E])`` in fixed-size jitted chunks."""
  key = ("evaluate", model, _settings(config, mesh))
  if key in _COMPILED:
    return _COMPILED[key]

  @functools.partial(jax.jit, compiler_options=train.compiler_options())
  def _chunk(params, story, query, answer, linear):
    logits, _ = model.apply(params, story, query, linear=linear)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, answer)
    return loss, jnp.argmax(logits, -1) == answer

  def evaluate(params, split: dict, linear: bool = False):
    (split,) = babi.length_buckets(split, (), config.data.memory_size)  # trim empty rows/words
    return batches.map_in_chunks(
      lambda story, query, answer: _chunk(params, story, query, answer, jnp.asarray(linear)),
      split,
      config.train.eval_batch_size,
    )

  _COMPILED[key] = evaluate
  return evaluate


def per_task_error(correct: np.ndarray, task: np.ndarray) -> dict[int, float]:
  """Test error (%) per task id."""
  return {int(t): float(100.0 * (1.0 - correct[task == t].mean())) for t in np.unique(task)}


# ----------------------------------------------------------------------------- one unit


def linear_start_and_best(config):
  """The hook of every epoch: the LS phase switch, the best parameters, the end.

  LS ends when the validation loss has not decreased for ``ls_patience`` epochs or after
  ``ls_max_epochs``; in the softmax phase the parameters with the lowest validation error
  are kept (``keep_best``); the unit stops after ``num_epochs`` softmax epochs.
  """
  tc = config.train

  def hook(state: train.TrainState, row: dict) -> tuple[train.TrainState, bool]:
    p = state.extra
    epoch = row["round"] - 1
    row["epoch"] = epoch
    linear = bool(row["linear"])
    if linear:
      if row["val_loss"] < float(p.ls_best_val_loss):
        p = p._replace(
          ls_best_val_loss=jnp.float32(row["val_loss"]), ls_best_epoch=jnp.int32(epoch)
        )
      stalled = tc.ls_patience > 0 and epoch - int(p.ls_best_epoch) >= tc.ls_patience
      if stalled or epoch + 1 >= tc.ls_max_epochs:  # re-insert the softmax
        p = p._replace(linear=jnp.asarray(False), switch_epoch=jnp.int32(epoch + 1))
    else:  # keep the softmax-phase params with the best validation error
      if not tc.keep_best or row["val_error"] <= float(p.best_val_error):
        best = jax.tree.map(jnp.copy, state.params)  # a copy: the next epoch donates params
        p = p._replace(
          best_params=best,
          best_val_error=jnp.float32(row["val_error"]),
          best_epoch=jnp.int32(epoch),
        )
    done = not bool(p.linear) and epoch + 1 - int(p.switch_epoch) >= tc.num_epochs
    return state._replace(extra=p), done

  return hook


def train_unit(config, run: train.Run, directory: str, data, mesh) -> dict:
  """Trains one (tasks, restart) unit to the end (resuming its checkpoint) and evaluates it."""
  tc = config.train
  tasks, restart = run.spec["tasks"], run.spec["restart"]
  model = make_model(config, len(data.vocab), data.sentence_size)
  seed = tc.seed + 1000 * restart + tasks[0] * (config.mode == "per_task")
  word_sizes = tc.get("word_bucket_sizes", ())
  buckets = babi.length_buckets(data.train, tc.bucket_sizes, config.data.memory_size, word_sizes)
  buckets = train.replicate(buckets, mesh)
  train_epoch = make_train_epoch(config, model, mesh, len(buckets))
  evaluate = make_evaluate(config, model, mesh)
  n = data.train["answer"].shape[0]

  def train_fn(state, epoch):
    p = state.extra
    linear = bool(p.linear)
    if linear:
      lr = tc.ls_learning_rate
    else:
      lr = tc.learning_rate * tc.anneal_factor ** ((epoch - int(p.switch_epoch)) // tc.anneal_every)
    state = state._replace(opt_state=train.set_hyperparams(state.opt_state, learning_rate=lr))
    state, metrics = train_epoch(state, buckets, linear)
    return state, {"train_loss": jnp.sum(metrics["loss"]) / n, "lr": lr, "linear": linear}

  def eval_fn(state):
    val_loss, val_ok = evaluate(state.params, data.validation, bool(state.extra.linear))
    return {"val_loss": float(val_loss.mean()), "val_error": float(100 * (1 - val_ok.mean()))}

  label = "all" if len(tasks) == 20 else ",".join(map(str, tasks))
  result = train.fit(
    lambda: init_state(config, model, data.sentence_size, seed),
    train_fn,
    workdir=directory,
    num_rounds=tc.num_epochs + (tc.ls_max_epochs if tc.linear_start else 0),
    eval_fn=eval_fn,
    hooks=[linear_start_and_best(config)],
    checkpoint_every=tc.checkpoint_every_epochs,
    mesh=mesh,
    desc=f"{run.name} tasks={label} restart={restart}",
    postfix=("lr", "train_loss", "val_error"),
    max_to_keep=2,  # a damaged newest checkpoint falls back to the one before
  )
  progress = result.state.extra
  out = {"index": int(run.name.split("_")[-1]), "tasks": tasks, "restart": restart}
  for split in ("train", "validation", "test"):
    _, ok = evaluate(progress.best_params, getattr(data, split))
    out[f"{split}_error"] = float(100 * (1 - ok.mean()))
    out[f"{split}_task_error"] = per_task_error(ok, getattr(data, split)["task"])
  out.update(
    best_epoch=int(progress.best_epoch),
    switch_epoch=int(progress.switch_epoch),
    epochs=result.rounds,
    train_seconds=result.train_time_s,
    examples=result.timed_rounds * n,
    total_train_seconds=sum(h["seconds"] for h in result.history),
    vocab=json.loads(data.vocab.to_json()),
    sentence_size=data.sentence_size,
    vocab_size=len(data.vocab),
    history=result.history,
    fallback_tasks=list((data.metadata or {}).get("fallback_tasks") or []),
    data_fingerprints=dict(((data.metadata or {}).get("data") or {}).get("fingerprints") or {}),
  )
  return out


# ----------------------------------------------------------------------------- the experiment


def select(config, results: list[dict]) -> dict[int, dict]:
  """The chosen unit per task: lowest validation error (per task in per-task mode); ties go
  to the earlier unit (the lower restart)."""
  best = train.select_best(
    results, score=lambda r: r["validation_error"], group=lambda r: tuple(r["tasks"])
  )
  return {t: best[tuple(r_tasks)] for r_tasks in best for t in r_tasks if t in config.tasks}


def _by_task(table: dict, task: int):
  return table[task] if task in table else table[str(task)]  # JSON turns keys into str


def summarize(config, results: list[dict], wall_time: float) -> dict:
  chosen = select(config, results)
  test = {t: _by_task(chosen[t]["test_task_error"], t) for t in config.tasks}
  errors = np.array(list(test.values()))
  examples = sum(r["examples"] for r in results)
  seconds = sum(r["train_seconds"] for r in results)
  return {
    "per_task_test_error": test,
    "mean_test_error": float(errors.mean()),
    "failed_tasks": int(np.sum(errors > FAILED_ERROR)),
    "selected_unit": {t: chosen[t]["index"] for t in config.tasks},
    "selected_restart": {t: chosen[t]["restart"] for t in config.tasks},
    "restart_mean_test_error": {r["index"]: r["test_error"] for r in results},
    "train_examples_per_second": examples / seconds if seconds else None,  # after compiling
    "train_seconds": seconds,
    "wall_time_s": wall_time,
    "paper_setting": config.paper_setting,
    "paper": paper_results.lookup(config.paper_setting),
  }


def format_table(metrics: dict) -> str:
  paper = metrics["paper"] or {}
  per_task = paper.get("per_task") or {}
  lines = [f"{'task':>4}  {'ours %':>7}  {'paper %':>7}"]
  for t, err in metrics["per_task_test_error"].items():
    p = per_task.get(int(t))
    lines.append(f"{t:>4}  {err:7.1f}  {'' if p is None else f'{p:7.1f}':>7}")
  pm, pf = paper.get("mean_error"), paper.get("failed_tasks")
  lines.append(
    f"{'mean':>4}  {metrics['mean_test_error']:7.1f}  {'' if pm is None else f'{pm:7.1f}':>7}"
  )
  lines.append(f"{'fail':>4}  {metrics['failed_tasks']:7d}  {'' if pf is None else f'{pf:7d}':>7}")
  lines.append(
    f"(failed = test error > {FAILED_ERROR:.0f}%; paper setting: "
    f"{metrics['paper_setting']}; source: {paper.get('source', 'n/a')})"
  )
  return "\n".join(lines)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every unit of ``config`` (resuming), writes ``results.json`` and returns its metrics."""
  mesh = train.data_mesh(config.num_devices or None)
  train.check_batch_divisible(config.train.batch_size, mesh, "config.train.batch_size")
  loaded: dict[str, Any] = {"tasks": None, "data": None}
  every_load: list[babi.BabiArrays] = []
  fallback: set[int] = set()

  def train_one(run: train.Run, directory: str) -> dict:
    tasks = list(config.tasks) if config.mode == "joint" else run.spec["tasks"]
    if loaded["tasks"] != tasks:
      loaded["tasks"], loaded["data"] = tasks, load_data(config, tasks)
      every_load.append(loaded["data"])
      for t in loaded["data"].metadata.get("fallback_tasks") or []:
        if t not in fallback:
          print(
            f"note: {config.data.lang} task {t} trains on the 1k training file "
            "(the 10k archive lacks it)"
          )
        fallback.add(t)
    return train_unit(config, run, directory, loaded["data"], mesh)

  results, wall = train.run_all(workdir, units(config), train_one)
  metrics = summarize(config, results, wall)
  for r in results:  # also for units restored from disk
    fallback |= set(r.get("fallback_tasks", []))
  data = data_record(config, every_load)
  fingerprints: dict[str, set[str]] = {}
  for r in results:  # the data each unit trained on (restored units were not reloaded)
    for name, key in (r.get("data_fingerprints") or {}).items():
      fingerprints.setdefault(name, set()).add(key)
  if not every_load and fingerprints:  # every unit restored from disk
    data["fingerprints"] = {name: min(keys) for name, keys in sorted(fingerprints.items())}
  changed = sorted(name for name, keys in fingerprints.items() if len(keys) > 1)
  if changed:
    data["warning"] = f"the units trained on different data files for {changed} (resumed?)"
    print(f"warning: {data['warning']}")
  drop = ("history", "vocab", "spec")
  train.write_results(
    workdir,
    metrics,
    config,
    wall,
    extra={
      "data": data,
      "fallback_tasks_on_1k_training_file": sorted(fallback),
      "units": [{k: v for k, v in r.items() if k not in drop} for r in results],
    },
  )
  print(format_table(metrics))
  print(
    f"train examples/s: {metrics['train_examples_per_second']:.0f}   wall time: {wall:.1f} s"
    f"   results: {workdir}/results.json"
  )
  return metrics
