"""Hard retrieval: exact top-k, argmax and approximate top-k over memory keys.

All functions take ``query [..., K]``, ``keys [N, K]`` and return scores and int32
indices ``[..., k]`` sorted by decreasing score.

Ties: exact top-k returns the lower slot index first among equal scores, the same
order as ``numpy.argsort(-scores, kind='stable')``.

Hard indices are not differentiable; gradients flow to the returned ``scores`` and
``values`` (through the gather), not through the choice of slots.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.similarity import SimilarityFn, get_similarity


class Retrieval(NamedTuple):
  """What a hard read returns."""

  values: jax.Array  # [..., k, V] (argmax: [..., V])
  indices: jax.Array  # [..., k] int32 slot indices (argmax: [...])
  scores: jax.Array  # [..., k] similarity of each retrieved slot (argmax: [...])


def _masked(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
  if mask is None:
    return scores
  return jnp.where(mask, scores, -jnp.inf)


def top_k_scores(
    scores: jax.Array, k: int, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Exact top-k along the last axis.

  Args:
    scores: [..., N] floating scores.
    k: number of results, ``1 <= k <= N``.
    mask: optional [..., N] bool, False slots are never preferred (score -inf).

  Returns:
    ``(top_scores [..., k], indices [..., k] int32)``, best first. Masked slots
    appear only when fewer than k slots are valid, with score -inf.
  """
  _checks.check_floating("scores", scores)
  _checks.check_min_rank("scores", scores, 1, "[..., N]")
  _checks.check_k(k, scores.shape[-1])
  _checks.check_mask(mask, scores.shape[-1])
  values, indices = jax.lax.top_k(_masked(scores, mask), k)
  return values, indices.astype(jnp.int32)


def _merge(best_s, best_i, new_s, new_i, k):
  s = jnp.concatenate([best_s, new_s], axis=-1)
  i = jnp.concatenate([best_i, new_i], axis=-1)
  s, pos = jax.lax.top_k(s, k)
  return s, jnp.take_along_axis(i, pos, axis=-1)


def top_k_search(
    query: jax.Array,
    keys: jax.Array,
    k: int,
    similarity: str | SimilarityFn = "dot",
    mask: jax.Array | None = None,
    block_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Exact top-k of ``similarity(query, keys)``, blocked over the keys.

  With ``block_size`` the keys are scanned in blocks of that many slots and a running
  top-k is merged, so memory is ``O(Q * block_size)`` instead of ``O(Q * N)``; the
  result equals the unblocked one (ties included: earlier blocks win).

  Args:
    query: [..., K] floating queries.
    keys: [N, K] keys (any float dtype; bfloat16 keys are scored with float32
      accumulation).
    k: number of results, ``1 <= k <= N``.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    mask: optional [N] bool validity of the slots.
    block_size: slots per block, or None for one block.

  Returns:
    ``(scores [..., k], indices [..., k] int32)``, best first.

  Raises:
    ValueError / TypeError: mismatched feature sizes, ``k`` out of range, wrong rank,
      non-floating queries.
  """
  sim = get_similarity(similarity)
  _checks.check_query_keys(query, keys)
  n = keys.shape[0]
  _checks.check_k(k, n)
  if mask is not None:
    _checks.check_rank("mask", mask, 1, "[N]")
    _checks.check_mask(mask, n)
  if block_size is None or block_size >= n:
    return top_k_scores(sim(query, keys), k, mask)
  if block_size < k:
    raise ValueError(f"block_size={block_size} must be >= k={k}")
  num_blocks = -(-n // block_size)
  pad = num_blocks * block_size - n
  valid = jnp.ones((n,), bool) if mask is None else mask
  keys_b = jnp.pad(keys, ((0, pad), (0, 0))).reshape(num_blocks, block_size, -1)
  valid_b = jnp.pad(valid, (0, pad)).reshape(num_blocks, block_size)
  offsets = jnp.arange(num_blocks, dtype=jnp.int32) * block_size

  def body(carry, block):
    kb, vb, off = block
    s, i = jax.lax.top_k(_masked(sim(query, kb), vb), k)
    return _merge(*carry, s, i.astype(jnp.int32) + off, k), None

  first_s, first_i = jax.lax.top_k(_masked(sim(query, keys_b[0]), valid_b[0]), k)
  init = (first_s, first_i.astype(jnp.int32))
  (scores, indices), _ = jax.lax.scan(body, init, (keys_b[1:], valid_b[1:], offsets[1:]))
  return scores, indices


def approx_top_k_search(
    query: jax.Array,
    keys: jax.Array,
    k: int,
    similarity: str | SimilarityFn = "dot",
    mask: jax.Array | None = None,
    recall_target: float = 0.95,
) -> tuple[jax.Array, jax.Array]:
  """Approximate top-k with :func:`jax.lax.approx_max_k`.

  On TPU this is the partial-reduce algorithm of Chern et al. 2022 ("TPU-KNN") with
  the expected recall ``recall_target``; on CPU and GPU XLA may compute it exactly.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] keys.
    k: number of results.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    mask: optional [N] bool validity of the slots.
    recall_target: expected fraction of the true top-k returned, in (0, 1].

  Returns:
    ``(scores [..., k], indices [..., k] int32)``, best first.
  """
  if not 0.0 < recall_target <= 1.0:
    raise ValueError(f"recall_target={recall_target} must be in (0, 1]")
  sim = get_similarity(similarity)
  _checks.check_query_keys(query, keys)
  _checks.check_k(k, keys.shape[0])
  _checks.check_mask(mask, keys.shape[0])
  scores = _masked(sim(query, keys), mask)
  s, i = jax.lax.approx_max_k(scores, k, recall_target=recall_target)
  return s, i.astype(jnp.int32)


def top_k_read(
    query: jax.Array,
    keys: jax.Array,
    values: jax.Array,
    k: int,
    similarity: str | SimilarityFn = "dot",
    mask: jax.Array | None = None,
    approximate: bool = False,
    recall_target: float = 0.95,
    block_size: int | None = None,
) -> Retrieval:
  """Reads the values of the k best-matching slots.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] keys.
    values: [N, V] values (or [N] for scalar values).
    k: number of slots to read.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    mask: optional [N] bool validity of the slots.
    approximate: use :func:`approx_top_k_search` instead of the exact search.
    recall_target: recall target of the approximate search.
    block_size: key block size of the exact search (see :func:`top_k_search`).

  Returns:
    :class:`Retrieval` with ``values [..., k, V]``, ``indices [..., k]``,
    ``scores [..., k]``. Indices are not differentiable.

  Example:
    >>> keys = jnp.eye(4); values = jnp.arange(4.0)[:, None]
    >>> top_k_read(jnp.array([0.0, 1.0, 0.5, 0.0]), keys, values, k=2).indices
    Array([1, 2], dtype=int32)
  """
  _checks.check_min_rank("values", values, 1, "[N, ...]")
  if values.shape[0] != keys.shape[0]:
    raise ValueError(
        f"values has {values.shape[0]} slots (shape {values.shape}) but keys has "
        f"{keys.shape[0]} (shape {keys.shape})"
    )
  if approximate:
    scores, indices = approx_top_k_search(query, keys, k, similarity, mask, recall_target)
  else:
    scores, indices = top_k_search(query, keys, k, similarity, mask, block_size)
  return Retrieval(jnp.take(values, indices, axis=0), indices, scores)


def argmax_read(
    query: jax.Array,
    keys: jax.Array,
    values: jax.Array,
    similarity: str | SimilarityFn = "dot",
    mask: jax.Array | None = None,
) -> Retrieval:
  """Reads the value of the single best slot: ``k* = argmax sim(q, k)``, ``V_M[k*]``.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] keys.
    values: [N, V] values.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    mask: optional [N] bool validity of the slots.

  Returns:
    :class:`Retrieval` with ``values [..., V]``, ``indices [...]``, ``scores [...]``.
    The index is not differentiable; ties go to the lowest index.
  """
  r = top_k_read(query, keys, values, 1, similarity, mask)
  return Retrieval(r.values[..., 0, :] if values.ndim > 1 else r.values[..., 0],
                   r.indices[..., 0], r.scores[..., 0])


__all__ = [
    "Retrieval",
    "top_k_scores",
    "top_k_search",
    "approx_top_k_search",
    "top_k_read",
    "argmax_read",
]
