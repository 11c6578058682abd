"""kNN-memory attention (Memorizing Transformers): local attention plus top-k retrieval.

Each head of a chosen layer keeps a key-value store (:class:`memjax.memory.kv.KVState`,
one per example and head, capacity N a config value: 1k .. 256k+) of the (key, value)
pairs of earlier segments of the same document. For a segment ``x [B, T, F]``:

1. ``q, k, v`` are projected per head;
2. local: causal attention of ``q`` over the segment's ``k, v``;
3. memory: each query retrieves its top-k keys of the store (exact,
   :func:`memjax.ops.top_k_search`), softmax over the k retrieved scores, average of their
   values (a query whose store is empty reads nothing and uses the local result only);
4. ``out = g * memory + (1 - g) * local`` with a learned gate ``g = sigmoid(b_h)`` per head;
5. the segment's ``(k, v)`` are written into the store (no gradient), in ring order:
   the oldest pairs are evicted first.

With ``k = N`` the memory read is full softmax attention over the stored pairs.
``reset_mask [B]`` empties the stores of examples whose document starts anew.

The store is written only through :func:`write_segment`, whose vectorised ring write
equals ``kv.write_batch(state, keys, values, mask, policy='ring')`` on a store filled
the same way (every write in ring order, full resets only).

References:
  Y. Wu, M. Rabe, D. Hutchins, C. Szegedy, "Memorizing Transformers", ICLR 2022.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from memjax.layers.attention import (
  causal_mask,
  dot_product_attention,
  head_dim,
  project_out,
  project_qkv,
)
from memjax.layers.sharded_knn import sharded_knn_read
from memjax.memory import kv
from memjax.memory.kv import KVState
from memjax.ops import _checks
from memjax.ops.similarity import SimilarityFn


def init_knn_memory(
  batch_shape: tuple[int, ...],
  num_heads: int,
  capacity: int,
  key_size: int,
  value_size: int | None = None,
  dtype: Any = jnp.float32,
) -> KVState:
  """Empty stores, one per example and head: leaves ``[*B, H, N, ...]``.

  Args:
    batch_shape: the batch axes ``B``.
    num_heads: H.
    capacity: N, pairs kept per example and head.
    key_size: D.
    value_size: Dv (default D).
    dtype: floating dtype of the stored keys and values.
  """
  num_heads = _checks.check_size("num_heads", num_heads)
  one = kv.init_state(capacity, key_size, value_size or key_size, dtype)
  shape = (*tuple(batch_shape), num_heads)
  return jax.tree.map(lambda a: jnp.broadcast_to(a, shape + a.shape), one)


def _check_memory(memory: KVState, num_batch: int) -> tuple[int, ...]:
  _checks.check_rank(
    "memory.keys", memory.keys, num_batch + 3, "[*B, H, N, D] (see init_knn_memory)"
  )
  return memory.keys.shape


def _ring_write(state: KVState, keys: jax.Array, values: jax.Array, active: jax.Array) -> KVState:
  """One store: writes the active rows of ``keys [T, D]``, ``values [T, Dv]`` in ring order."""
  n = state.keys.shape[0]
  rank = jnp.cumsum(active.astype(jnp.int32)) - 1  # order among the active items
  count = jnp.sum(active.astype(jnp.int32))
  keep = active & (rank >= count - n)  # more than N new items: only the last N survive
  slot = jnp.where(keep, (state.step + rank) % n, n)  # n is out of range: dropped
  written = state.step + rank
  return KVState(
    keys=state.keys.at[slot].set(keys.astype(state.keys.dtype), mode="drop"),
    values=state.values.at[slot].set(values.astype(state.values.dtype), mode="drop"),
    written=state.written.at[slot].set(written, mode="drop"),
    last_read=state.last_read.at[slot].set(-1, mode="drop"),
    hits=state.hits.at[slot].set(0, mode="drop"),
    valid=state.valid.at[slot].set(True, mode="drop"),
    step=state.step + count,
  )


def write_segment(
  memory: KVState, keys: jax.Array, values: jax.Array, mask: jax.Array | None = None
) -> KVState:
  """Writes a segment's pairs into every example's and head's store (no gradient).

  Args:
    memory: stores with leaves ``[*B, H, N, ...]``.
    keys: [*B, T, H, D] keys.
    values: [*B, T, H, Dv] values.
    mask: optional [*B, T] bool; False = a padding token, not written.

  Returns:
    The stores (same shapes and dtypes), ring order: item ``s`` of a store (counting from
    its last reset) sits in slot ``s mod N``.
  """
  _checks.check_min_rank("keys", keys, 3, "[*B, T, H, D]")
  nb = keys.ndim - 3
  *_, h, n, d = _check_memory(memory, nb)
  if keys.shape[-2:] != (h, d) or keys.shape[:nb] != memory.keys.shape[:nb]:
    raise ValueError(
      f"keys must have shape [*B, T, {h}, {d}] with B = {memory.keys.shape[:nb]} (the "
      f"memory's), got {keys.shape}"
    )
  if values.shape[:-1] != keys.shape[:-1] or values.shape[-1] != memory.values.shape[-1]:
    raise ValueError(
      f"values must have shape {keys.shape[:-1] + memory.values.shape[-1:]}, got {values.shape}"
    )
  if mask is None:
    mask = jnp.ones(keys.shape[:-2], bool)
  if mask.shape != keys.shape[:-2] or mask.dtype != jnp.bool_:
    raise ValueError(f"mask must be bool of shape {keys.shape[:-2]}, got {mask.dtype}{mask.shape}")
  keys, values = jax.lax.stop_gradient(keys), jax.lax.stop_gradient(values)
  per_head = jax.vmap(_ring_write, in_axes=(0, 1, 1, None))  # heads: store axis 0, item axis 1
  fn = per_head
  for _ in range(nb):
    fn = jax.vmap(fn)
  return fn(memory, keys, values, mask)


def knn_read(
  memory: KVState,
  query: jax.Array,
  k: int,
  similarity: str | SimilarityFn = "scaled_dot",
) -> tuple[jax.Array, jax.Array]:
  """Top-k retrieval attention: softmax over each query's k best stored keys.

  Args:
    memory: stores with leaves ``[*B, H, N, ...]``.
    query: [*B, T, H, D] queries.
    k: pairs retrieved per query and head, ``1 <= k <= N``.
    similarity: the retrieval score, also the softmax logit (``'scaled_dot'``: with
      ``k = N`` this is standard attention over the store).

  Returns:
    ``(read [*B, T, H, Dv], found [*B, T, H] bool)``; ``found`` is False where the store
    holds nothing (the read is then zeros). Differentiable in the query and the stored
    values and keys; the choice of the k pairs is not.
  """
  _checks.check_min_rank("query", query, 3, "[*B, T, H, D]")
  nb = query.ndim - 3
  *_, h, n, d = _check_memory(memory, nb)
  k = _checks.check_k(k, n)
  if query.shape[-2:] != (h, d) or query.shape[:nb] != memory.keys.shape[:nb]:
    raise ValueError(
      f"query must have shape [*B, T, {h}, {d}] with B = {memory.keys.shape[:nb]} (the "
      f"memory's), got {query.shape}"
    )

  def one(state: KVState, q: jax.Array) -> tuple[jax.Array, jax.Array]:  # q [T, D]
    hit = kv.read(state, q.astype(state.keys.dtype), k, similarity)
    read, _ = kv.weighted_top_k(hit)
    return read, jnp.any(hit.scores > -jnp.inf, axis=-1)

  fn = jax.vmap(one, in_axes=(0, 1), out_axes=(1, 1))  # heads
  for _ in range(nb):
    fn = jax.vmap(fn)
  read, found = fn(memory, query)
  return read.astype(jnp.result_type(query, memory.values)), found


def reset_memory(memory: KVState, reset_mask: jax.Array) -> KVState:
  """Empties the stores of the examples where ``reset_mask [*B]`` is True (step 0)."""
  reset_mask = _checks.as_array("reset_mask", reset_mask)
  nb = memory.keys.ndim - 3
  if reset_mask.dtype != jnp.bool_ or reset_mask.shape != memory.keys.shape[:nb]:
    raise ValueError(
      f"reset_mask must be bool of shape {memory.keys.shape[:nb]} [*B], got "
      f"{reset_mask.dtype}{reset_mask.shape}"
    )
  *_, h, n, d = memory.keys.shape
  empty = init_knn_memory((), h, n, d, memory.values.shape[-1], memory.keys.dtype)

  def pick(old, new):
    r = reset_mask.reshape(reset_mask.shape + (1,) * (old.ndim - nb))
    return jnp.where(r, jnp.broadcast_to(new, old.shape), old)

  return jax.tree.map(pick, memory, empty)


def gated_mix(memory_read: jax.Array, local: jax.Array, found: jax.Array, gate_logit: jax.Array):
  """``g * memory_read + (1 - g) * local``, ``g = sigmoid(gate_logit [H])``, 0 where not found.

  Args:
    memory_read: [*B, T, H, Dv].
    local: [*B, T, H, Dv].
    found: [*B, T, H] bool.
    gate_logit: [H].
  """
  g = jax.nn.sigmoid(gate_logit.astype(jnp.float32))
  g = jnp.where(found, jnp.broadcast_to(g, found.shape), 0.0)[..., None]
  out = g * memory_read.astype(jnp.float32) + (1 - g) * local.astype(jnp.float32)
  return out.astype(jnp.result_type(memory_read, local))


class KNNMemoryAttention(nn.Module):
  """Causal attention with a per-document kNN memory (see the module docstring).

  ``__call__(memory, x) -> (memory, y)``, the memory an explicit carry. Parameters:
  ``query``, ``key``, ``value``, ``out`` and ``gate_bias [H]`` (``b_h``, initialised at 0:
  ``g = 0.5``).

  Attributes:
    num_heads: H (must divide ``qkv_features``).
    capacity: N, the pairs kept per example and head.
    top_k: k pairs retrieved per query, ``1 <= k <= N``.
    qkv_features: total query / key / value size (default: the input size F).
    out_features: output size (default F).
    similarity: retrieval score and logit (``'scaled_dot'``; ``'cosine'`` normalises as
      the paper does).
    dtype: computation dtype (the memory is stored in ``memory_dtype``).
    memory_dtype: dtype of the stored keys and values.
    mesh: optional device mesh; with it every store's N slots are split over
      ``memory_axis`` (:func:`memjax.layers.sharded_knn.sharded_knn_read`, same result).
    memory_axis: the mesh axis of the slots.

  Example:
    >>> layer = KNNMemoryAttention(num_heads=2, capacity=64, top_k=4)
    >>> x = jnp.ones((3, 8, 16))  # [B, T, F]
    >>> mem = layer.initialize_carry(x.shape)
    >>> (mem, y), params = layer.init_with_output(jax.random.key(0), mem, x)
    >>> y.shape, mem.keys.shape
    ((3, 8, 16), (3, 2, 64, 8))
  """

  num_heads: int
  capacity: int
  top_k: int
  qkv_features: int | None = None
  out_features: int | None = None
  similarity: str | SimilarityFn = "scaled_dot"
  dtype: Any = None
  memory_dtype: Any = jnp.float32
  mesh: Mesh | None = None
  memory_axis: str = "memory"

  @nn.compact
  def __call__(
    self,
    memory: KVState,
    x: jax.Array,
    reset_mask: jax.Array | None = None,
    token_mask: jax.Array | None = None,
  ) -> tuple[KVState, jax.Array]:
    """One segment.

    Args:
      memory: the stores (:meth:`initialize_carry`), leaves ``[*B, H, N, ...]``.
      x: [*B, T, F] the segment.
      reset_mask: optional [*B] bool; True empties that example's stores first (its
        document starts with this segment).
      token_mask: optional [*B, T] bool; False = padding (not seen locally, not written).

    Returns:
      ``(memory, y [*B, T, out_features])``.
    """
    _checks.check_floating("x", x)
    _checks.check_min_rank("x", x, 2, "[*B, T, F]")
    _checks.check_k(self.top_k, self.capacity, "top_k")
    if reset_mask is not None:
      memory = reset_memory(memory, reset_mask)
    t = x.shape[-2]
    q, k, v = project_qkv(self, x, x, self.num_heads, self.qkv_features, True, self.dtype)
    mask = causal_mask(t, t)
    if token_mask is not None:
      mask = jnp.broadcast_to(mask, (*token_mask.shape[:-1], 1, t, t))
      mask = mask & token_mask[..., None, None, :]
    local = dot_product_attention(q, k, v, mask)
    if self.mesh is None:
      read, found = knn_read(memory, q, self.top_k, self.similarity)
    else:
      read, found = sharded_knn_read(
        memory, q, self.top_k, self.mesh, self.memory_axis, self.similarity
      )
    gate = self.param("gate_bias", nn.initializers.zeros, (self.num_heads,), jnp.float32)
    out = gated_mix(read, local, found, gate)
    y = project_out(self, out, self.out_features or x.shape[-1], True, self.dtype)
    return write_segment(memory, k, v, token_mask), y

  @nn.nowrap
  def initialize_carry(self, input_shape: tuple[int, ...]) -> KVState:
    """Empty stores for inputs ``(*B, T, F)``."""
    dh = head_dim(self.qkv_features or input_shape[-1], self.num_heads)
    return init_knn_memory(
      tuple(input_shape[:-2]), self.num_heads, self.capacity, dh, dh, self.memory_dtype
    )


__all__ = [
  "init_knn_memory",
  "write_segment",
  "knn_read",
  "reset_memory",
  "gated_mix",
  "KNNMemoryAttention",
]
