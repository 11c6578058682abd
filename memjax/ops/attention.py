"""Soft (differentiable) attention read over memory slots."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.similarity import SimilarityFn, get_similarity


def masked_softmax(scores: jax.Array, mask: jax.Array | None = None, axis: int = -1) -> jax.Array:
  """Softmax that gives exactly 0 weight to masked slots.

  A row with no valid slot gets all-zero weights (never NaN).

  Args:
    scores: [..., N] floating scores.
    mask: optional bool, broadcastable to ``scores``; False = empty slot.
    axis: the slot axis.

  Returns:
    [..., N] weights, summing to 1 over valid slots (0 where none is valid).
  """
  if mask is None:
    return jax.nn.softmax(scores, axis=axis)
  mask = jnp.broadcast_to(mask, scores.shape)  # [N] masks work without rank promotion
  big_neg = jnp.finfo(scores.dtype).min
  weights = jax.nn.softmax(jnp.where(mask, scores, big_neg), axis=axis)
  return jnp.where(mask, weights, 0)


def attention_read(
  query: jax.Array,
  keys: jax.Array,
  values: jax.Array,
  mask: jax.Array | None = None,
  similarity: str | SimilarityFn = "scaled_dot",
) -> tuple[jax.Array, jax.Array]:
  """Soft read ``alpha = softmax(sim(q, K_M))``, ``v = sum_i alpha_i V_M[i]``.

  With the default ``'scaled_dot'`` similarity this is ``softmax(q K^T / sqrt(d)) V``.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] memory keys.
    values: [N, V] memory values.
    mask: optional [N] (or [..., N]) bool validity of the slots; empty slots get 0
      weight, and a memory with no valid slot reads zeros.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.

  Returns:
    ``(read [..., V], weights [..., N])``. Differentiable in all float inputs.

  Example:
    >>> keys = jnp.eye(3); values = jnp.arange(6.0).reshape(3, 2)
    >>> read, w = attention_read(jnp.array([10.0, 0, 0]), keys, values)
    >>> w.argmax()
    Array(0, dtype=int32)
  """
  _checks.check_query_keys(query, keys)
  _checks.check_floating("values", values)
  _checks.check_rank("values", values, 2, "[N, V]")
  if values.shape[0] != keys.shape[0]:
    raise ValueError(
      f"values has {values.shape[0]} slots (shape {values.shape}) but keys has "
      f"{keys.shape[0]} (shape {keys.shape})"
    )
  _checks.check_mask(mask, keys.shape[0])
  scores = get_similarity(similarity)(query, keys)
  weights = masked_softmax(scores, mask)
  read = jnp.einsum("...n,nv->...v", weights.astype(values.dtype), values)
  return read, weights


__all__ = ["masked_softmax", "attention_read"]
