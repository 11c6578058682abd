"""Trains and evaluates MemN2N on bAbI as in Sukhbaatar et al. 2015, Section 4.

The work is a list of *units*: one (task set, restart) training run each. Joint
training has one unit per restart (all tasks at once); per-task training has one per
(task, restart). Every unit trains with SGD (the paper; ``train.optimizer='adam'`` for
our 10k recipe) on the summed (not averaged) batch loss, gradients clipped to norm 40,
the learning rate halved every ``anneal_every`` epochs;
with linear start (LS) it first trains without the hops' softmax at
``ls_learning_rate`` until the validation loss stops decreasing. The best restart is
chosen on validation error (per task for per-task training).

Each unit checkpoints into ``workdir/checkpoints/unit_XXX`` (Orbax) and, when done,
writes ``workdir/units/unit_XXX.json``; a killed run resumes at the last checkpoint of
the first unfinished unit. The whole epoch is one jitted ``lax.scan`` over batches with
the data on device.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from experiments.babi import paper_results, synthetic
from memjax.models import memn2n
from memjax.train import Checkpointer, data_mesh, replicate, write_json_atomic, write_results
from memjax.train import clip as clip_lib
from memjax.train.compile import compiler_options
from memjax.train.parallel import batch_sharding

FAILED_ERROR = 5.0  # a task fails when its test error exceeds 5% (the paper's count)


class TrainState(NamedTuple):
  """Everything a unit's training carries between epochs (all arrays: checkpointable)."""

  params: Any
  opt_state: Any
  best_params: Any  # params at the best validation error so far
  rng: jax.Array  # uint32 key data [2]


# ----------------------------------------------------------------------------- data


def load_data(config: ml_collections.ConfigDict, tasks: list[int]):
  """The arrays of ``tasks`` (``memjax.data.babi.BabiArrays`` or the synthetic stand-in)."""
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
  from memjax.data import babi

  return babi.load_arrays(
    tasks,
    lang=data.lang,
    data_dir=data.data_dir or None,
    memory_size=data.memory_size,
    validation_fraction=data.validation_fraction,
    seed=data.split_seed,
  )


def _units(config) -> list[dict]:
  tasks = list(config.tasks)
  restarts = range(config.train.num_restarts)
  if config.mode == "joint":
    return [{"tasks": tasks, "restart": r} for r in restarts]
  if config.mode == "per_task":
    return [{"tasks": [t], "restart": r} for t in tasks for r in restarts]
  raise ValueError(f"config.mode={config.mode!r} must be 'joint' or 'per_task'")


# ----------------------------------------------------------------------------- model + steps


def make_model(config, vocab_size: int, sentence_size: int = 0) -> memn2n.MemN2N:
  m = config.model
  pe_length = m.get("pe_length", 0)
  if pe_length < 0:  # the reference code's fixed J: the data's longest sentence
    pe_length = sentence_size
  return memn2n.MemN2N(
    vocab_size=vocab_size,
    embedding_size=m.embedding_size,
    memory_size=config.data.memory_size,
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
  learning rate lives in the state."""
  per_param = config.train.get("clip_per_param", False)
  clip = clip_lib.clip_each_by_norm if per_param else clip_lib.clip_by_global_norm
  name = config.train.get("optimizer", "sgd")
  if name not in OPTIMIZERS:
    raise ValueError(f"train.optimizer={name!r} must be one of {sorted(OPTIMIZERS)}")
  return optax.chain(
    clip(config.train.max_grad_norm),
    optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=config.train.learning_rate),
  )


def init_state(config, model, sentence_size: int, seed: int) -> TrainState:
  rng = jax.random.PRNGKey(seed)
  rng, init_rng = jax.random.split(rng)
  story = jnp.zeros((1, config.data.memory_size, sentence_size), jnp.int32)
  params = model.init(init_rng, story, jnp.zeros((1, sentence_size), jnp.int32))
  opt_state = make_optimizer(config).init(params)
  return TrainState(params, opt_state, params, rng)


def _with_lr(opt_state, lr):
  clip_state, sgd_state = opt_state
  hyper = dict(sgd_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(lr, jnp.asarray(hyper["learning_rate"]).dtype)
  return (clip_state, sgd_state._replace(hyperparams=hyper))


def length_buckets(split: dict, sizes, memory_size: int, word_sizes=()) -> list[dict]:
  """Splits examples by story length (and sentence length): cuts each bucket's padding.

  Stories are left-aligned, so a story of n <= M_b sentences loses nothing when cut to
  M_b rows, and the model's answer is unchanged; most bAbI stories are short (median 7
  sentences in en), so this saves most of the work on empty memory rows. Sentences and
  questions are left-aligned too: each bucket is cut to its longest one, and
  ``word_sizes`` splits the buckets further by that length (bAbI en: half the examples
  have no sentence over 7 words, a tenth have one of 10-11), so short sentences are not
  padded to the longest in the data.

  Args:
    split: arrays with ``story [E, M, S]``, ``query [E, S]``, ``answer [E]``.
    sizes: bucket row counts (those >= memory_size are dropped; memory_size is added).
    memory_size: M.
    word_sizes: bucket sentence lengths (words); () = one per row bucket.

  Returns:
    The non-empty buckets, ordered by (rows, words), each a dict of numpy arrays with
    ``story [E_b, M_b, S_b]``.
  """
  sizes = sorted({int(x) for x in sizes if 0 < x < memory_size} | {memory_size})
  count = np.sum(np.any(split["story"] != 0, axis=-1), axis=-1)
  words = np.maximum(
    np.max(np.sum(split["story"] != 0, axis=-1), axis=-1), np.sum(split["query"] != 0, axis=-1)
  )
  longest = split["story"].shape[-1]
  word_sizes = sorted({int(x) for x in word_sizes if 0 < x < longest} | {longest})
  bucket = np.searchsorted(np.asarray(sizes), count)  # smallest size >= count
  word_bucket = np.searchsorted(np.asarray(word_sizes), words)
  out = []
  for b in range(len(sizes)):
    for w in range(len(word_sizes)):
      idx = np.flatnonzero((bucket == b) & (word_bucket == w))
      if idx.size:
        rows = max(1, int(count[idx].max()))  # no bucket keeps rows that are empty in all
        cols = max(1, int(words[idx].max()))  # words are left-aligned too: cut S as well
        out.append(
          {
            "story": split["story"][idx, :rows, :cols],
            "query": split["query"][idx, :cols],
            "answer": split["answer"][idx],
          }
        )
  return out


_COMPILED: dict = {}  # (kind, model, settings) -> jitted fn: units with equal shapes share it


def _cached(kind: str, model, config, mesh, build):
  t = config.train
  key = (
    kind,
    model,
    t.get("clip_per_param", False),
    t.get("optimizer", "sgd"),
    t.batch_size,
    t.random_noise,
    t.max_grad_norm,
    t.learning_rate,
    t.eval_batch_size,
    config.data.memory_size,
    mesh,
  )
  if key not in _COMPILED:
    _COMPILED[key] = build(config, model, mesh)
  return _COMPILED[key]


def make_train_epoch(config, model, mesh):
  """A jitted ``(state, buckets, lr, linear) -> (state, mean_loss)`` over one epoch.

  Each length bucket is shuffled and cut into batches (the last one padded with
  zero-weight examples); the batches of all buckets are shuffled together and run as one
  ``lax.scan`` whose step picks the bucket's compiled branch with ``lax.switch``.
  """
  optimizer = make_optimizer(config)
  batch_size = config.train.batch_size
  noise = config.train.random_noise
  num_times = config.data.memory_size
  shard = mesh.size > 1 and batch_size % mesh.size == 0

  draws = memn2n.random_noise_draws(num_times, noise) if noise > 0 else 1

  def loss_fn(params, story, query, answer, weight, uniforms, linear):
    ages = None
    if noise > 0:
      ages = memn2n.random_noise_ages_from_uniform(uniforms, story, noise, num_times)
    logits, _ = model.apply(params, story, query, ages=ages, linear=linear)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, answer)
    return jnp.sum(losses * weight)  # summed, not averaged, over the batch (the paper)

  @functools.partial(jax.jit, compiler_options=compiler_options())
  def train_epoch(state: TrainState, buckets: list, lr: jax.Array, linear: jax.Array):
    rng = jax.random.wrap_key_data(state.rng)
    rng, order_rng, step_rng, *bucket_rngs = jax.random.split(rng, 3 + len(buckets))
    orders, weights, ids = [], [], []
    for b, (data, key) in enumerate(zip(buckets, bucket_rngs, strict=True)):
      n = data["answer"].shape[0]
      num_batches = math.ceil(n / batch_size)
      perm = jax.random.permutation(key, n)
      slots = jnp.arange(num_batches * batch_size)
      orders.append(perm[slots % n].reshape(num_batches, batch_size))
      weights.append((slots < n).astype(jnp.float32).reshape(num_batches, batch_size))
      ids.append(jnp.full((num_batches,), b, jnp.int32))
    shuffle = jax.random.permutation(order_rng, sum(o.shape[0] for o in orders))
    order = jnp.concatenate(orders)[shuffle]
    weight = jnp.concatenate(weights)[shuffle]
    bucket_id = jnp.concatenate(ids)[shuffle]
    # RN's random numbers for the whole epoch in one draw (not one small draw per step).
    step_uniforms = jax.random.uniform(step_rng, order.shape + (draws,))
    opt_state = _with_lr(state.opt_state, lr)

    def branch(data):
      def run(params, opt_state, idx, w, r):
        batch = (data["story"][idx], data["query"][idx], data["answer"][idx], w, r)
        if shard:
          batch = tuple(
            jax.lax.with_sharding_constraint(x, batch_sharding(mesh, 0, x.ndim)) for x in batch
          )
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch, linear)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

      return run

    branches = [branch(data) for data in buckets]

    def step(carry, xs):
      params, opt_state = carry
      b, idx, w, r = xs
      params, opt_state, loss = jax.lax.switch(b, branches, params, opt_state, idx, w, r)
      return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
      step, (state.params, opt_state), (bucket_id, order, weight, step_uniforms)
    )
    total = sum(data["answer"].shape[0] for data in buckets)
    new_state = TrainState(params, opt_state, state.best_params, jax.random.key_data(rng))
    return new_state, jnp.sum(losses) / total

  return train_epoch


def make_evaluate(config, model, mesh=None):
  """``(params, split, linear) -> (loss [E], correct [E])`` in fixed-size jitted chunks."""

  @functools.partial(jax.jit, compiler_options=compiler_options())
  def _chunk(params, story, query, answer, linear):
    logits, _ = model.apply(params, story, query, linear=linear)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, answer)
    return loss, jnp.argmax(logits, -1) == answer

  def evaluate(params, split: dict, linear: bool = False):
    (split,) = length_buckets(split, (), config.data.memory_size)  # trim empty rows / words
    n = split["answer"].shape[0]
    chunk = min(config.train.eval_batch_size, n)
    losses, correct = [], []
    for start in range(0, n, chunk):
      s = slice(start, start + chunk)
      story, query, answer = split["story"][s], split["query"][s], split["answer"][s]
      m = answer.shape[0]
      if m < chunk:  # pad to the chunk size: one compiled shape
        story = np.concatenate([story, np.zeros((chunk - m, *story.shape[1:]), story.dtype)])
        query = np.concatenate([query, np.zeros((chunk - m, *query.shape[1:]), query.dtype)])
        answer = np.concatenate([answer, np.zeros((chunk - m,), answer.dtype)])
      loss, ok = _chunk(params, story, query, answer, jnp.asarray(linear))
      losses.append(np.asarray(loss)[:m])
      correct.append(np.asarray(ok)[:m])
    return np.concatenate(losses), np.concatenate(correct)

  return evaluate


def per_task_error(correct: np.ndarray, task: np.ndarray) -> dict[int, float]:
  """Test error (%) per task id."""
  return {int(t): float(100.0 * (1.0 - correct[task == t].mean())) for t in np.unique(task)}


# ----------------------------------------------------------------------------- one unit


def _unit_dir(workdir, index):
  return os.path.join(workdir, "checkpoints", f"unit_{index:03d}")


def _unit_json(workdir, index):
  return os.path.join(workdir, "units", f"unit_{index:03d}.json")


def train_unit(config, workdir: str, index: int, unit: dict, data, mesh) -> dict:
  """Trains one (tasks, restart) unit to the end (resuming its checkpoint) and evaluates it."""
  tc = config.train
  model = make_model(config, len(data.vocab), data.sentence_size)
  seed = tc.seed + 1000 * unit["restart"] + unit["tasks"][0] * (config.mode == "per_task")
  fresh = init_state(config, model, data.sentence_size, seed)
  meta = {
    "epoch": 0,
    "phase": "linear" if tc.linear_start else "softmax",
    "switch_epoch": 0,
    "ls_best_val_loss": None,
    "best_val_error": None,
    "best_epoch": None,
    "train_seconds": 0.0,
    "examples": 0,
    "history": [],
  }
  ckpt = Checkpointer(_unit_dir(workdir, index), max_to_keep=1)
  restored = ckpt.restore_latest(jax.eval_shape(lambda: fresh))
  state = fresh
  if restored is not None:
    _, state, meta = restored
    print(f"unit {index}: resumed at epoch {meta['epoch']} ({meta['phase']} phase)")
  state = replicate(state, mesh)
  train = replicate(
    length_buckets(
      data.train, tc.bucket_sizes, config.data.memory_size, tc.get("word_bucket_sizes", ())
    ),
    mesh,
  )
  train_epoch = _cached("train", model, config, mesh, make_train_epoch)
  evaluate = _cached("evaluate", model, config, mesh, make_evaluate)

  max_epochs = tc.num_epochs + (tc.ls_max_epochs if tc.linear_start else 0)
  desc = f"unit {index} tasks={_task_label(unit['tasks'])} restart={unit['restart']}"
  bar = tqdm.tqdm(total=max_epochs, initial=meta["epoch"], desc=desc, leave=False)
  n = data.train["answer"].shape[0]
  compiled = False
  while True:
    epoch = meta["epoch"]
    linear = meta["phase"] == "linear"
    if not linear and epoch - meta["switch_epoch"] >= tc.num_epochs:
      break
    if linear:
      lr = tc.ls_learning_rate
    else:
      anneals = (epoch - meta["switch_epoch"]) // tc.anneal_every
      lr = tc.learning_rate * tc.anneal_factor**anneals
    start = time.time()
    state, train_loss = train_epoch(state, train, jnp.float32(lr), jnp.asarray(linear))
    train_loss = float(train_loss)
    seconds = time.time() - start
    if compiled:  # throughput excludes the epoch that compiled the step
      meta["train_seconds"] += seconds
      meta["examples"] += n
    compiled = True
    val_loss, val_ok = evaluate(state.params, data.validation, linear)
    val_loss, val_error = float(val_loss.mean()), float(100 * (1 - val_ok.mean()))
    meta["history"].append(
      {
        "epoch": epoch,
        "lr": lr,
        "linear": linear,
        "seconds": seconds,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_error": val_error,
      }
    )
    meta["epoch"] = epoch + 1
    if linear:
      best = meta["ls_best_val_loss"]
      if best is None or val_loss < best:
        meta["ls_best_val_loss"], meta["ls_best_epoch"] = val_loss, epoch
      stalled = tc.ls_patience > 0 and epoch - meta["ls_best_epoch"] >= tc.ls_patience
      if stalled or epoch + 1 >= tc.ls_max_epochs:  # re-insert the softmax
        meta["phase"], meta["switch_epoch"] = "softmax", epoch + 1
    if not linear:  # keep the softmax-phase params with the best validation error
      best = meta["best_val_error"]
      if not tc.keep_best or best is None or val_error <= best:
        meta["best_val_error"], meta["best_epoch"] = val_error, epoch
        state = state._replace(best_params=state.params)
    bar.update(1)
    bar.set_postfix(
      phase=meta["phase"][:3], lr=f"{lr:.4g}", loss=f"{train_loss:.3f}", val_err=f"{val_error:.1f}"
    )
    if meta["epoch"] % tc.checkpoint_every_epochs == 0:
      ckpt.save(meta["epoch"], state, meta)
  bar.close()
  if ckpt.latest_step() != meta["epoch"]:
    ckpt.save(meta["epoch"], state, meta)
  ckpt.close()

  params = state.best_params
  result = {"index": index, "tasks": unit["tasks"], "restart": unit["restart"]}
  for split in ("train", "validation", "test"):
    _, ok = evaluate(params, getattr(data, split))
    result[f"{split}_error"] = float(100 * (1 - ok.mean()))
    result[f"{split}_task_error"] = per_task_error(ok, getattr(data, split)["task"])
  result.update(
    best_epoch=meta["best_epoch"],
    switch_epoch=meta["switch_epoch"],
    epochs=meta["epoch"],
    train_seconds=meta["train_seconds"],
    examples=meta["examples"],
    total_train_seconds=sum(h["seconds"] for h in meta["history"]),
    vocab=json.loads(data.vocab.to_json()),
    sentence_size=data.sentence_size,
    vocab_size=len(data.vocab),
    history=meta["history"],
    fallback_tasks=list((data.metadata or {}).get("fallback_tasks") or []),
  )
  write_json_atomic(_unit_json(workdir, index), result)
  return result


def _task_label(tasks):
  return "all" if len(tasks) == 20 else ",".join(map(str, tasks))


# ----------------------------------------------------------------------------- the experiment


def select(config, results: list[dict]) -> dict[int, dict]:
  """The chosen unit per task: lowest validation error (per task in per-task mode); ties go
  to the earlier unit (the lower restart)."""
  chosen = {}
  if config.mode == "joint":
    best = min(results, key=lambda r: (r["validation_error"], r["index"]))
    return {t: best for t in config.tasks}
  for t in config.tasks:
    mine = [r for r in results if r["tasks"] == [t]]
    chosen[t] = min(mine, key=lambda r: (r["validation_error"], r["index"]))
  return chosen


def _by_task(table: dict, task: int):
  return table[task] if task in table else table[str(task)]  # JSON turns keys into str


def summarize(config, results: list[dict], wall_time: float) -> dict:
  chosen = select(config, results)
  test = {t: _by_task(chosen[t]["test_task_error"], t) for t in config.tasks}
  errors = np.array(list(test.values()))
  examples = sum(r["examples"] for r in results)
  seconds = sum(r["train_seconds"] for r in results)
  paper = paper_results.lookup(config.paper_setting)
  metrics = {
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
    "paper": paper,
  }
  return metrics


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
  os.makedirs(workdir, exist_ok=True)
  mesh = data_mesh(config.num_devices or None)
  progress_path = os.path.join(workdir, "progress.json")
  progress = {"wall_time_s": 0.0}
  if os.path.exists(progress_path):
    with open(progress_path) as f:
      progress = json.load(f)
  session_start = time.time()
  units = _units(config)
  results, data, data_tasks = [], None, None
  fallback = set()
  for index, unit in enumerate(units):
    path = _unit_json(workdir, index)
    if os.path.exists(path):
      with open(path) as f:
        results.append(json.load(f))
      continue
    if data is None or (config.mode == "per_task" and data_tasks != unit["tasks"]):
      load_tasks = list(config.tasks) if config.mode == "joint" else unit["tasks"]
      data, data_tasks = load_data(config, load_tasks), unit["tasks"]
      for t in data.metadata.get("fallback_tasks") or []:
        if t not in fallback:
          print(
            f"note: {config.data.lang} task {t} trains on the 1k training file "
            "(the 10k archive lacks it)"
          )
        fallback.add(t)
    results.append(train_unit(config, workdir, index, unit, data, mesh))
    progress["wall_time_s"] += time.time() - session_start
    session_start = time.time()
    write_json_atomic(progress_path, progress)
  wall = progress["wall_time_s"] + time.time() - session_start
  metrics = summarize(config, results, wall)
  for r in results:  # also for units restored from disk
    fallback |= set(r.get("fallback_tasks", []))
  write_results(
    workdir,
    metrics,
    config,
    wall,
    extra={
      "fallback_tasks_on_1k_training_file": sorted(fallback),
      "units": [{k: v for k, v in r.items() if k not in ("history", "vocab")} for r in results],
    },
  )
  print(format_table(metrics))
  print(
    f"train examples/s: {metrics['train_examples_per_second']:.0f}   wall time: {wall:.1f} s"
    f"   results: {os.path.join(workdir, 'results.json')}"
  )
  return metrics
