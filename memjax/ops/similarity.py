"""Similarity measures between queries and memory keys.

Every measure maps ``query: [..., K]`` and ``keys: [N, K]`` to scores ``[..., N]``
(higher is more similar), so retrieval code can take any of them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from memjax.ops import _checks

SimilarityName = Literal["dot", "scaled_dot", "cosine", "neg_sq_l2"]
SimilarityFn = Callable[[jax.Array, jax.Array], jax.Array]

_EPS = 1e-6


def _scores(query: jax.Array, keys: jax.Array) -> jax.Array:
  # Contract the feature axis; accumulate in float32 for low-precision inputs.
  acc = jnp.promote_types(jnp.result_type(query, keys), jnp.float32)
  out = jnp.einsum("...k,nk->...n", query, keys, preferred_element_type=acc)
  return out.astype(jnp.result_type(query, keys))


def dot(query: jax.Array, keys: jax.Array) -> jax.Array:
  """Dot product ``q . k``.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] memory keys.

  Returns:
    [..., N] scores.
  """
  _checks.check_query_keys(query, keys)
  return _scores(query, keys)


def scaled_dot(query: jax.Array, keys: jax.Array) -> jax.Array:
  """Scaled dot product ``q . k / sqrt(K)`` (Vaswani et al. 2017).

  Args:
    query: [..., K] floating queries.
    keys: [N, K] memory keys.

  Returns:
    [..., N] scores.
  """
  _checks.check_query_keys(query, keys)
  scale = jnp.asarray(query.shape[-1], query.dtype) ** -0.5
  return _scores(query * scale, keys)


def cosine(query: jax.Array, keys: jax.Array, eps: float = _EPS) -> jax.Array:
  """Cosine similarity ``q . k / (|q| |k| + eps)``, in [-1, 1].

  Args:
    query: [..., K] floating queries.
    keys: [N, K] memory keys.
    eps: added to the norms so zero vectors (empty slots) give 0, not NaN.

  Returns:
    [..., N] scores.
  """
  _checks.check_query_keys(query, keys)
  return _scores(query / _safe_norm(query, eps), keys / _safe_norm(keys, eps))


def _safe_norm(x: jax.Array, eps: float) -> jax.Array:
  """``|x| + eps`` over the last axis (keepdims), with a finite gradient at x = 0."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  nonzero = sq > 0
  norm = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1)), 0)
  return norm + eps


def neg_sq_l2(query: jax.Array, keys: jax.Array) -> jax.Array:
  """Negative squared Euclidean distance ``-|q - k|^2``.

  Computed as ``2 q.k - |q|^2 - |k|^2`` (one matmul) and clipped at 0 from above,
  so it never reports a positive "distance" from rounding. A NaN in the query or a key
  gives a NaN score (never the clip's 0).

  Args:
    query: [..., K] floating queries.
    keys: [N, K] memory keys.

  Returns:
    [..., N] scores (<= 0).
  """
  _checks.check_query_keys(query, keys)
  qk = _scores(query, keys)
  q2 = jnp.sum(query * query, axis=-1, keepdims=True)  # [..., 1]
  k2 = jnp.sum(keys * keys, axis=-1).reshape((1,) * (qk.ndim - 1) + (-1,))  # [1.., N]
  d = 2 * qk - q2 - k2
  # A select, not jnp.minimum: XLA's CPU min may drop a NaN (a NaN key would score 0,
  # the best possible score); NaN > 0 is False, so the NaN is kept.
  return jnp.where(d > 0, jnp.zeros((), d.dtype), d).astype(qk.dtype)


_REGISTRY: dict[str, SimilarityFn] = {
  "dot": dot,
  "scaled_dot": scaled_dot,
  "cosine": cosine,
  "neg_sq_l2": neg_sq_l2,
}


def get_similarity(similarity: str | SimilarityFn) -> SimilarityFn:
  """Returns the similarity function for a name, or the callable itself.

  Args:
    similarity: one of ``'dot'``, ``'scaled_dot'``, ``'cosine'``, ``'neg_sq_l2'``,
      or a callable ``(query [..., K], keys [N, K]) -> [..., N]``.

  Raises:
    ValueError: for an unknown name.
  """
  if callable(similarity):
    return similarity
  try:
    return _REGISTRY[similarity]
  except KeyError:
    raise ValueError(
      f"similarity={similarity!r} is not one of {sorted(_REGISTRY)} (or a callable)"
    ) from None


def similarity_scores(
  query: jax.Array, keys: jax.Array, similarity: str | SimilarityFn = "dot"
) -> jax.Array:
  """Scores of queries against keys under a named (or given) similarity.

  Args:
    query: [..., K] floating queries.
    keys: [N, K] floating keys.
    similarity: ``'dot'``, ``'scaled_dot'``, ``'cosine'``, ``'neg_sq_l2'`` or a callable
      ``(query, keys) -> scores``.

  Returns:
    [..., N] scores, higher is more similar.
  """
  return get_similarity(similarity)(query, keys)


__all__ = [
  "SimilarityName",
  "SimilarityFn",
  "dot",
  "scaled_dot",
  "cosine",
  "neg_sq_l2",
  "get_similarity",
  "similarity_scores",
]
