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
import numpy as np


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


def map_in_chunks(fn: Callable[..., Any], arrays: dict[str, Any], chunk_size: int) -> Any:
  """``fn`` over ``arrays`` in chunks of ``chunk_size`` rows, the last one padded.

  Every call sees the same shapes, so a jitted ``fn`` compiles once; the padding rows
  (zeros) are cut from the outputs. For evaluating a model on a whole split.

  Args:
    fn: ``fn(**chunk) -> pytree of arrays with the chunk's rows on axis 0``.
    arrays: name -> array ``[E, ...]`` (all with the same E).
    chunk_size: rows per call (``min(chunk_size, E)`` is used).

  Returns:
    ``fn``'s output tree over all E rows (numpy arrays).

  Example:
    >>> out = map_in_chunks(lambda x: {"double": 2 * x}, {"x": np.arange(5)}, 2)
    >>> out["double"].tolist()
    [0, 2, 4, 6, 8]
  """
  sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"arrays must have the same number of rows, got {sizes}")
  n = next(iter(sizes.values()))
  chunk = max(1, min(int(chunk_size), n))
  outputs = []
  for start in range(0, n, chunk):
    part = {k: np.asarray(v[start : start + chunk]) for k, v in arrays.items()}
    m = min(chunk, n - start)
    if m < chunk:
      part = {
        k: np.concatenate([v, np.zeros((chunk - m, *v.shape[1:]), v.dtype)])
        for k, v in part.items()
      }
    outputs.append(jax.tree.map(lambda x, m=m: np.asarray(x)[:m], fn(**part)))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)


__all__ = ["bucketed_epoch", "bucket_branches", "map_in_chunks"]
