"""Trains an NTM or an LSTM baseline on the NTM paper's algorithmic tasks.

The study on ``memjax.train``: its model (``memjax.models.ntm``), its loss (cost in bits
per sequence on batches generated inside the jitted step, cut to static length buckets),
a held-out evaluation, a convergence hook, and its outputs: a learning curve of the cost
against sequences seen, length generalisation, plots like the paper's figures and
``workdir/results.json``. ``memjax.train.fit`` runs the loop (checkpoints, resume after a
kill, progress, history in ``workdir/metrics.jsonl``).
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memjax import train
from memjax.data import algorithmic
from memjax.memory.ntm import NTMCell
from memjax.models.ntm import LSTMBaseline, ntm_model, plot_trace, trace_ntm
from memjax.train import recipes
from memjax.train.plots import plot_curves

# ----------------------------------------------------------------------------- model


def task_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``config.task`` without its name: the keyword arguments of the task's generators."""
  return {k: v for k, v in config.task.items() if k != "name"}


def make_task(config: ml_collections.ConfigDict) -> algorithmic.AlgorithmicTask:
  """``config.task`` as an :class:`memjax.data.algorithmic.AlgorithmicTask`."""
  return algorithmic.make_task(config.task.name, **task_settings(config))


def cell_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The NTM cell's attributes from ``config.model``."""
  m = config.model
  keys = (
    "num_slots",
    "slot_size",
    "num_read_heads",
    "num_write_heads",
    "controller",
    "controller_size",
    "shift_range",
    "clip_value",
    "clip",
  )
  return {k: m[k] for k in keys}


def make_model(config: ml_collections.ConfigDict, output_size: int):
  """``nn.RNN(NTMCell)`` or :class:`LSTMBaseline`, mapping ``[B, T, Fi]`` to logits."""
  if config.model.name == "ntm":
    return ntm_model(output_size, **cell_kwargs(config))
  if config.model.name == "lstm":
    return LSTMBaseline(output_size, config.model.hidden_size, config.model.num_layers)
  raise ValueError(f"config.model.name={config.model.name!r} must be 'ntm' or 'lstm'")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Gradient clipping by global norm, then RMSProp (with momentum) or Adam."""
  o = config.optimizer
  if o.name == "rmsprop":
    opt = optax.rmsprop(o.learning_rate, decay=o.decay, momentum=o.momentum, eps=o.eps)
  elif o.name == "adam":
    opt = optax.adam(o.learning_rate, eps=o.eps)
  else:
    raise ValueError(f"config.optimizer.name={o.name!r} must be 'rmsprop' or 'adam'")
  return optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), opt)


class Convergence(NamedTuple):
  """The study's state beside the parameters (checkpointed with them)."""

  converged_at: jax.Array  # [] int32 sequences seen when held-out bit errors first fell
  # below the threshold; -1 = not yet


def init_state(config, model, optimizer, input_size: int) -> train.TrainState:
  """Parameters from ``config.seed``; the data stream key is derived from the same seed."""
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  params = model.init(init_key, jnp.zeros((1, 3, input_size), jnp.float32))["params"]
  extra = Convergence(jnp.asarray(-1, jnp.int32))
  return train.TrainState.create(params, optimizer, data_key, extra)


# ----------------------------------------------------------------------------- the update


def make_evaluate(model, eval_batch, batch_size: int, seed: int):
  """``fn(params, length) -> {'bits', 'bit_errors'}`` means on a fixed held-out batch."""

  @functools.partial(jax.jit, static_argnums=1, compiler_options=train.compiler_options())
  def evaluate(params, length: int | None):
    batch = eval_batch(jax.random.key(seed), batch_size, length)
    logits = model.apply({"params": params}, batch.inputs)
    return {k: jnp.mean(v) for k, v in algorithmic.sequence_costs(logits, batch).items()}

  return evaluate


# ----------------------------------------------------------------------------- the study


def _rounds(config, name: str) -> int:
  value = config[name]
  if value % config.steps_per_call:
    raise ValueError(
      f"config.{name}={value} must be a multiple of config.steps_per_call={config.steps_per_call}"
    )
  return value // config.steps_per_call


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from ``workdir``), evaluates and writes ``results.json``.

  With ``config.seeds`` empty, one run from ``config.seed`` in ``workdir``; otherwise one
  run per seed under ``workdir/runs/seed=S/`` (``memjax.train.run_all``: each resumes on
  its own, a finished one is read back), and ``workdir/results.json`` holds every seed's
  figures with their mean, spread and counts (:func:`seed_summary`).

  Args:
    config: see ``experiments/algorithmic/configs/copy_ntm.py``.
    workdir: output directory (checkpoints, metrics.jsonl, ``results.json``, PNG plots).

  Returns:
    The metrics written to ``results.json``.
  """
  seeds = tuple(int(s) for s in (config.get("seeds") or ()))
  if not seeds:
    return train_one(config, workdir)
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds={seeds} repeats a seed")

  def one(run, directory):
    run_config = copy.deepcopy(config)
    run_config.seed, run_config.seeds = run.spec["seed"], ()
    metrics = train_one(run_config, directory)
    return {k: metrics[k] for k in PER_SEED_FIELDS}

  results, wall = train.run_all(workdir, train.grid(seed=list(seeds)), one)
  metrics = seed_summary(results, config.converged_bit_errors)
  metrics["paper"] = config.paper_note
  print(seed_table(config.name, metrics), flush=True)
  train.write_results(workdir, metrics, config, wall)
  return metrics


PER_SEED_FIELDS = (
  "steps",
  "sequences_to_converge",
  "final_bits_per_sequence",
  "final_bit_errors_per_sequence",
  "length_generalisation",
  "train_steps_per_second",
)


def _mean_sd(values: list[float]) -> dict[str, Any]:
  if not values:
    return {"mean": None, "sd": None, "n": 0}
  a = np.asarray(values, np.float64)
  return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": a.size}


def seed_summary(results: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
  """Every seed's figures and their summary.

  ``sequences_to_converge``: mean and sd over the seeds that converged, and how many did;
  per evaluated length: the bit errors' mean and sd over every seed and the number of seeds
  below ``threshold`` bit errors per sequence.
  """
  per_seed = [
    {"seed": r["spec"]["seed"], **{k: r[k] for k in PER_SEED_FIELDS if k in r}} for r in results
  ]
  converged = [
    r["sequences_to_converge"] for r in per_seed if r["sequences_to_converge"] is not None
  ]
  lengths = {}
  for n in per_seed[0]["length_generalisation"]:
    errors = [r["length_generalisation"][n]["bit_errors"] for r in per_seed]
    lengths[n] = {
      "bit_errors": _mean_sd(errors),
      "seeds_below_threshold": int(sum(e < threshold for e in errors)),
    }
  return {
    "seeds": [r["seed"] for r in per_seed],
    "converged_seeds": len(converged),
    "sequences_to_converge": _mean_sd(converged),
    "final_bit_errors_per_sequence": _mean_sd(
      [r["final_bit_errors_per_sequence"] for r in per_seed]
    ),
    "length_generalisation": lengths,
    "converged_bit_errors_threshold": threshold,
    "per_seed": per_seed,
  }


def seed_table(name: str, metrics: dict[str, Any]) -> str:
  """The per-seed table printed at the end of a run over seeds."""
  lengths = list(metrics["length_generalisation"])
  lines = [f"{name}: {len(metrics['seeds'])} seeds, bit errors per sequence at each length"]
  lines.append(f"  {'seed':>6}{'converged at':>14}" + "".join(f"{n:>9}" for n in lengths))
  for r in metrics["per_seed"]:
    at = r["sequences_to_converge"]
    row = f"  {r['seed']:>6}{at if at is not None else 'not':>14}"
    row += "".join(f"{r['length_generalisation'][n]['bit_errors']:>9.2f}" for n in lengths)
    lines.append(row)
  c = metrics["sequences_to_converge"]
  conv = f"{c['mean']:.0f} +- {c['sd']:.0f}" if c["n"] else "-"
  lines.append(
    f"  converged: {metrics['converged_seeds']} of {len(metrics['seeds'])} ({conv} sequences); "
    "below the threshold at "
    + ", ".join(
      f"{n}: {v['seeds_below_threshold']}" for n, v in metrics["length_generalisation"].items()
    )
  )
  return "\n".join(lines)


def train_one(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One run from ``config.seed``: trains (resuming), evaluates, writes ``results.json``."""
  log_rounds, checkpoint_rounds = _rounds(config, "log_every"), _rounds(config, "checkpoint_every")
  num_rounds = -(-config.num_steps // config.steps_per_call)
  mesh = train.data_mesh(config.num_devices or None)
  train.check_batch_divisible(config.batch_size, mesh, "config.batch_size")
  task = make_task(config)
  model = make_model(config, task.output_size)
  optimizer = make_optimizer(config)
  batches = task.train_batch
  if config.length_groups:
    batches = algorithmic.length_groups(
      config.task.name, config.length_groups, **task_settings(config)
    )
  steps = recipes.sequence_train_steps(
    model,
    optimizer,
    batches,
    config.batch_size,
    config.steps_per_call,
    config.length_buckets,
    mesh=mesh,
    compute_dtype=jnp.dtype(config.compute_dtype) if config.compute_dtype else None,
  )
  evaluate = make_evaluate(model, task.eval_batch, config.eval_batch_size, config.seed + 1)
  held_out = make_evaluate(
    model, lambda k, b, _: task.train_batch(k, b), config.eval_batch_size, config.seed + 1
  )

  def converged(state, row):
    row["sequences_seen"] = row["step"] * config.batch_size
    done = int(state.extra.converged_at) >= 0
    if not done and row["eval_bit_errors"] < config.converged_bit_errors:
      done = True
      state = state._replace(extra=Convergence(jnp.asarray(row["sequences_seen"], jnp.int32)))
    return state, done and config.stop_when_converged

  def eval_fn(state):
    return {f"eval_{k}": v for k, v in held_out(state.params, None).items()}

  result = train.fit(
    lambda: init_state(config, model, optimizer, task.input_size),
    lambda state, _: steps(state),
    workdir=workdir,
    num_rounds=num_rounds,
    eval_fn=eval_fn,
    log_every=log_rounds,
    checkpoint_every=checkpoint_rounds,
    hooks=[converged],
    mesh=mesh,
    steps_per_round=config.steps_per_call,
    progress=config.progress_bar,
    desc=config.name,
    postfix=("bits", "bit_errors", "eval_bit_errors"),
  )
  state = result.state
  step = int(state.step)
  curve = [[r["sequences_seen"], r["bits"], r["bit_errors"]] for r in result.history]
  eval_curve = [[r["sequences_seen"], r["eval_bits"], r["eval_bit_errors"]] for r in result.history]
  final = jax.device_get(held_out(state.params, None))
  lengths = {
    str(n): {k: float(v) for k, v in jax.device_get(evaluate(state.params, n)).items()}
    for n in config.eval_lengths
  }
  converged_at = int(state.extra.converged_at)
  metrics = {
    "steps": step,
    "sequences_seen": step * config.batch_size,
    "final_bits_per_sequence": float(final["bits"]),
    "final_bit_errors_per_sequence": float(final["bit_errors"]),
    "converged_bit_errors_threshold": config.converged_bit_errors,
    "sequences_to_converge": converged_at if converged_at >= 0 else None,
    "length_generalisation": lengths,
    "curve": curve,
    "eval_curve": eval_curve,
    "train_steps_per_second": (
      result.timed_rounds * config.steps_per_call / result.train_time_s
      if result.train_time_s
      else None
    ),
    "paper": config.paper_note,
  }
  if curve:
    seen, bits, errors = np.asarray(eval_curve).T
    plot_curves(
      os.path.join(workdir, "learning_curve.png"),
      seen,
      {"cost (bits / sequence)": bits, "bit errors / sequence": errors},
      title=f"{config.name}: held-out cost vs sequences seen",
      xlabel="sequences seen",
      symlog=0.1,
    )
  if config.model.name == "ntm" and config.plots:
    cell = NTMCell(output_size=task.output_size, **cell_kwargs(config))
    for n in config.plot_lengths:
      batch = task.eval_batch(jax.random.key(config.seed + 2), 1, n)
      trace = trace_ntm(cell, state.params, batch.inputs[0])
      plot_trace(
        os.path.join(workdir, f"weightings_len{n}.png"),
        batch.inputs[0],
        batch.targets[0],
        trace,
        f"{config.name}: length {n}",
        batch.mask[0],
      )
  train.write_results(workdir, metrics, config, result.wall_time_s)
  return metrics
