"""Algorithmic tasks of the Neural Turing Machine paper: copy, repeat copy, associative recall.

Every generator is a pure, seeded, jittable function of a PRNG key: the sequence
length is drawn per example but the arrays have a static length ``T`` fixed by the
maximum length, with a target mask that is 1 exactly on the steps whose output is
scored (the output phase). Batches are batch-major, ``inputs [B, T, Fi]``,
``targets [B, T, Fo]``, ``mask [B, T]``, as ``flax.linen.RNN`` expects.

Copy (``num_bits + 1`` input channels, the last one the delimiter):

    t:       0 .. L-1     L            L+1 .. 2L       2L+1 .. T-1
    input:   bits         delimiter    0               0 (padding)
    target:  0            0            bits (mask 1)   0

Repeat copy (``num_bits + 2`` inputs: delimiter, number of repeats / max_repeats;
``num_bits + 1`` targets, the last one the end marker): the bits, then one step with
the delimiter and the normalised repeat count, then the bits ``R`` times and an end
marker.

Associative recall (``num_bits + 2`` inputs: item delimiter, query delimiter): ``n``
items of ``item_length`` vectors each preceded by an item delimiter, then a query item
between two query delimiters; the target is the item that followed the query.

References:
  Graves, Wayne, Danihelka 2014, "Neural Turing Machines", section 4.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class AlgorithmicBatch(NamedTuple):
  """A batch of an algorithmic task (batch-major)."""

  inputs: jax.Array  # [B, T, Fi] float32
  targets: jax.Array  # [B, T, Fo] float32 in {0, 1}
  mask: jax.Array  # [B, T] float32, 1 on the scored (output) steps
  lengths: jax.Array  # [B] int32: sequence length L / number of items n


def _check_range(name_lo: str, lo: int, name_hi: str, hi: int, minimum: int = 1) -> None:
  for name, value in ((name_lo, lo), (name_hi, hi)):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
  if lo > hi:
    raise ValueError(f"{name_lo}={lo} must be <= {name_hi}={hi}")


def _check_positive(name: str, value: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def copy_sequence_length(max_length: int) -> int:
  """The static length ``T = 2 * max_length + 1`` of a copy batch."""
  return 2 * max_length + 1


def _copy_example(key, min_length, max_length, num_bits, total):
  k_len, k_bits = jax.random.split(key)
  length = jax.random.randint(k_len, (), min_length, max_length + 1)
  bits = jax.random.bernoulli(k_bits, 0.5, (max_length, num_bits)).astype(jnp.float32)
  t = jnp.arange(total)
  data = (t < length)[:, None] * bits[jnp.clip(t, 0, max_length - 1)]
  delimiter = (t == length).astype(jnp.float32)[:, None]
  out_phase = (t > length) & (t <= 2 * length)
  target = out_phase[:, None] * bits[jnp.clip(t - length - 1, 0, max_length - 1)]
  inputs = jnp.concatenate([data, delimiter], axis=-1)
  return inputs, target, out_phase.astype(jnp.float32), length.astype(jnp.int32)


@functools.partial(
  jax.jit, static_argnames=("batch_size", "min_length", "max_length", "num_bits", "pad_to")
)
def copy_task(
  key: jax.Array,
  batch_size: int,
  min_length: int = 1,
  max_length: int = 20,
  num_bits: int = 8,
  pad_to: int | None = None,
) -> AlgorithmicBatch:
  """A batch of the copy task: random bit vectors, a delimiter, then recall them.

  Args:
    key: PRNG key.
    batch_size: B.
    min_length: shortest sequence L (drawn uniformly per example in [min, max]).
    max_length: longest sequence L.
    num_bits: bits per vector (the paper uses 8).
    pad_to: static length T (at least ``2 * max_length + 1``, the default).

  Returns:
    :class:`AlgorithmicBatch` with ``inputs [B, T, num_bits + 1]``,
    ``targets [B, T, num_bits]``, ``mask [B, T]``, ``lengths [B]``.

  Raises:
    ValueError: non-positive sizes, min_length > max_length, pad_to too short.
  """
  _check_positive("batch_size", batch_size)
  _check_positive("num_bits", num_bits)
  _check_range("min_length", min_length, "max_length", max_length)
  total = _static_length("pad_to", pad_to, copy_sequence_length(max_length))
  keys = jax.random.split(key, batch_size)
  fn = lambda k: _copy_example(k, min_length, max_length, num_bits, total)
  return AlgorithmicBatch(*jax.vmap(fn)(keys))


def _static_length(name: str, pad_to: int | None, needed: int) -> int:
  if pad_to is None:
    return needed
  if not isinstance(pad_to, int) or pad_to < needed:
    raise ValueError(f"{name}={pad_to!r} must be an int >= {needed}, the longest sequence")
  return pad_to


def repeat_copy_sequence_length(max_length: int, max_repeats: int) -> int:
  """The static length ``T = max_length * (max_repeats + 1) + 2`` of a repeat-copy batch."""
  return max_length * (max_repeats + 1) + 2


def _repeat_copy_example(key, min_length, max_length, min_repeats, max_repeats, num_bits, total):
  k_len, k_rep, k_bits = jax.random.split(key, 3)
  length = jax.random.randint(k_len, (), min_length, max_length + 1)
  repeats = jax.random.randint(k_rep, (), min_repeats, max_repeats + 1)
  bits = jax.random.bernoulli(k_bits, 0.5, (max_length, num_bits)).astype(jnp.float32)
  t = jnp.arange(total)
  data = (t < length)[:, None] * bits[jnp.clip(t, 0, max_length - 1)]
  at_delimiter = (t == length).astype(jnp.float32)
  count = at_delimiter * repeats.astype(jnp.float32) / max_repeats
  inputs = jnp.concatenate([data, at_delimiter[:, None], count[:, None]], axis=-1)
  end = length * (repeats + 1) + 1
  copying = (t > length) & (t < end)
  index = jnp.mod(t - length - 1, length)
  target_bits = copying[:, None] * bits[jnp.clip(index, 0, max_length - 1)]
  end_marker = (t == end).astype(jnp.float32)[:, None]
  targets = jnp.concatenate([target_bits, end_marker], axis=-1)
  mask = ((t > length) & (t <= end)).astype(jnp.float32)
  return inputs, targets, mask, length.astype(jnp.int32)


@functools.partial(
  jax.jit,
  static_argnames=(
    "batch_size",
    "min_length",
    "max_length",
    "min_repeats",
    "max_repeats",
    "num_bits",
    "pad_to",
  ),
)
def repeat_copy_task(
  key: jax.Array,
  batch_size: int,
  min_length: int = 1,
  max_length: int = 10,
  min_repeats: int = 1,
  max_repeats: int = 10,
  num_bits: int = 8,
  pad_to: int | None = None,
) -> AlgorithmicBatch:
  """A batch of the repeat-copy task: copy the sequence R times, then emit an end marker.

  Args:
    key: PRNG key.
    batch_size: B.
    min_length: shortest sequence L.
    max_length: longest sequence L.
    min_repeats: fewest repeats R.
    max_repeats: most repeats R (the count input is ``R / max_repeats``).
    num_bits: bits per vector.
    pad_to: static length T (at least ``max_length * (max_repeats + 1) + 2``).

  Returns:
    :class:`AlgorithmicBatch` with ``inputs [B, T, num_bits + 2]``,
    ``targets [B, T, num_bits + 1]`` (last channel: end marker), ``mask [B, T]``,
    ``lengths [B]``.
  """
  _check_positive("batch_size", batch_size)
  _check_positive("num_bits", num_bits)
  _check_range("min_length", min_length, "max_length", max_length)
  _check_range("min_repeats", min_repeats, "max_repeats", max_repeats)
  total = _static_length("pad_to", pad_to, repeat_copy_sequence_length(max_length, max_repeats))
  keys = jax.random.split(key, batch_size)
  fn = lambda k: _repeat_copy_example(
    k, min_length, max_length, min_repeats, max_repeats, num_bits, total
  )
  return AlgorithmicBatch(*jax.vmap(fn)(keys))


def associative_recall_sequence_length(max_items: int, item_length: int = 3) -> int:
  """The static length ``T = max_items * (item_length + 1) + 2 * item_length + 2``."""
  return max_items * (item_length + 1) + 2 * item_length + 2


def _recall_example(key, min_items, max_items, item_length, num_bits, total):
  k_n, k_q, k_bits = jax.random.split(key, 3)
  n = jax.random.randint(k_n, (), min_items, max_items + 1)
  query = jax.random.randint(k_q, (), 0, n - 1)  # the answer is item query + 1
  items = jax.random.bernoulli(k_bits, 0.5, (max_items, item_length, num_bits))
  items = items.astype(jnp.float32)
  t = jnp.arange(total)
  block, offset = t // (item_length + 1), t % (item_length + 1)
  in_items = block < n
  item_delim = in_items & (offset == 0)
  item_bits = (in_items & (offset > 0))[:, None] * items[
    jnp.clip(block, 0, max_items - 1), jnp.clip(offset - 1, 0, item_length - 1)
  ]
  q0 = n * (item_length + 1)
  query_delim = (t == q0) | (t == q0 + item_length + 1)
  in_query = (t > q0) & (t <= q0 + item_length)
  query_bits = in_query[:, None] * items[query, jnp.clip(t - q0 - 1, 0, item_length - 1)]
  inputs = jnp.concatenate(
    [item_bits + query_bits, item_delim[:, None], query_delim[:, None]], axis=-1
  ).astype(jnp.float32)
  a0 = q0 + item_length + 2
  answering = (t >= a0) & (t < a0 + item_length)
  targets = answering[:, None] * items[query + 1, jnp.clip(t - a0, 0, item_length - 1)]
  return inputs, targets, answering.astype(jnp.float32), n.astype(jnp.int32)


@functools.partial(
  jax.jit,
  static_argnames=("batch_size", "min_items", "max_items", "item_length", "num_bits", "pad_to"),
)
def associative_recall_task(
  key: jax.Array,
  batch_size: int,
  min_items: int = 2,
  max_items: int = 6,
  item_length: int = 3,
  num_bits: int = 6,
  pad_to: int | None = None,
) -> AlgorithmicBatch:
  """A batch of associative recall: given a query item, output the item that followed it.

  Args:
    key: PRNG key.
    batch_size: B.
    min_items: fewest items n (at least 2).
    max_items: most items n.
    item_length: vectors per item (the paper uses 3).
    num_bits: bits per vector (the paper uses 6).
    pad_to: static length T (at least ``associative_recall_sequence_length``).

  Returns:
    :class:`AlgorithmicBatch` with ``inputs [B, T, num_bits + 2]``,
    ``targets [B, T, num_bits]``, ``mask [B, T]``, ``lengths [B]`` (the number of items).
  """
  _check_positive("batch_size", batch_size)
  _check_positive("num_bits", num_bits)
  _check_positive("item_length", item_length)
  _check_range("min_items", min_items, "max_items", max_items, minimum=2)
  total = _static_length(
    "pad_to", pad_to, associative_recall_sequence_length(max_items, item_length)
  )
  keys = jax.random.split(key, batch_size)
  fn = lambda k: _recall_example(k, min_items, max_items, item_length, num_bits, total)
  return AlgorithmicBatch(*jax.vmap(fn)(keys))


# ----------------------------------------------------------------------------- tasks by name

_LN2 = math.log(2.0)


class AlgorithmicTask(NamedTuple):
  """A task chosen by name: its batch generators and feature sizes."""

  train_batch: Callable[[jax.Array, int], AlgorithmicBatch]  # fn(key, B): training lengths
  eval_batch: Callable[[jax.Array, int, int], AlgorithmicBatch]  # fn(key, B, length)
  input_size: int  # Fi
  output_size: int  # Fo


TASK_NAMES = ("copy", "repeat_copy", "associative_recall")


def _ranged(name: str, settings: dict) -> tuple[int, int, Callable, int, int]:
  """``(lo, hi, between, Fi, Fo)``: ``between(a, b)`` is ``fn(key, B)`` drawing lengths
  (copy, repeat copy) or item counts (recall) in ``[a, b]``; ``[lo, hi]`` is the task's
  training range."""
  s = settings
  bits = s["num_bits"]
  if name == "copy":
    between = lambda a, b: lambda k, n: copy_task(k, n, a, b, bits)
    return s["min_length"], s["max_length"], between, bits + 1, bits
  if name == "repeat_copy":
    reps = (s["min_repeats"], s["max_repeats"])
    between = lambda a, b: lambda k, n: repeat_copy_task(k, n, a, b, *reps, bits)
    return s["min_length"], s["max_length"], between, bits + 2, bits + 1
  if name == "associative_recall":
    item = s["item_length"]
    between = lambda a, b: lambda k, n: associative_recall_task(k, n, a, b, item, bits)
    return s["min_items"], s["max_items"], between, bits + 2, bits
  raise ValueError(f"task name={name!r} must be one of {TASK_NAMES}")


def make_task(
  name: str,
  *,
  num_bits: int,
  min_length: int = 1,
  max_length: int = 20,
  min_repeats: int = 1,
  max_repeats: int = 10,
  min_items: int = 2,
  max_items: int = 6,
  item_length: int = 3,
) -> AlgorithmicTask:
  """The task ``name`` with its settings (those of other tasks are ignored).

  ``eval_batch(key, B, n)`` draws every sequence at length (copy, repeat copy) or item
  count (recall) ``n`` exactly, for length generalisation.

  Args:
    name: 'copy', 'repeat_copy' or 'associative_recall'.
    num_bits: bits per vector.
    min_length, max_length: copy / repeat copy training lengths.
    min_repeats, max_repeats: repeat copy's repeat counts.
    min_items, max_items, item_length: associative recall's items.

  Returns:
    :class:`AlgorithmicTask`.

  Raises:
    ValueError: an unknown name.
  """
  lo, hi, between, input_size, output_size = _ranged(name, locals())
  return AlgorithmicTask(
    between(lo, hi), lambda k, b, n: between(n, n)(k, b), input_size, output_size
  )


class LengthGroups(NamedTuple):
  """Training batches whose sequences share a length range, one range drawn per batch."""

  probs: tuple[float, ...]  # probability of each range (its share of the lengths)
  batches: tuple[Callable, ...]  # fn(key, B) -> AlgorithmicBatch with lengths in the range


def _split_range(lo: int, hi: int, num_groups: int) -> list[tuple[int, int]]:
  edges = [lo + -(-(hi - lo + 1) * i // num_groups) for i in range(num_groups + 1)]
  return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def length_groups(
  name: str,
  num_groups: int,
  *,
  num_bits: int,
  min_length: int = 1,
  max_length: int = 20,
  min_repeats: int = 1,
  max_repeats: int = 10,
  min_items: int = 2,
  max_items: int = 6,
  item_length: int = 3,
) -> LengthGroups:
  """Splits a task's lengths (copy, repeat copy) or item counts (recall) into ranges.

  A batch drawn from range ``[a, b]`` (with probability ``(b - a + 1) / (hi - lo + 1)``)
  has uniform lengths in it and the static shape of its longest, so each sequence's
  length is still uniform over the whole range, while a batch of short sequences is
  short. Unlike truncating padded batches (:func:`active_steps`), this changes the
  batches' composition (sequences of one batch have similar lengths).

  Args:
    name: the task (as :func:`make_task`).
    num_groups: number of ranges.
    num_bits, ...: the task's settings, as :func:`make_task`.

  Returns:
    :class:`LengthGroups`.
  """
  lo, hi, between, _, _ = _ranged(name, locals())
  ranges = _split_range(lo, hi, num_groups)
  total = hi - lo + 1
  return LengthGroups(
    tuple((b - a + 1) / total for a, b in ranges), tuple(between(a, b) for a, b in ranges)
  )


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


def truncate(batch: AlgorithmicBatch, length: int) -> AlgorithmicBatch:
  """The batch cut to its first ``length`` (static) steps."""
  return batch._replace(
    inputs=batch.inputs[:, :length], targets=batch.targets[:, :length], mask=batch.mask[:, :length]
  )


def sequence_costs(logits: jax.Array, batch: AlgorithmicBatch) -> dict[str, jax.Array]:
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


__all__ = [
  "AlgorithmicBatch",
  "AlgorithmicTask",
  "LengthGroups",
  "TASK_NAMES",
  "make_task",
  "length_groups",
  "active_steps",
  "truncate",
  "sequence_costs",
  "copy_task",
  "copy_sequence_length",
  "repeat_copy_task",
  "repeat_copy_sequence_length",
  "associative_recall_task",
  "associative_recall_sequence_length",
]
