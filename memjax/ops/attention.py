"""Soft (differentiable) attention read over memory slots."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.similarity import SimilarityFn, get_similarity


def masked_softmax(scores: jax.Array, mask: jax.Array | None = None, axis: int = -1) -> jax.Array:
  """Softmax that gives exactly 0 weight to masked slots.

  A row with no valid slot gets all-zero weights (never NaN).

  NaN scores of valid slots propagate (the row's weights are NaN); a masked slot's score
  is never read, NaN or not. (:func:`attention_read` keeps slots with non-finite keys
  out of the softmax by masking them.)

  Args:
    scores: [..., N] floating scores.
    mask: optional bool, broadcastable to ``scores``; False = empty slot.
    axis: the slot axis.

  Returns:
    [..., N] weights, summing to 1 over valid slots (0 where none is valid).
  """
  scores = _checks.as_array("scores", scores)
  _checks.check_floating("scores", scores)
  if mask is None:
    return jax.nn.softmax(scores, axis=axis)
  mask = jnp.broadcast_to(_checks.as_array("mask", mask), scores.shape)  # no rank promotion
  big_neg = jnp.finfo(scores.dtype).min
  weights = jax.nn.softmax(jnp.where(mask, scores, big_neg), axis=axis)
  return jnp.where(mask, weights, 0)


NONFINITE_KEYS = ("exclude", "propagate")


def attention_read(
  query: jax.Array,
  keys: jax.Array,
  values: jax.Array,
  mask: jax.Array | None = None,
  similarity: str | SimilarityFn = "scaled_dot",
  nonfinite_keys: str = "exclude",
) -> tuple[jax.Array, jax.Array]:
  """Soft read ``alpha = softmax(sim(q, K_M))``, ``v = sum_i alpha_i V_M[i]``.

  With the default ``'scaled_dot'`` similarity this is ``softmax(q K^T / sqrt(d)) V``.

  Corrupted slots (``nonfinite_keys='exclude'``, the default): a slot whose key holds a
  NaN or an infinity is read as an empty slot, exactly as if ``mask`` were False there:
  weight exactly 0, its value is not read (a NaN value there cannot reach the read), and
  no gradient flows to or through it, so the read, the other weights and the gradients of
  the query and the finite slots stay finite and equal to a read without that slot. If
  every valid slot is corrupted, the read and the weights are NaN (a broken memory is
  never reported as an empty one). NaN from elsewhere propagates as IEEE arithmetic
  says: a NaN query gives a NaN read, and so does a NaN or inf value in a slot that has
  weight. The cost is one pass over the keys and one over the values.
  ``nonfinite_keys='propagate'`` skips that pass: one NaN key then makes every read NaN
  (for callers that rely on NaN to flag bad input, such as MemN2N's out-of-vocabulary
  words). To find where a NaN comes from, run with ``jax.config.update('jax_debug_nans',
  True)``.

  Args:
    query: [..., K] floating queries (an array or array-like).
    keys: [N, K] memory keys.
    values: [N, V] memory values.
    mask: optional [N] (or [..., N]) bool validity of the slots; empty slots get 0
      weight, and a memory with no valid slot (or no slot, N = 0) reads zeros. With a
      [N] mask the values of empty slots are not read either; with a per-query mask
      they enter with weight 0 (so they must be finite).
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    nonfinite_keys: ``'exclude'`` (default) or ``'propagate'``, see above.

  Returns:
    ``(read [..., V], weights [..., N])``. Differentiable in all float inputs.

  Raises:
    ValueError / TypeError: mismatched shapes, non-floating inputs, a bad mask or policy.

  Example:
    >>> keys = jnp.eye(3); values = jnp.arange(6.0).reshape(3, 2)
    >>> read, w = attention_read(jnp.array([10.0, 0, 0]), keys, values)
    >>> w.argmax()
    Array(0, dtype=int32)
  """
  query, keys = _checks.check_query_keys(query, keys)
  values = _checks.as_array("values", values)
  _checks.check_floating("values", values)
  _checks.check_rank("values", values, 2, "[N, V]")
  if values.shape[0] != keys.shape[0]:
    raise ValueError(
      f"values has {values.shape[0]} slots (shape {values.shape}) but keys has "
      f"{keys.shape[0]} (shape {keys.shape})"
    )
  mask = _checks.check_mask(mask, keys.shape[0])
  if nonfinite_keys not in NONFINITE_KEYS:
    raise ValueError(f"nonfinite_keys={nonfinite_keys!r} is not one of {NONFINITE_KEYS}")
  sim = get_similarity(similarity)
  if nonfinite_keys == "propagate":
    weights = masked_softmax(sim(query, keys), mask)
    read = jnp.einsum("...n,nv->...v", weights.astype(values.dtype), values)
    return read, weights
  n = keys.shape[0]
  key_ok = jnp.all(jnp.isfinite(keys), axis=-1)  # [N]
  scores = sim(query, jnp.where(key_ok[:, None], keys, 0))  # no NaN reaches the gradients
  key_ok_b = jnp.broadcast_to(key_ok, scores.shape)
  if mask is None:
    usable = key_ok_b
    valid_any = jnp.asarray(n > 0)
  else:
    mask_b = jnp.broadcast_to(mask, scores.shape)
    usable = mask_b & key_ok_b
    valid_any = jnp.any(mask_b, axis=-1, keepdims=True)
  weights = masked_softmax(scores, usable)
  broken = valid_any & ~jnp.any(usable, axis=-1, keepdims=True)
  weights = jnp.where(broken, jnp.nan, weights)
  read_ok = key_ok if mask is None or mask.ndim != 1 else key_ok & mask
  values = jnp.where(read_ok[:, None], values, 0)
  read = jnp.einsum("...n,nv->...v", weights.astype(values.dtype), values)
  return read, weights


__all__ = ["NONFINITE_KEYS", "masked_softmax", "attention_read"]
