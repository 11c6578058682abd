"""Trains an NTM or an LSTM baseline on the NTM paper's algorithmic tasks.

``train_and_evaluate(config, workdir)`` runs the whole study: a jitted training step
(the batch is generated inside it from the step's PRNG key and the time loop is a
scan), a learning curve of the cost in bits per sequence against sequences seen,
Orbax checkpoints with resume after a kill, length generalisation, plots like the
paper's figures and ``workdir/results.json``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from memjax.data import algorithmic
from memjax.memory.ntm import NTMCell
from memjax.train import Checkpointer, write_results
from memjax.train.compile import compiler_options

_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- models


class LSTMBaseline(nn.Module):
  """A stack of LSTMs with a linear read-out (the paper's baseline: 3 x 256)."""

  output_size: int
  hidden_size: int = 256
  num_layers: int = 3

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    h = inputs
    for i in range(self.num_layers):
      h = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size), name=f"lstm_{i}")(h)
    return nn.Dense(self.output_size, name="output")(h)


def make_cell(config: ml_collections.ConfigDict, output_size: int) -> NTMCell:
  """The NTM cell described by ``config.model``."""
  m = config.model
  return NTMCell(
    output_size=output_size,
    memory_size=m.memory_size,
    memory_width=m.memory_width,
    num_read_heads=m.num_read_heads,
    num_write_heads=m.num_write_heads,
    controller=m.controller,
    controller_size=m.controller_size,
    shift_range=m.shift_range,
    clip_value=m.clip_value,
  )


def make_model(config: ml_collections.ConfigDict, output_size: int) -> nn.Module:
  """``nn.RNN(NTMCell)`` or :class:`LSTMBaseline`, mapping ``[B, T, Fi]`` to logits."""
  if config.model.name == "ntm":
    return nn.RNN(make_cell(config, output_size), name="ntm")
  if config.model.name == "lstm":
    return LSTMBaseline(output_size, config.model.hidden_size, config.model.num_layers)
  raise ValueError(f"config.model.name={config.model.name!r} must be 'ntm' or 'lstm'")


def active_steps(mask: jax.Array) -> jax.Array:
  """The number of leading steps that matter: up to the batch's last scored step.

  Args:
    mask: [B, T] 1 on the scored steps.

  Returns:
    [] int32 ``1 + max{t : mask[b, t] > 0}`` (0 if nothing is scored). Steps after it
    change neither the loss nor its gradient.
  """
  t = jnp.arange(1, mask.shape[-1] + 1, dtype=jnp.int32)
  return jnp.max(jnp.where(mask > 0, t, 0))


def bucket_lengths(total: int, num_buckets: int) -> tuple[int, ...]:
  """``num_buckets`` evenly spaced static lengths ``<= total``, the last one ``total``."""
  if not isinstance(num_buckets, int) or not 1 <= num_buckets <= total:
    raise ValueError(f"num_buckets={num_buckets!r} must be an int in [1, {total}]")
  return tuple(sorted({-(-total * i // num_buckets) for i in range(1, num_buckets + 1)}))


def _truncate(batch: algorithmic.AlgorithmicBatch, length: int) -> algorithmic.AlgorithmicBatch:
  return batch._replace(
    inputs=batch.inputs[:, :length], targets=batch.targets[:, :length], mask=batch.mask[:, :length]
  )


# ----------------------------------------------------------------------------- tasks


def make_task(config: ml_collections.ConfigDict) -> tuple[Callable, Callable, int, int]:
  """Returns ``(train_batch(key, B), eval_batch(key, B, length), Fi, Fo)`` for config.task."""
  t = config.task
  if t.name == "copy":
    train = lambda k, b: algorithmic.copy_task(k, b, t.min_length, t.max_length, t.num_bits)
    evals = lambda k, b, n: algorithmic.copy_task(k, b, n, n, t.num_bits)
    return train, evals, t.num_bits + 1, t.num_bits
  if t.name == "repeat_copy":
    train = lambda k, b: algorithmic.repeat_copy_task(
      k, b, t.min_length, t.max_length, t.min_repeats, t.max_repeats, t.num_bits
    )
    evals = lambda k, b, n: algorithmic.repeat_copy_task(
      k, b, n, n, t.min_repeats, t.max_repeats, t.num_bits
    )
    return train, evals, t.num_bits + 2, t.num_bits + 1
  if t.name == "associative_recall":
    train = lambda k, b: algorithmic.associative_recall_task(
      k, b, t.min_items, t.max_items, t.item_length, t.num_bits
    )
    evals = lambda k, b, n: algorithmic.associative_recall_task(
      k, b, n, n, t.item_length, t.num_bits
    )
    return train, evals, t.num_bits + 2, t.num_bits
  raise ValueError(f"config.task.name={t.name!r} is not copy, repeat_copy or associative_recall")


class LengthGroups(NamedTuple):
  """Training batches whose sequences share a length range, one range drawn per batch."""

  probs: tuple[float, ...]  # probability of each range (its share of the lengths)
  batches: tuple[Callable, ...]  # fn(key, B) -> AlgorithmicBatch with lengths in the range


def _split_range(lo: int, hi: int, num_groups: int) -> list[tuple[int, int]]:
  edges = [lo + -(-(hi - lo + 1) * i // num_groups) for i in range(num_groups + 1)]
  return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def make_length_groups(config: ml_collections.ConfigDict, num_groups: int) -> LengthGroups:
  """Splits the task's lengths (copy, repeat copy) or item counts (recall) into ranges.

  A batch drawn from range ``[a, b]`` (with probability ``(b - a + 1) / (hi - lo + 1)``)
  has uniform lengths in it and the static shape of its longest, so each sequence's
  length is still uniform over the whole range (as the paper's), while a batch of short
  sequences is short. Unlike :func:`make_train_steps`'s ``num_buckets``, this changes the
  batches' composition (sequences of one batch have similar lengths).

  Args:
    config: the study config (``config.task``).
    num_groups: number of ranges.

  Returns:
    :class:`LengthGroups`.
  """
  t = config.task
  if t.name == "copy":
    lo, hi = t.min_length, t.max_length
    make = lambda a, b: lambda k, n: algorithmic.copy_task(k, n, a, b, t.num_bits)
  elif t.name == "repeat_copy":
    lo, hi = t.min_length, t.max_length
    make = lambda a, b: (
      lambda k, n: algorithmic.repeat_copy_task(
        k, n, a, b, t.min_repeats, t.max_repeats, t.num_bits
      )
    )
  elif t.name == "associative_recall":
    lo, hi = t.min_items, t.max_items
    make = lambda a, b: (
      lambda k, n: algorithmic.associative_recall_task(k, n, a, b, t.item_length, t.num_bits)
    )
  else:
    raise ValueError(f"config.task.name={t.name!r} has no length groups")
  ranges = _split_range(lo, hi, num_groups)
  total = hi - lo + 1
  return LengthGroups(
    tuple((b - a + 1) / total for a, b in ranges), tuple(make(a, b) for a, b in ranges)
  )


# ----------------------------------------------------------------------------- metrics


def sequence_costs(logits: jax.Array, batch: algorithmic.AlgorithmicBatch) -> dict[str, jax.Array]:
  """Per-sequence cost in bits (binary cross-entropy, log base 2) and bit errors.

  Args:
    logits: [B, T, Fo] output logits.
    batch: the batch (targets [B, T, Fo], mask [B, T]).

  Returns:
    ``{'bits': [B], 'bit_errors': [B]}``, each summed over the scored steps and bits.
  """
  mask = batch.mask[..., None]
  ce = optax.sigmoid_binary_cross_entropy(logits, batch.targets) * mask
  wrong = ((logits > 0).astype(jnp.float32) != batch.targets) * mask
  return {"bits": jnp.sum(ce, axis=(1, 2)) / _LN2, "bit_errors": jnp.sum(wrong, axis=(1, 2))}


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


class TrainState(NamedTuple):
  """Everything a resumed run needs (checkpointed with Orbax)."""

  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data [2]
  step: jax.Array  # [] int32 optimiser steps done


def init_train_state(config, model, optimizer, input_size: int) -> TrainState:
  """Parameters from ``config.seed``; the data stream key is derived from the same seed."""
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  dummy = jnp.zeros((1, 3, input_size), jnp.float32)
  params = model.init(init_key, dummy)["params"]
  return TrainState(
    params, optimizer.init(params), jax.random.key_data(data_key), jnp.zeros((), jnp.int32)
  )


def make_train_steps(
  model, optimizer, train_batch, batch_size: int, steps_per_call: int, num_buckets: int = 1
):
  """A jitted function running ``steps_per_call`` optimiser steps in a ``lax.scan``.

  Each step draws a batch padded to the task's longest sequence ``T``. With
  ``num_buckets > 1`` the loss and its gradient are computed on the batch truncated to the
  shortest of :func:`bucket_lengths` that holds its last scored step (a ``lax.switch``
  over one compiled branch per length): the dropped steps change neither the loss nor
  the gradient, so the training distribution and the update are those of the padded
  batch, while a batch of short sequences costs less (as in a framework that runs each
  sequence at its own length). Compile time grows with ``num_buckets``.

  Args:
    model: maps ``[B, T, Fi]`` inputs to ``[B, T, Fo]`` logits (any ``T``).
    optimizer: an Optax transformation.
    train_batch: ``fn(key, B) -> AlgorithmicBatch``, or :class:`LengthGroups` (each step
      draws a range, then a batch from it; ``num_buckets`` is then unused).
    batch_size: B.
    steps_per_call: optimiser steps per call.
    num_buckets: number of static lengths the batch may be truncated to (1: none).

  Returns:
    ``fn(state) -> (state, {'bits': [steps_per_call], 'bit_errors': [steps_per_call]})``
    with the batch-mean cost of each step.
  """

  def loss_fn(params, batch):
    logits = model.apply({"params": params}, batch.inputs)
    costs = sequence_costs(logits, batch)
    return jnp.mean(costs["bits"]), costs

  def grads_on(prepare: Callable) -> Callable:
    """``fn(params, x)``: loss, costs and gradients on the batch ``prepare(x)``."""
    return lambda params, x: jax.value_and_grad(loss_fn, has_aux=True)(params, prepare(x))

  def grads_at(length: int) -> Callable:
    return grads_on(lambda batch: _truncate(batch, length))

  def grads_of_group(make_batch: Callable) -> Callable:
    return grads_on(lambda key: make_batch(key, batch_size))

  def grads(params, key):
    if isinstance(train_batch, LengthGroups):
      k_group, k_batch = jax.random.split(key)
      group = jax.random.choice(k_group, len(train_batch.probs), p=jnp.asarray(train_batch.probs))
      branches = [grads_of_group(fn) for fn in train_batch.batches]
      return jax.lax.switch(group, branches, params, k_batch)
    batch = train_batch(key, batch_size)
    lengths = bucket_lengths(batch.mask.shape[1], num_buckets)
    branches = [grads_at(n) for n in lengths]
    index = jnp.searchsorted(jnp.asarray(lengths), active_steps(batch.mask))
    return jax.lax.switch(index, branches, params, batch)

  def one_step(state: TrainState, _):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (_, costs), param_grads = grads(state.params, key)
    updates, opt_state = optimizer.update(param_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {k: jnp.mean(v) for k, v in costs.items()}
    return TrainState(params, opt_state, state.rng, state.step + 1), metrics

  # XLA's own CPU fusions rather than YNNPACK's (memjax.train.compile): the batch-32 NTM
  # step's forward + backward is ~15% faster (benchmarks/ntm.py).
  @functools.partial(jax.jit, compiler_options=compiler_options())
  def train_steps(state: TrainState):
    return jax.lax.scan(one_step, state, None, length=steps_per_call)

  return train_steps


def make_evaluate(model, eval_batch, batch_size: int, seed: int):
  """``fn(params, length) -> {'bits', 'bit_errors'}`` means on a fixed held-out batch."""

  @functools.partial(jax.jit, static_argnums=1, compiler_options=compiler_options())
  def evaluate(params, length: int | None):
    key = jax.random.key(seed)
    batch = eval_batch(key, batch_size, length)
    logits = model.apply({"params": params}, batch.inputs)
    return {k: jnp.mean(v) for k, v in sequence_costs(logits, batch).items()}

  return evaluate


def trace_ntm(cell: NTMCell, params, inputs: jax.Array) -> dict[str, jax.Array]:
  """Runs the NTM on one sequence and records its head weightings at every step.

  Args:
    cell: the NTM cell.
    params: the parameters of ``nn.RNN(cell)`` (``{'cell': ...}``).
    inputs: [T, Fi] one input sequence.

  Returns:
    ``{'outputs': [T, Fo] sigmoid outputs, 'read_weights': [T, R, N],
    'write_weights': [T, Wh, N]}``.
  """
  carry = cell.initialize_carry(None, inputs.shape[1:])

  def body(carry, x):
    carry, y = cell.apply({"params": params["cell"]}, carry, x)
    return carry, (jax.nn.sigmoid(y), carry.read_weights, carry.write_weights)

  _, (outputs, reads, writes) = jax.lax.scan(body, carry, inputs)
  return {"outputs": outputs, "read_weights": reads, "write_weights": writes}


# ----------------------------------------------------------------------------- plots


def _save_curve_plot(path: str, curve: list[list[float]], title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  arr = np.asarray(curve, dtype=np.float64)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.plot(arr[:, 0], arr[:, 1], label="cost (bits / sequence)")
  ax.plot(arr[:, 0], arr[:, 2], label="bit errors / sequence", alpha=0.7)
  ax.set_yscale("symlog", linthresh=0.1)
  ax.set_xlabel("sequences seen")
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_trace_plot(path: str, batch_inputs, targets, trace: dict, title: str, mask=None) -> None:
  """Inputs, targets, outputs and the read/write weightings over time (paper Fig. 6).

  ``mask [T]`` (optional) blanks the outputs of unscored steps, as the paper's figures.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  write_w = np.asarray(trace["write_weights"][:, 0])  # [T, N]
  read_w = np.asarray(trace["read_weights"][:, 0])
  used = np.nonzero((write_w.max(0) > 0.01) | (read_w.max(0) > 0.01))[0]
  lo, hi = (int(used.min()), int(used.max()) + 1) if used.size else (0, write_w.shape[1])
  panels = [
    ("inputs", np.asarray(batch_inputs)),
    ("targets", np.asarray(targets)),
    (
      "outputs",
      np.asarray(trace["outputs"]) * (1.0 if mask is None else np.asarray(mask)[:, None]),
    ),
    (f"write weightings (slots {lo}-{hi - 1})", write_w[:, lo:hi]),
    (f"read weightings (slots {lo}-{hi - 1})", read_w[:, lo:hi]),
  ]
  fig, axes = plt.subplots(len(panels), 1, figsize=(7, 9))
  for ax, (name, arr) in zip(axes, panels, strict=True):
    ax.imshow(arr.T, aspect="auto", cmap="gray_r", interpolation="nearest")
    ax.set_ylabel(name, fontsize=8)
  axes[-1].set_xlabel("time")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ----------------------------------------------------------------------------- loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, checkpoints (resuming from ``workdir`` if a checkpoint exists) and evaluates.

  Args:
    config: see ``experiments/algorithmic/configs/copy_ntm.py``.
    workdir: output directory (checkpoints, ``results.json``, PNG plots).

  Returns:
    The metrics written to ``results.json``.
  """
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  train_batch, eval_batch, input_size, output_size = make_task(config)
  model = make_model(config, output_size)
  optimizer = make_optimizer(config)
  steps_per_call = config.steps_per_call
  if config.log_every % steps_per_call or config.checkpoint_every % steps_per_call:
    raise ValueError(
      "config.log_every and config.checkpoint_every must be multiples of "
      f"config.steps_per_call={steps_per_call}"
    )
  state = init_train_state(config, model, optimizer, input_size)
  batches = train_batch
  if config.length_groups:
    batches = make_length_groups(config, config.length_groups)
  train_steps = make_train_steps(
    model, optimizer, batches, config.batch_size, steps_per_call, config.length_buckets
  )
  evaluate = make_evaluate(model, eval_batch, config.eval_batch_size, config.seed + 1)
  eval_train = make_evaluate(
    model, lambda k, b, _: train_batch(k, b), config.eval_batch_size, config.seed + 1
  )

  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  curve: list[list[float]] = []  # [sequences seen, train bits, train bit errors]
  eval_curve: list[list[float]] = []  # [sequences seen, eval bits, eval bit errors]
  converged_at = None
  prior_wall = 0.0
  restored = ckpt.restore_latest(jax.eval_shape(lambda: state))
  if restored is not None:
    _, state, meta = restored
    curve, eval_curve = meta.get("curve", []), meta.get("eval_curve", [])
    converged_at, prior_wall = meta.get("converged_at"), meta.get("wall_time_s", 0.0)

  def save():
    ckpt.save(
      int(state.step),
      state,
      {
        "curve": curve,
        "eval_curve": eval_curve,
        "converged_at": converged_at,
        "wall_time_s": prior_wall + time.time() - start,
      },
    )

  step = int(state.step)
  window: list[dict[str, np.ndarray]] = []
  with tqdm.tqdm(
    total=config.num_steps,
    initial=step,
    desc=config.name,
    disable=not config.progress_bar,
    mininterval=2.0,
  ) as bar:
    while step < config.num_steps and not (config.stop_when_converged and converged_at):
      state, metrics = train_steps(state)
      step += steps_per_call
      bar.update(steps_per_call)
      window.append(jax.device_get(metrics))
      if step % config.log_every == 0:
        bits = float(np.mean([w["bits"] for w in window]))
        errors = float(np.mean([w["bit_errors"] for w in window]))
        window = []
        seen = step * config.batch_size
        curve.append([seen, bits, errors])
        held_out = jax.device_get(eval_train(state.params, None))
        eval_curve.append([seen, float(held_out["bits"]), float(held_out["bit_errors"])])
        if converged_at is None and held_out["bit_errors"] < config.converged_bit_errors:
          converged_at = seen
        bar.set_postfix(
          bits=f"{bits:.3f}", err=f"{errors:.3f}", eval_err=f"{float(held_out['bit_errors']):.3f}"
        )
      if step % config.checkpoint_every == 0:
        save()
  if step % config.checkpoint_every:
    save()
  ckpt.close()

  final = jax.device_get(eval_train(state.params, None))
  lengths = {}
  for n in config.eval_lengths:
    lengths[str(n)] = {k: float(v) for k, v in jax.device_get(evaluate(state.params, n)).items()}
  metrics = {
    "steps": step,
    "sequences_seen": step * config.batch_size,
    "final_bits_per_sequence": float(final["bits"]),
    "final_bit_errors_per_sequence": float(final["bit_errors"]),
    "converged_bit_errors_threshold": config.converged_bit_errors,
    "sequences_to_converge": converged_at,
    "length_generalisation": lengths,
    "curve": curve,
    "eval_curve": eval_curve,
    "paper": config.paper_note,
  }
  if curve:
    _save_curve_plot(
      os.path.join(workdir, "learning_curve.png"),
      eval_curve or curve,
      f"{config.name}: held-out cost vs sequences seen",
    )
  if config.model.name == "ntm" and config.plots:
    cell = make_cell(config, output_size)
    for n in config.plot_lengths:
      batch = eval_batch(jax.random.key(config.seed + 2), 1, n)
      trace = trace_ntm(cell, state.params, batch.inputs[0])
      save_trace_plot(
        os.path.join(workdir, f"weightings_len{n}.png"),
        batch.inputs[0],
        batch.targets[0],
        trace,
        f"{config.name}: length {n}",
        batch.mask[0],
      )
  wall = prior_wall + time.time() - start
  write_results(workdir, metrics, config, wall)
  return metrics
