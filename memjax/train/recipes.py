"""The training steps of memjax's reference studies, shared by the studies and benchmarks.

* :func:`sequence_train_steps`: a sequence model on generated bit-sequence tasks
  (``memjax.data.algorithmic``: the NTM paper's copy / recall), batches generated inside
  the step, cut to static length buckets or drawn from length ranges.
* :func:`memn2n_train_epoch`: MemN2N on device-resident story arrays cut into length
  buckets (``memjax.data.babi.length_buckets``): one epoch per dispatch, the paper's summed
  loss, random noise (RN) and linear start (LS).

Both are :func:`memjax.train.make_train_steps` plus the model's loss; ``experiments/``
adds configs, hooks and tables, ``benchmarks/`` times exactly these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from memjax.data import algorithmic
from memjax.data.buckets import even_boundaries
from memjax.models import memn2n
from memjax.train import batches
from memjax.train.loop import TrainState, make_train_steps


def _mean_cost(model, prepare):
  """``loss(params, batch, key, context)`` on ``prepare(batch)``: mean bits per sequence."""

  def loss(params, batch, key, context):
    del key, context
    batch = prepare(batch)
    costs = algorithmic.sequence_costs(model.apply({"params": params}, batch.inputs), batch)
    return jnp.mean(costs["bits"]), {k: jnp.mean(v) for k, v in costs.items()}

  return loss


def sequence_train_steps(
  model: Any,
  optimizer: optax.GradientTransformation,
  train_batch: Callable[[jax.Array, int], algorithmic.AlgorithmicBatch] | algorithmic.LengthGroups,
  batch_size: int,
  steps_per_call: int,
  num_buckets: int = 1,
  **kwargs: Any,
) -> Callable[[TrainState], tuple[TrainState, dict[str, jax.Array]]]:
  """``steps_per_call`` optimizer steps on generated batches, the cost in bits per sequence.

  Each step draws a batch padded to the task's longest sequence ``T``. With
  ``num_buckets > 1`` the loss and its gradient are computed on the batch cut to the
  shortest of ``even_boundaries(T, num_buckets)`` that holds its last scored step: the
  dropped steps change neither the loss nor the gradient, so the update is that of the
  padded batch, while a batch of short sequences costs less. With
  :class:`~memjax.data.algorithmic.LengthGroups` each step draws a length range, then a
  batch from it (``num_buckets`` is then unused).

  Args:
    model: maps ``[B, T, Fi]`` to ``[B, T, Fo]`` logits (any T); params ``{'params': ...}``.
    optimizer: an Optax transformation.
    train_batch: ``fn(key, B) -> AlgorithmicBatch``, or length groups.
    batch_size: B.
    steps_per_call: steps per call.
    num_buckets: static lengths a batch may be cut to (1: none).
    **kwargs: ``mesh``, ``compute_dtype``, ``donate`` of :func:`make_train_steps`.

  Returns:
    ``fn(state) -> (state, {'loss', 'bits', 'bit_errors'})``, each ``[steps_per_call]``
    batch means.
  """
  common = dict(num_steps=steps_per_call, **kwargs)
  if isinstance(train_batch, algorithmic.LengthGroups):
    groups = train_batch
    probs = jnp.asarray(groups.probs)

    def pick_group(x, key, context):
      k_group, k_batch = jax.random.split(key)
      return jax.random.choice(k_group, len(groups.probs), p=probs), k_batch

    losses = [_mean_cost(model, lambda b, fn=fn: fn(b[1], batch_size)) for fn in groups.batches]
    return make_train_steps(
      losses, optimizer, batch_fn=pick_group, branch_fn=lambda b: b[0], **common
    )
  total = jax.eval_shape(lambda: train_batch(jax.random.key(0), batch_size)).mask.shape[1]
  lengths = even_boundaries(total, num_buckets)
  losses = [_mean_cost(model, lambda b, n=n: algorithmic.truncate(b, n)) for n in lengths]
  return make_train_steps(
    losses,
    optimizer,
    batch_fn=lambda x, key, context: train_batch(key, batch_size),
    branch_fn=lambda b: jnp.searchsorted(jnp.asarray(lengths), algorithmic.active_steps(b.mask)),
    **common,
  )


def memn2n_train_epoch(
  model: memn2n.MemN2N,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int,
  random_noise: float,
  num_buckets: int,
  **kwargs: Any,
) -> Callable[[TrainState, Sequence[dict[str, jax.Array]], Any], tuple[TrainState, dict]]:
  """``train_epoch(state, buckets, linear) -> (state, {'loss': [S]})``: one epoch, one scan.

  Each length bucket is shuffled and cut into batches, the last one padded with
  zero-weight examples (:func:`memjax.train.batches.bucketed_epoch`); the batches of all
  buckets are shuffled together and run as one :func:`make_train_steps` scan whose step
  differentiates its bucket's branch of the summed (not averaged) softmax cross-entropy
  (Sukhbaatar et al. 2015). RN draws its random numbers for the epoch at once; ``linear``
  (traced) removes the hops' softmax (linear start). The state's key data advances once
  per epoch.

  Args:
    model: the MemN2N (``num_slots`` = the buckets' most memory rows).
    optimizer: an Optax transformation.
    batch_size: B.
    random_noise: RN's fraction of empty memories inserted (0 = off).
    num_buckets: the number of length buckets (static).
    **kwargs: ``mesh``, ``compute_dtype``, ``donate`` of :func:`make_train_steps`.

  Returns:
    ``train_epoch(state, buckets, linear)``; ``buckets`` are dicts with ``story [E_b, M_b,
    S_b]``, ``query [E_b, S_b]``, ``answer [E_b]`` (e.g. ``memjax.data.babi.length_buckets``).
  """
  num_times = model.num_slots
  draws = memn2n.random_noise_draws(num_times, random_noise) if random_noise > 0 else 1

  def example_loss(params, rows, x, key, linear):
    del key
    ages = None
    if random_noise > 0:
      ages = memn2n.random_noise_ages_from_uniform(
        x["uniforms"], rows["story"], random_noise, num_times
      )
    logits, _ = model.apply(params, rows["story"], rows["query"], ages=ages, linear=linear)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, rows["answer"])
    return jnp.sum(losses * x["weight"]), {}  # summed, not averaged, over the batch

  steps = make_train_steps(
    batches.bucket_branches(example_loss, num_buckets),
    optimizer,
    branch_fn=lambda x: x["bucket"],
    **kwargs,
  )

  @jax.jit
  def plan(rng, sizes_like):
    keys = jax.random.split(jax.random.wrap_key_data(rng), 3 + len(sizes_like))
    sizes = [a.shape[0] for a in sizes_like]
    xs = batches.bucketed_epoch(jnp.concatenate([keys[1:2], keys[3:]]), sizes, batch_size)
    xs["uniforms"] = jax.random.uniform(keys[2], xs["index"].shape + (draws,))
    return jax.random.key_data(keys[0]), xs

  def train_epoch(state, buckets, linear):
    rng, xs = plan(state.rng, [b["answer"] for b in buckets])
    return steps(state._replace(rng=rng), xs, (buckets, jnp.asarray(linear)))

  return train_epoch


__all__ = ["sequence_train_steps", "memn2n_train_epoch"]
