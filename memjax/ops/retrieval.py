"""Hard retrieval: exact top-k, argmax and approximate top-k over memory keys.

All functions take ``query [..., K]``, ``keys [N, K]`` and return scores and int32
indices ``[..., k]`` sorted by decreasing score.

Ties: exact top-k returns the lower slot index first among equal scores, the same
order as ``numpy.argsort(-scores, kind='stable')``.

NaN scores (a NaN in a key or the query) rank as ``-inf``: after every other score,
tied with masked slots (lower slot index first), so one corrupted slot never wins a
query. The returned score of such a slot stays NaN, so the corruption stays visible.
The order is that of ``numpy.argsort(-where(isnan(s), -inf, s), kind='stable')``. When
every slot of a query scores NaN (a NaN query), the read returns slots ``0..k-1`` with
NaN scores; :func:`argmax_read` returns slot 0 with a NaN score. ``+inf`` is a score
like any other (it ranks first).

Arguments that fix shapes (``k``, block sizes) take any integer (a Python int or a NumPy
integer such as ``np.int64(4)``); queries, keys, values and masks may be any array-like
(Python lists are converted with ``jnp.asarray``; a list of ints gives an integer array,
which is refused: queries and keys must be floating).

Hard indices are not differentiable; gradients flow to the returned ``scores`` and
``values`` (through the gather), not through the choice of slots.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.similarity import _REGISTRY as _SIMILARITIES
from memjax.ops.similarity import SimilarityFn, get_similarity


class Retrieval(NamedTuple):
  """What a hard read returns."""

  values: jax.Array  # [..., k, V] (argmax: [..., V])
  indices: jax.Array  # [..., k] int32 slot indices (argmax: [...])
  scores: jax.Array  # [..., k] similarity of each retrieved slot (argmax: [...])


def _masked(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
  if mask is None:
    return scores
  return jnp.where(jnp.broadcast_to(mask, scores.shape), scores, -jnp.inf)


def _rank_key(scores: jax.Array) -> jax.Array:
  """The scores with NaN as ``-inf``: what the top-k ranks by (see the module docstring)."""
  return jnp.where(jnp.isnan(scores), jnp.asarray(-jnp.inf, scores.dtype), scores)


def _top_k_nan_last(scores: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """``lax.top_k`` ranking NaN as ``-inf``; the returned scores keep their NaN."""
  _, indices = jax.lax.top_k(_rank_key(scores), k)
  return jnp.take_along_axis(scores, indices, axis=-1), indices


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
    appear only when fewer than k slots are valid, with score -inf. NaN scores rank
    as -inf (tied with masked slots) and are returned as NaN.
  """
  scores = _checks.as_array("scores", scores)
  _checks.check_floating("scores", scores)
  _checks.check_min_rank("scores", scores, 1, "[..., N]")
  k = _checks.check_k(k, scores.shape[-1])
  mask = _checks.check_mask(mask, scores.shape[-1])
  scores = _masked(scores, mask)
  flat = scores.reshape(-1, scores.shape[-1])
  if flat.shape[0] == 0:
    values, indices = jax.lax.top_k(scores, k)
    return values, indices.astype(jnp.int32)
  values, indices = _exact_top_k(flat, k)
  return values.reshape(*scores.shape[:-1], k), indices.reshape(*scores.shape[:-1], k)


# Exact top-k in two stages (the default on every path).
#
# XLA's TopK costs a few microseconds per row plus a few nanoseconds per element, far more
# than a max-reduction. So the slots are cut into contiguous chunks of ``chunk`` slots:
#   1. the max of every chunk is taken (one cheap reduction),
#   2. the k chunks with the largest maxima are chosen (TopK over N / chunk values),
#   3. the exact top-k is taken among the k * chunk scores of those chunks.
# This is exact: a slot in the true top-k lies in one of the k best chunks (otherwise k
# chunks would each hold a slot ranked above it). Ties keep the order of
# ``argsort(-s, kind='stable')``: TopK prefers lower chunk ids among equal maxima, and the
# chosen chunk ids are sorted before stage 3 so candidates stay in slot order.

_CHUNK = 32  # slots per chunk of the two-stage top-k
_MIN_TWO_STAGE = 4  # use two stages only when there are >= this many chunks per result


def _two_stage_ok(n: int, k: int, chunk: int) -> bool:
  return chunk > 1 and n >= chunk and n // chunk >= _MIN_TWO_STAGE * k


def _exact_top_k(
  scores: jax.Array, k: int, chunk: int = _CHUNK, nan_free: bool = False
) -> tuple[jax.Array, jax.Array]:
  """Exact top-k of ``scores [Q, n]`` along the last axis; ties: lower index first.

  NaN ranks as -inf and is returned as NaN. ``nan_free`` says the caller knows no score
  is NaN: the chunk maxima are then taken from the raw scores.
  XLA's CPU max-reduction does not reliably propagate NaN (a chunk holding a NaN can
  report the max of only part of its slots), so otherwise they are taken from the scores
  with NaN as -inf, which costs one more pass over the scores.
  """
  q, n = scores.shape
  if not _two_stage_ok(n, k, chunk):
    values, indices = _top_k_nan_last(scores, k)
    return values, indices.astype(jnp.int32)
  n_main = (n // chunk) * chunk
  main = scores[:, :n_main].reshape(q, n_main // chunk, chunk)
  if nan_free:
    chunk_max = jnp.max(main, axis=-1)
  else:
    chunk_max = jnp.max(_rank_key(main), axis=-1)  # each chunk's best non-NaN score
  _, chunk_ids = jax.lax.top_k(chunk_max, k)
  chunk_ids = jnp.sort(chunk_ids, axis=-1)  # slot order, for ties
  cand = jnp.take_along_axis(main, chunk_ids[:, :, None], axis=1).reshape(q, k * chunk)
  values, pos = _top_k_nan_last(cand, k)
  indices = jnp.take_along_axis(chunk_ids, pos // chunk, axis=-1) * chunk + pos % chunk
  indices = indices.astype(jnp.int32)
  if n_main == n:
    return values, indices
  rest_k = min(k, n - n_main)
  rest_v, rest_i = _top_k_nan_last(scores[:, n_main:], rest_k)
  return _merge_sorted(values, indices, rest_v, rest_i.astype(jnp.int32) + n_main, k)


def _merge_sorted(s1, i1, s2, i2, k):
  """Top-k of two candidate lists; on ties the first list (lower slots) wins."""
  s, pos = _top_k_nan_last(jnp.concatenate([s1, s2], axis=-1), k)
  return s, jnp.take_along_axis(jnp.concatenate([i1, i2], axis=-1), pos, axis=-1)


# Default blocking: the fastest of key blocks {8192, 16384, 32768, 65536} x query blocks
# {128, 256, 512, 1024} x chunks {16, 32} for 1024 queries of size 128 against 65536 keys
# (float32 and bfloat16 keys) on a 2-core AMD EPYC VM with AVX2/FMA (benchmarks/retrieval.py).
# Fewer, larger blocks win there because every TopK call costs per row. A score block is
# [_QUERY_BLOCK, _KEY_BLOCK] float32 = 64 MiB at most.
_KEY_BLOCK = 65536
_QUERY_BLOCK = 256


def _score_fn(sim: SimilarityFn, query: jax.Array, keys: jax.Array):
  """Returns ``f(q [Q, K], kb [B, K]) -> [Q, B]`` float32 (or wider) scores."""
  acc = jnp.promote_types(jnp.result_type(query, keys), jnp.float32)

  def f(q, kb):
    # Low-precision keys are widened block by block (exact), so the dot runs in float32:
    # CPUs without bf16 FMA run a float32 dot faster than a mixed or bf16 one.
    return sim(q.astype(acc), kb.astype(acc)).astype(acc)

  return f


def _leading_axis_sharded(x: jax.Array) -> bool:
  """True if ``x``'s first axis is sharded over an explicit mesh axis (sharding in types)."""
  try:
    spec = jax.typeof(x).sharding.spec
  except (AttributeError, TypeError):
    return False
  return len(spec) > 0 and spec[0] is not None


def _nan_free(q: jax.Array, keys: jax.Array, acc) -> jax.Array:
  """True when no built-in similarity can give a NaN score for these queries and keys.

  Finite inputs give a NaN score only through an overflow (``inf - inf``); with entries
  bounded by ``a_q`` and ``a_k``, ``|2 q.k - |q|^2 - |k|^2| <= K (a_q + a_k)^2``, which
  bounds every partial sum of dot, scaled_dot, cosine and neg_sq_l2. The bounds used are
  the Frobenius norms: one sum-reduction each (sums propagate NaN and inf, unlike XLA's
  CPU max), so a NaN or inf anywhere fails the test.
  """

  def norm(x):
    x = x.astype(jnp.float32)
    return jnp.sqrt(jnp.sum(x * x))

  bound = jnp.float32(jnp.finfo(acc).max) / 4
  return jnp.float32(q.shape[-1]) * (norm(q) + norm(keys)) ** 2 < bound


def _blocked_top_k(score, q, keys, valid, k, key_block, query_block, chunk, nan_free=False):
  """Top-k of ``score(q, keys)`` for ``q [Q, K]``, ``keys [N, K]``, streamed in blocks.

  ``nan_free``: no score can be NaN (the chunk maxima skip the NaN handling's extra pass).
  """
  nq, n = q.shape[0], keys.shape[0]
  key_block = min(key_block, n)
  query_block = min(query_block, nq)
  if _leading_axis_sharded(q):
    # Queries split over devices by an explicit mesh: slicing that axis is not allowed, and
    # each device already holds only its share, so only the keys are blocked.
    query_block = nq
  num_kb = n // key_block
  num_qb = -(-nq // query_block)
  q_pad = jnp.pad(q, ((0, num_qb * query_block - nq), (0, 0)))

  def block_top_k(qb, kb, vb, offset, nan_free):
    s = score(qb, kb)
    if vb is not None:
      s = jnp.where(vb[None, :], s, -jnp.inf)
    v, i = _exact_top_k(s, min(k, kb.shape[0]), chunk, nan_free)
    return v, i + offset

  def step(t):
    # Inner loop over query blocks, outer over key blocks: each key block is read once.
    b, j = t // num_qb, t % num_qb
    kb = jax.lax.dynamic_slice_in_dim(keys, b * key_block, key_block)
    vb = None if valid is None else jax.lax.dynamic_slice_in_dim(valid, b * key_block, key_block)
    qb = jax.lax.dynamic_slice_in_dim(q_pad, j * query_block, query_block)
    return block_top_k(qb, kb, vb, b * key_block, nan_free)

  v, i = jax.lax.map(step, jnp.arange(num_kb * num_qb, dtype=jnp.int32))
  # [num_kb * num_qb, Qb, kb_k] -> [Q, num_kb * kb_k], key blocks in slot order.
  kb_k = v.shape[-1]
  v = v.reshape(num_kb, num_qb * query_block, kb_k)[:, :nq].transpose(1, 0, 2)
  i = i.reshape(num_kb, num_qb * query_block, kb_k)[:, :nq].transpose(1, 0, 2)
  v, i = v.reshape(nq, num_kb * kb_k), i.reshape(nq, num_kb * kb_k)
  rest = n - num_kb * key_block
  if rest:
    start = num_kb * key_block
    vr = None if valid is None else valid[start:]
    rv, ri = block_top_k(q, keys[start:], vr, start, nan_free)
    v, i = jnp.concatenate([v, rv], axis=-1), jnp.concatenate([i, ri], axis=-1)
  if num_kb == 1 and not rest:
    return v, i.astype(jnp.int32)
  v, pos = _top_k_nan_last(v, k)
  return v, jnp.take_along_axis(i, pos, axis=-1).astype(jnp.int32)


def top_k_search(
  query: jax.Array,
  keys: jax.Array,
  k: int,
  similarity: str | SimilarityFn = "dot",
  mask: jax.Array | None = None,
  block_size: int | None = None,
  query_block_size: int | None = None,
  chunk_size: int = _CHUNK,
) -> tuple[jax.Array, jax.Array]:
  """Exact top-k of ``similarity(query, keys)``, streamed over blocks of keys and queries.

  The keys are scanned in blocks of ``block_size`` slots and the queries in blocks of
  ``query_block_size`` rows, so only one ``[query_block_size, block_size]`` block of scores
  exists at a time (never ``[Q, N]``). Inside a block an exact two-stage top-k is used
  (best chunks of ``chunk_size`` slots by their maximum, then the exact top-k among them).
  The result is the same for every block size, ties included.

  Scores are computed in float32 (float64 for float64 inputs): bfloat16 / float16 keys are
  widened block by block, which is exact, so the choice of slots equals a float32 search
  over the rounded keys. Returned scores have ``result_type(query, keys)``.

  Ties: among equal scores the lower slot index comes first, as in
  ``numpy.argsort(-scores, kind='stable')[..., :k]``. NaN scores rank as -inf (tied
  with masked slots) and are returned as NaN (see the module docstring).

  Args:
    query: [..., K] floating queries (an array or array-like).
    keys: [N, K] keys (any float dtype).
    k: number of results, ``1 <= k <= N`` (a Python int or a NumPy integer).
    similarity: a name from :mod:`memjax.ops.similarity` or a callable
      ``(query [Q, K], keys [B, K]) -> [Q, B]`` that scores each key on its own.
    mask: optional [N] bool validity of the slots; invalid slots score -inf and appear
      only when fewer than k slots are valid.
    block_size: key slots per block; None picks the default (65536, the fastest in
      ``benchmarks/retrieval.py`` on CPU). A value >= N gives one key block.
    query_block_size: query rows per block; None picks the default (256).
    chunk_size: slots per chunk of the two-stage top-k; 1 uses a plain top-k.

  Returns:
    ``(scores [..., k], indices [..., k] int32)``, best first.

  Raises:
    ValueError / TypeError: mismatched feature sizes, ``k`` out of range, wrong rank,
      non-floating queries or keys, a bad mask, non-positive block sizes.
  """
  sim = get_similarity(similarity)
  query, keys = _checks.check_query_keys(query, keys)
  n = keys.shape[0]
  k = _checks.check_k(k, n)
  if mask is not None:
    mask = _checks.check_mask(mask, n)
    _checks.check_rank("mask", mask, 1, "[N]")
  block_size = _KEY_BLOCK if block_size is None else block_size
  query_block_size = _QUERY_BLOCK if query_block_size is None else query_block_size
  block_size = _checks.check_size("block_size", block_size)
  query_block_size = _checks.check_size("query_block_size", query_block_size)
  chunk_size = _checks.check_size("chunk_size", chunk_size)
  batch = query.shape[:-1]
  q = query.reshape(-1, query.shape[-1])
  out_dtype = jnp.result_type(query, keys)
  if q.shape[0] == 0:
    return jnp.zeros((*batch, k), out_dtype), jnp.zeros((*batch, k), jnp.int32)
  score = _score_fn(sim, query, keys)
  search = functools.partial(
    _blocked_top_k,
    score,
    jax.lax.stop_gradient(q),
    jax.lax.stop_gradient(keys),
    mask,
    k,
    block_size,
    query_block_size,
    chunk_size,
  )
  if any(sim is f for f in _SIMILARITIES.values()):
    # A NaN-free search (the usual case) keeps the fast chunk maxima; one pass over the
    # queries and keys decides, and only one of the two programs runs.
    acc = jnp.promote_types(out_dtype, jnp.float32)
    scores, indices = jax.lax.cond(
      _nan_free(q, keys, acc), lambda: search(nan_free=True), lambda: search(nan_free=False)
    )
  else:  # a callable may make NaN from finite inputs
    scores, indices = search(nan_free=False)
  scores = _with_gradient(scores.astype(out_dtype), score, q, keys, indices)
  return scores.reshape(*batch, k), indices.reshape(*batch, k)


def _with_gradient(scores, score, q, keys, indices):
  """``scores [Q, k]`` unchanged, with the gradient of the chosen slots' similarities.

  The search itself is not differentiated (its choice is not differentiable, and its
  backward pass would cost two full ``[Q, N]`` matmuls); the k chosen scores are scored
  again from the gathered keys, and only their gradient is added (``r - stop_gradient(r)``
  is 0 in value). Only finite returned scores carry a gradient: masked (-inf) and NaN
  slots get none, so a NaN key never turns the query's gradient into NaN.
  """
  if _leading_axis_sharded(indices):
    # Queries split over an explicit mesh: the gathered keys follow the queries' sharding.
    sharding = jax.typeof(indices).sharding
    out = jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(*sharding.spec, None)
    )
    picked = keys.at[indices].get(out_sharding=out)  # [Q, k, K]
  else:
    picked = jnp.take(keys, indices, axis=0)  # [Q, k, K]
  again = jax.vmap(lambda qi, ki: score(qi[None], ki)[0])(q, picked)  # [Q, k]
  delta = (again - jax.lax.stop_gradient(again)).astype(scores.dtype)
  live = jnp.isfinite(scores) & jnp.isfinite(again)
  return scores + jnp.where(live, delta, jnp.zeros((), scores.dtype))


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
    ``(scores [..., k], indices [..., k] int32)``, best first. NaN scores rank as
    -inf and are returned as NaN, as in :func:`top_k_search`.
  """
  if not 0.0 < recall_target <= 1.0:
    raise ValueError(f"recall_target={recall_target} must be in (0, 1]")
  sim = get_similarity(similarity)
  query, keys = _checks.check_query_keys(query, keys)
  k = _checks.check_k(k, keys.shape[0])
  mask = _checks.check_mask(mask, keys.shape[0])
  raw = sim(jax.lax.stop_gradient(query), jax.lax.stop_gradient(keys))
  scores = _masked(raw, mask)
  _, i = jax.lax.approx_max_k(_rank_key(scores), k, recall_target=recall_target)
  i = i.astype(jnp.int32)
  chosen = jnp.take_along_axis(scores, i, axis=-1)
  flat_q = query.reshape(-1, query.shape[-1])
  chosen = _with_gradient(
    chosen.reshape(-1, k),
    lambda a, b: sim(a, b).astype(chosen.dtype),
    flat_q,
    keys,
    i.reshape(-1, k),
  )
  return chosen.reshape(i.shape), i


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
    ``scores [..., k]``. Indices are not differentiable. NaN scores rank last (see
    the module docstring).

  Example:
    >>> keys = jnp.eye(4); values = jnp.arange(4.0)[:, None]
    >>> top_k_read(jnp.array([0.0, 1.0, 0.5, 0.0]), keys, values, k=2).indices
    Array([1, 2], dtype=int32)
  """
  query, keys = _checks.check_query_keys(query, keys)
  values = _checks.as_array("values", values)
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
    The index is not differentiable; ties go to the lowest index. A NaN score never
    wins over another score; when every score is NaN the read is slot 0 with score NaN.
  """
  values = _checks.as_array("values", values)
  r = top_k_read(query, keys, values, 1, similarity, mask)
  return Retrieval(
    r.values[..., 0, :] if values.ndim > 1 else r.values[..., 0],
    r.indices[..., 0],
    r.scores[..., 0],
  )


__all__ = [
  "Retrieval",
  "top_k_scores",
  "top_k_search",
  "approx_top_k_search",
  "top_k_read",
  "argmax_read",
]
