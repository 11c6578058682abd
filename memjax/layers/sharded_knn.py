"""A kNN memory split over devices: per-shard exact top-k, then one merge.

The N slots of a store are split over the S devices of a mesh axis (N divisible by S,
each device holding ``N / S`` consecutive slots). Every device runs the exact
:func:`memjax.ops.top_k_search` over its slots (``min(k, N / S)`` results, global slot
indices), the candidates of all shards are gathered (``S * min(k, N / S)`` per query,
never the memory), and the k best are kept. The result equals the unsharded search,
ties included (lower global slot first), for any S dividing N: the gathered candidates
are in shard order, and ``lax.top_k`` keeps the lower position among equal scores.

Built on ``jax.shard_map`` (the current API in JAX 0.10; ``jax.experimental.shard_map``
is its deprecated alias). The queries are replicated over the memory axis.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from memjax.memory import kv
from memjax.memory.kv import KVState
from memjax.ops import _checks
from memjax.ops.retrieval import Retrieval, top_k_search
from memjax.ops.similarity import SimilarityFn


def _shards(mesh: Mesh, axis_name: str, capacity: int) -> int:
  if axis_name not in mesh.shape:
    raise ValueError(f"axis_name={axis_name!r} is not an axis of the mesh {dict(mesh.shape)}")
  s = mesh.shape[axis_name]
  if capacity % s:
    raise ValueError(
      f"the memory's {capacity} slots must divide evenly over the {s} devices of mesh axis "
      f"{axis_name!r}"
    )
  return s


def _merge(scores: jax.Array, indices: jax.Array, k: int, axis_name: str):
  """Gathers every shard's candidates ``[G, Q, c]`` and keeps the k best ``[G, Q, k]``."""
  all_s = jax.lax.all_gather(scores, axis_name, axis=2, tiled=True)  # [G, Q, S*c], shard order
  all_i = jax.lax.all_gather(indices, axis_name, axis=2, tiled=True)
  rank = jnp.where(jnp.isnan(all_s), -jnp.inf, all_s)  # NaN ranks last, as top_k_search
  _, pos = jax.lax.top_k(rank, k)
  return pos, jnp.take_along_axis(all_s, pos, axis=-1), jnp.take_along_axis(all_i, pos, axis=-1)


def _sharded_search(q, keys, values, mask, k, mesh, axis_name, similarity):
  """G stores at once: ``q [G, Q, K]``, ``keys [G, N, K]``, ``values [G, N, V]``,
  ``mask [G, N]``, the N axis split over ``axis_name``; returns values, indices, scores."""
  n = keys.shape[1]
  s = _shards(mesh, axis_name, n)
  local_n = n // s
  local_k = min(k, local_n)

  def shard(q, keys, values, mask):
    search = lambda qq, kk, mm: top_k_search(qq, kk, local_k, similarity, mm)
    sc, idx = jax.vmap(search)(q, keys, mask)  # [G, Q, c] local slots
    picked = jax.vmap(lambda v, i: jnp.take(v, i, axis=0))(values, idx)  # [G, Q, c, V]
    offset = jax.lax.axis_index(axis_name) * local_n
    pos, sc, gidx = _merge(sc, idx + offset, k, axis_name)
    all_v = jax.lax.all_gather(picked, axis_name, axis=2, tiled=True)  # [G, Q, S * c, V]
    return jnp.take_along_axis(all_v, pos[..., None], axis=2), gidx, sc

  spec = PartitionSpec(None, axis_name)
  fn = jax.shard_map(
    shard,
    mesh=mesh,
    in_specs=(PartitionSpec(), spec, spec, spec),
    out_specs=PartitionSpec(),
    # The merged results are equal on every device (computed from all_gather-ed
    # candidates), which the replication check cannot infer through lax.top_k.
    check_vma=False,
  )
  place = lambda x, p: jax.device_put(x, NamedSharding(mesh, p))
  return fn(place(q, PartitionSpec()), place(keys, spec), place(values, spec), place(mask, spec))


def sharded_top_k_read(
  query: jax.Array,
  keys: jax.Array,
  values: jax.Array,
  k: int,
  mesh: Mesh,
  axis_name: str,
  mask: jax.Array | None = None,
  similarity: str | SimilarityFn = "dot",
) -> Retrieval:
  """Exact top-k read over keys / values split along ``axis_name`` of ``mesh``.

  Args:
    query: [..., K] queries (replicated).
    keys: [N, K] keys; N divisible by the axis size.
    values: [N, V] values.
    k: results per query, ``1 <= k <= N``.
    mesh: the device mesh; ``axis_name`` should be an ``AxisType.Auto`` axis (as
      ``memjax.train.parallel`` makes them).
    axis_name: the mesh axis the slots are split over.
    mask: optional [N] bool validity of the slots.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.

  Returns:
    :class:`memjax.ops.Retrieval` (``values [..., k, V]``, ``indices [..., k]``,
    ``scores [..., k]``), equal to ``memjax.ops.top_k_read`` on the whole memory.
    Differentiable in the query, keys and values as ``top_k_read`` (not in the choice).

  Raises:
    ValueError: N not divisible by the axis size, an unknown axis, ``k`` out of range,
      mismatched shapes.
  """
  query, keys = _checks.check_query_keys(query, keys)
  values = _checks.as_array("values", values)
  _checks.check_rank("values", values, 2, "[N, V]")
  n = keys.shape[0]
  if values.shape[0] != n:
    raise ValueError(f"values has {values.shape[0]} slots (shape {values.shape}) but keys has {n}")
  k = _checks.check_k(k, n)
  mask = jnp.ones((n,), bool) if mask is None else _checks.check_mask(mask, n)
  _checks.check_rank("mask", mask, 1, "[N]")
  batch = query.shape[:-1]
  q = query.reshape(1, -1, query.shape[-1])
  vals, idx, sc = _sharded_search(
    q, keys[None], values[None], mask[None], k, mesh, axis_name, similarity
  )
  return Retrieval(
    vals.reshape(*batch, k, values.shape[-1]), idx.reshape(*batch, k), sc.reshape(*batch, k)
  )


def sharded_kv_read(
  state: KVState,
  query: jax.Array,
  k: int,
  mesh: Mesh,
  axis_name: str,
  similarity: str | SimilarityFn = kv.DEFAULT_SIMILARITY,
) -> Retrieval:
  """``memjax.memory.kv.read`` of one store whose slots are split over ``axis_name``.

  Args:
    state: a :class:`memjax.memory.kv.KVState` (``keys [N, K]``; N divisible by the axis
      size). Place it with ``NamedSharding(mesh, PartitionSpec(axis_name))`` to keep each
      device's slots local.
    query: [..., K] queries.
    k, mesh, axis_name, similarity: as :func:`sharded_top_k_read`.

  Returns:
    The :class:`memjax.ops.Retrieval` of ``kv.read(state, query, k, similarity)``.
  """
  _checks.check_rank("state.keys", state.keys, 2, "[N, K] (one store)")
  return sharded_top_k_read(
    query, state.keys, state.values, k, mesh, axis_name, state.valid, similarity
  )


def sharded_knn_read(
  memory: KVState,
  query: jax.Array,
  k: int,
  mesh: Mesh,
  axis_name: str,
  similarity: str | SimilarityFn = "scaled_dot",
) -> tuple[jax.Array, jax.Array]:
  """:func:`memjax.layers.knn.knn_read` with every store's slots split over ``axis_name``.

  Args:
    memory: stores with leaves ``[*B, H, N, ...]`` (from ``init_knn_memory``).
    query: [*B, T, H, D] queries.
    k, mesh, axis_name, similarity: as :func:`sharded_top_k_read`.

  Returns:
    ``(read [*B, T, H, Dv], found [*B, T, H])``, equal to ``knn_read``.
  """
  _checks.check_min_rank("query", query, 3, "[*B, T, H, D]")
  nb = query.ndim - 3
  _checks.check_rank("memory.keys", memory.keys, nb + 3, "[*B, H, N, D]")

  *lead, h, n, d = memory.keys.shape
  if query.shape[-2:] != (h, d) or tuple(query.shape[:nb]) != tuple(lead):
    raise ValueError(
      f"query must have shape [*B, T, {h}, {d}] with B = {tuple(lead)} (the memory's), got "
      f"{query.shape}"
    )
  k = _checks.check_k(k, n)
  t, dv = query.shape[-3], memory.values.shape[-1]
  g = math.prod(lead) * h
  q = jnp.moveaxis(query, -2, -3).reshape(g, t, d).astype(memory.keys.dtype)
  vals, idx, sc = _sharded_search(
    q,
    memory.keys.reshape(g, n, d),
    memory.values.reshape(g, n, dv),
    memory.valid.reshape(g, n),
    k,
    mesh,
    axis_name,
    similarity,
  )
  read, _ = kv.weighted_top_k(Retrieval(vals, idx, sc))  # [G, T, Dv]
  found = jnp.any(sc > -jnp.inf, axis=-1)  # [G, T]
  read = jnp.moveaxis(read.reshape(*lead, h, t, dv), -3, -2)
  found = jnp.moveaxis(found.reshape(*lead, h, t), -2, -1)
  return read.astype(jnp.result_type(query, memory.values)), found


def shard_knn_memory(memory: KVState, mesh: Mesh, axis_name: str) -> KVState:
  """Places kNN stores (leaves ``[*B, H, N, ...]``) with their N slots split over
  ``axis_name``, so :func:`sharded_knn_read` reads each device's slots where they lie.

  Args:
    memory: stores from ``init_knn_memory`` (keys ``[*B, H, N, D]``).
    mesh: the device mesh.
    axis_name: the mesh axis of the slots; N must be divisible by its size.

  Returns:
    The same stores, placed (``step [*B, H]`` replicated).
  """
  nb = memory.keys.ndim - 3
  _shards(mesh, axis_name, memory.keys.shape[-2])
  slot_axis = nb + 1

  def place(a: jax.Array) -> jax.Array:
    spec = [None] * a.ndim
    if a.ndim > slot_axis:
      spec[slot_axis] = axis_name
    return jax.device_put(a, NamedSharding(mesh, PartitionSpec(*spec)))

  return jax.tree.map(place, memory)


__all__ = ["sharded_top_k_read", "sharded_kv_read", "sharded_knn_read", "shard_knn_memory"]
