"""Epochs over device-resident data cut into length buckets (one static shape each).

Small datasets live on the device whole; an epoch is then a list of index batches, and
one ``lax.scan`` (:func:`memjax.train.make_train_steps`) runs them all. When the
examples are grouped into buckets of different static shapes (short stories cut short,
see :func:`memjax.data.buckets.bucket_by_length`), each step gathers its rows from one
bucket and differentiates that bucket's branch.

Example:
  >>> keys = jax.random.split(jax.random.key(0), 3)  # the order, then one per bucket
  >>> plan = bucketed_epoch(keys, sizes=(5, 2), batch_size=2)
  >>> plan["bucket"].shape, plan["index"].shape  # 3 + 1 batches of 2
  ((4,), (4, 2))
  >>> float(plan["weight"].sum())  # every example once; padding rows weigh 0
  7.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def bucketed_epoch(keys: jax.Array, sizes: Sequence[int], batch_size: int) -> dict[str, jax.Array]:
  """One shuffled epoch over buckets of ``sizes`` examples, in batches of ``batch_size``.

  Each bucket is permuted (``keys[1 + b]``) and cut into batches, its last one filled
  up with repeated rows of weight 0; then the batches of all buckets are shuffled
  together (``keys[0]``).

  Args:
    keys: [1 + len(sizes)] PRNG keys.
    sizes: examples per bucket (static).
    batch_size: B.

  Returns:
    ``{'bucket': [S] int32, 'index': [S, B] int32 rows of that bucket,
    'weight': [S, B] float32}`` with ``S = sum(ceil(size / B))``.
  """
  orders, weights, ids = [], [], []
  for b, (n, key) in enumerate(zip(sizes, keys[1:], strict=True)):
    num_batches = math.ceil(n / batch_size)
    perm = jax.random.permutation(key, n)
    slots = jnp.arange(num_batches * batch_size)
    orders.append(perm[slots % n].reshape(num_batches, batch_size))
    weights.append((slots < n).astype(jnp.float32).reshape(num_batches, batch_size))
    ids.append(jnp.full((num_batches,), b, jnp.int32))
  shuffle = jax.random.permutation(keys[0], sum(o.shape[0] for o in orders))
  return {
    "bucket": jnp.concatenate(ids)[shuffle],
    "index": jnp.concatenate(orders)[shuffle],
    "weight": jnp.concatenate(weights)[shuffle],
  }


def bucket_branches(loss_fn: Callable[..., Any], num_buckets: int) -> list[Callable[..., Any]]:
  """One loss per bucket, for ``make_train_steps(..., branch_fn=lambda x: x['bucket'])``.

  The step's input ``x`` is a row of :func:`bucketed_epoch`'s plan (plus any other
  per-step arrays); ``context = (buckets, rest)`` with ``buckets`` a sequence of dicts
  of arrays ``[E_b, ...]``. Branch ``b`` gathers ``rows = {k: v[x['index']]}`` from
  ``buckets[b]`` and returns ``loss_fn(params, rows, x, key, rest)``.

  Args:
    loss_fn: ``fn(params, rows, x, key, rest) -> (loss, metrics)``.
    num_buckets: the number of buckets (static).

  Returns:
    ``num_buckets`` loss functions.
  """

  def branch(b):
    def loss(params, x, key, context):
      buckets, rest = context
      rows = {k: v[x["index"]] for k, v in buckets[b].items()}
      return loss_fn(params, rows, x, key, rest)

    return loss

  return [branch(b) for b in range(num_buckets)]


__all__ = ["bucketed_epoch", "bucket_branches"]
