"""Fixed-capacity key-value store with eviction policies, read by top-k similarity.

The store holds N (key, value) slots and per-slot metadata. A write goes to

1. the most similar valid slot, updated in place, when ``update_threshold`` is set and
   ``similarity(key, that slot's key) >= update_threshold`` (off by default);
2. otherwise the lowest-index empty slot, if any;
3. otherwise the slot the eviction ``policy`` picks among the full slots:

   - ``'ring'``: the oldest write (smallest ``written``), i.e. first in, first out;
   - ``'lru'``: least recently used, the smallest ``max(written, last_read)``;
   - ``'least_used'``: the fewest ``hits`` (reads that retrieved the slot), ties going
     to the oldest write.

   Remaining ties go to the lowest slot index.

``step`` is a logical clock: every written item and every :func:`read_and_touch` call
advances it by one, so reads and writes are totally ordered for ``'lru'``.

Reads are hard top-k retrievals (:func:`memjax.ops.top_k_read`). :func:`read` is pure
and leaves the metadata alone; :func:`read_and_touch` also returns the state with the
hits and last-read step of the retrieved slots updated. The choice of slots (top-k
indices, the written slot) is NOT differentiable; gradients reach the retrieved
``values`` and ``scores`` (hence the query and keys) and the written key and value.

References:
  Kaiser et al. 2017, "Learning to Remember Rare Events" (key-value memory with
  age-based replacement and in-place updates of matching keys).
  Pritzel et al. 2017, "Neural Episodic Control" (differentiable neural dictionary,
  least-recently-used replacement, top-k lookup).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.memory._nnx import Layer
from memjax.ops import _checks
from memjax.ops.attention import masked_softmax
from memjax.ops.retrieval import Retrieval, top_k_read
from memjax.ops.similarity import SimilarityFn, get_similarity

Policy = Literal["ring", "lru", "least_used"]
POLICIES = ("ring", "lru", "least_used")
# The one default similarity of the family's pure functions (reads and the in-place
# update check of writes alike): cosine, scale-free and in [-1, 1] like a threshold.
DEFAULT_SIMILARITY = "cosine"


class KVState(NamedTuple):
  """State of a key-value store (one example; a cell's carry adds ``[*B]``)."""

  keys: jax.Array  # [N, K]
  values: jax.Array  # [N, V]
  written: jax.Array  # [N] int32 step of the last write, -1 = empty
  last_read: jax.Array  # [N] int32 step of the last read that retrieved the slot, -1 = never
  hits: jax.Array  # [N] int32 number of reads that retrieved the slot since it was written
  valid: jax.Array  # [N] bool, True when the slot holds an item
  step: jax.Array  # [] int32 logical clock (writes + touching reads so far)


def init_state(num_slots: int, key_size: int, value_size: int, dtype: Any = jnp.float32) -> KVState:
  """An empty store.

  Args:
    num_slots: N >= 1, the capacity (any integer: Python or NumPy).
    key_size: K >= 1.
    value_size: V >= 1.
    dtype: floating dtype of the keys and values.

  Returns:
    :class:`KVState` with zero ``keys [N, K]`` and ``values [N, V]``, no valid slot.
  """
  num_slots = _checks.check_size("num_slots", num_slots)
  key_size = _checks.check_size("key_size", key_size)
  value_size = _checks.check_size("value_size", value_size)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  never = jnp.full((num_slots,), -1, jnp.int32)
  return KVState(
    keys=jnp.zeros((num_slots, key_size), dtype),
    values=jnp.zeros((num_slots, value_size), dtype),
    written=never,
    last_read=never,
    hits=jnp.zeros((num_slots,), jnp.int32),
    valid=jnp.zeros((num_slots,), bool),
    step=jnp.zeros((), jnp.int32),
  )


def _check_state(state: KVState) -> None:
  _checks.check_rank("state.keys", state.keys, 2, "[N, K] (use jax.vmap for a batch)")
  _checks.check_rank("state.values", state.values, 2, "[N, V] (use jax.vmap for a batch)")


def _check_policy(policy: str) -> None:
  if policy not in POLICIES:
    raise ValueError(f"policy={policy!r} is not one of {POLICIES}")


def _check_item(
  state: KVState, key: jax.Array, value: jax.Array, rank: int
) -> tuple[jax.Array, jax.Array]:
  key = _checks.as_array("key" if rank == 1 else "keys", key)
  value = _checks.as_array("value" if rank == 1 else "values", value)
  shape = "[K]" if rank == 1 else "[M, K]"
  vshape = "[V]" if rank == 1 else "[M, V]"
  _checks.check_floating("key" if rank == 1 else "keys", key)
  _checks.check_floating("value" if rank == 1 else "values", value)
  _checks.check_rank("key" if rank == 1 else "keys", key, rank, shape)
  _checks.check_rank("value" if rank == 1 else "values", value, rank, vshape)
  _checks.check_last_dim(
    "key" if rank == 1 else "keys", key, state.keys.shape[-1], f"state.keys {state.keys.shape}"
  )
  _checks.check_last_dim(
    "value" if rank == 1 else "values",
    value,
    state.values.shape[-1],
    f"state.values {state.values.shape}",
  )
  return key, value


def _first_min(x: jax.Array) -> jax.Array:
  """Index of the minimum, the lowest index among ties (int32 scalar)."""
  return jnp.argmin(x).astype(jnp.int32)


def eviction_slot(state: KVState, policy: Policy = "ring") -> jax.Array:
  """The slot a new item would take (ignoring in-place updates).

  Args:
    state: the store.
    policy: ``'ring'``, ``'lru'`` or ``'least_used'`` (see the module docstring).

  Returns:
    [] int32 slot index: the lowest empty slot if any, else the policy's victim.
  """
  _check_state(state)
  _check_policy(policy)
  big = jnp.iinfo(jnp.int32).max
  empty = jnp.where(state.valid, big, jnp.arange(state.valid.shape[0], dtype=jnp.int32))
  if policy == "ring":
    victim = _first_min(state.written)
  elif policy == "lru":
    victim = _first_min(jnp.maximum(state.written, state.last_read))
  else:
    fewest = jnp.min(state.hits)
    victim = _first_min(jnp.where(state.hits == fewest, state.written, big))
  return jnp.where(jnp.any(~state.valid), jnp.min(empty), victim).astype(jnp.int32)


def write(
  state: KVState,
  key: jax.Array,
  value: jax.Array,
  policy: Policy = "ring",
  update_threshold: float | None = None,
  similarity: str | SimilarityFn = DEFAULT_SIMILARITY,
) -> KVState:
  """Writes one item, updating a matching slot in place or evicting by ``policy``.

  Args:
    state: the store.
    key: [K] floating key (cast to the state's dtype).
    value: [V] floating value (cast to the state's dtype).
    policy: eviction policy when no slot is empty, ``'ring'``, ``'lru'`` or
      ``'least_used'``.
    update_threshold: if set, an item whose ``similarity`` with the most similar valid
      key is ``>= update_threshold`` overwrites that slot (key and value) in place,
      keeping its ``hits`` and ``last_read``. None (default) never updates in place.
      A slot whose similarity is NaN (a NaN in its key) never matches.
    similarity: the similarity used for ``update_threshold`` (default cosine, in
      [-1, 1]).

  Returns:
    The new state, with the same structure, shapes and dtypes. A new (not in-place)
    item starts with ``hits = 0`` and ``last_read = -1``; ``written`` is set to the
    current ``step`` and ``step`` advances by one. Differentiable in ``key`` and
    ``value``; the slot choice is not.

  Raises:
    ValueError / TypeError: wrong rank, mismatched sizes, non-floating inputs, an
      unknown policy.
  """
  _check_state(state)
  key, value = _check_item(state, key, value, 1)
  slot = eviction_slot(state, policy)
  in_place = jnp.zeros((), bool)
  if update_threshold is not None:
    scores = get_similarity(similarity)(key.astype(state.keys.dtype), state.keys)
    # Empty slots and NaN scores (a corrupted key) never match.
    scores = jnp.where(state.valid & ~jnp.isnan(scores), scores, -jnp.inf)
    best = jnp.argmax(scores).astype(jnp.int32)
    in_place = scores[best] >= update_threshold
    slot = jnp.where(in_place, best, slot)
  return KVState(
    keys=state.keys.at[slot].set(key.astype(state.keys.dtype)),
    values=state.values.at[slot].set(value.astype(state.values.dtype)),
    written=state.written.at[slot].set(state.step),
    last_read=state.last_read.at[slot].set(jnp.where(in_place, state.last_read[slot], -1)),
    hits=state.hits.at[slot].set(jnp.where(in_place, state.hits[slot], 0)),
    valid=state.valid.at[slot].set(True),
    step=state.step + 1,
  )


def write_batch(
  state: KVState,
  keys: jax.Array,
  values: jax.Array,
  mask: jax.Array | None = None,
  policy: Policy = "ring",
  update_threshold: float | None = None,
  similarity: str | SimilarityFn = DEFAULT_SIMILARITY,
) -> KVState:
  """Writes M items in one call, in order ``0, 1, ..., M-1`` (a ``lax.scan``).

  Item ``i`` sees the store after items ``0..i-1``, so the result equals M calls of
  :func:`write` in index order (an item can update in place an item written earlier in
  the same batch, and with more than N items the earliest are evicted first).

  Args:
    state: the store.
    keys: [M, K] floating keys.
    values: [M, V] floating values.
    mask: optional [M] bool; items with False are skipped (they do not advance ``step``).
    policy: see :func:`write`.
    update_threshold: see :func:`write`.
    similarity: see :func:`write`.

  Returns:
    The new state (same structure, shapes and dtypes).
  """
  _check_state(state)
  _check_policy(policy)
  keys, values = _check_item(state, keys, values, 2)
  m = keys.shape[0]
  if values.shape[0] != m:
    raise ValueError(
      f"values has {values.shape[0]} items (shape {values.shape}) but keys "
      f"has {m} (shape {keys.shape})"
    )
  if mask is None:
    mask = jnp.ones((m,), bool)
  else:
    mask = _checks.as_array("mask", mask)
  if jnp.result_type(mask) != jnp.bool_ or jnp.shape(mask) != (m,):
    raise ValueError(
      f"mask must be bool of shape ({m},), got {jnp.result_type(mask)}{jnp.shape(mask)}"
    )

  def body(s, item):
    k, v, active = item
    new = write(s, k, v, policy, update_threshold, similarity)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, s), None

  state, _ = jax.lax.scan(body, state, (keys, values, mask))
  return state


def read(
  state: KVState, query: jax.Array, k: int = 1, similarity: str | SimilarityFn = DEFAULT_SIMILARITY
) -> Retrieval:
  """Pure top-k read of the valid slots; the metadata is left unchanged.

  Args:
    state: the store.
    query: [..., K] floating queries (an array or array-like, e.g. a list of floats).
    k: number of slots to retrieve, ``1 <= k <= N`` (a Python int or NumPy integer).
    similarity: a name from :mod:`memjax.ops.similarity` or a callable (default
      cosine, as :func:`write`'s update check).

  Returns:
    :class:`memjax.ops.Retrieval` with ``values [..., k, V]``, ``indices [..., k]``
    int32 and ``scores [..., k]``, best first (ties: lower index). When fewer than k
    slots are valid, the extra entries are empty slots with score ``-inf``. A slot
    whose score is NaN (a NaN in its key) ranks like an empty slot, after every valid
    finite score, and keeps its NaN score (see :mod:`memjax.ops.retrieval`). The
    indices are not differentiable; the values and scores are.

  Raises:
    ValueError / TypeError: mismatched key sizes, ``k`` outside ``[1, N]``,
      non-floating queries.
  """
  _check_state(state)
  k = _checks.check_k(k, state.keys.shape[0])
  return top_k_read(query, state.keys, state.values, k, similarity, mask=state.valid)


def read_and_touch(
  state: KVState, query: jax.Array, k: int = 1, similarity: str | SimilarityFn = DEFAULT_SIMILARITY
) -> tuple[KVState, Retrieval]:
  """Top-k read that also records the use of the retrieved valid slots.

  Each retrieved valid slot gets ``hits += 1`` (once per query that retrieved it) and
  ``last_read = step``; then ``step`` advances by one.

  Args:
    state: the store.
    query: [..., K] floating queries.
    k: number of slots per query, ``1 <= k <= N``.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.

  Returns:
    ``(new_state, retrieval)``, the retrieval as in :func:`read`.
  """
  out = read(state, query, k, similarity)
  idx = out.indices.reshape(-1)
  used = state.valid[idx]
  hits = state.hits.at[idx].add(used.astype(jnp.int32))
  last_read = state.last_read.at[idx].max(jnp.where(used, state.step, -1))
  return state._replace(hits=hits, last_read=last_read, step=state.step + 1), out


def reset(state: KVState, slots: jax.Array | None = None) -> KVState:
  """Empties slots.

  Args:
    state: the store.
    slots: optional [N] bool, True = clear that slot (zeros, ``written = last_read =
      -1``, ``hits = 0``, not valid). None clears everything and sets ``step`` to 0;
      a mask leaves ``step`` unchanged.

  Returns:
    The new state (same structure, shapes and dtypes).
  """
  _check_state(state)
  n, key_size = state.keys.shape
  if slots is None:
    return init_state(n, key_size, state.values.shape[1], state.keys.dtype)
  _checks.check_rank("slots", slots, 1, "[N]")
  if jnp.result_type(slots) != jnp.bool_ or slots.shape != (n,):
    raise ValueError(f"slots must be bool of shape ({n},), got {slots.dtype}{slots.shape}")
  keep = ~slots
  return KVState(
    keys=jnp.where(keep[:, None], state.keys, 0),
    values=jnp.where(keep[:, None], state.values, 0),
    written=jnp.where(keep, state.written, -1),
    last_read=jnp.where(keep, state.last_read, -1),
    hits=jnp.where(keep, state.hits, 0),
    valid=state.valid & keep,
    step=state.step,
  )


def weighted_top_k(retrieval: Retrieval) -> tuple[jax.Array, jax.Array]:
  """Softmax over the k retrieved scores, averaging the retrieved values.

  Entries with score ``-inf`` (empty slots) or NaN (corrupted keys) get weight 0 and
  their values are not read; no such entry left reads zeros.

  Args:
    retrieval: a :class:`memjax.ops.Retrieval` with ``values [..., k, V]`` and
      ``scores [..., k]``.

  Returns:
    ``(read [..., V], weights [..., k])``; differentiable in the scores and values.
  """
  found = retrieval.scores > -jnp.inf  # False for -inf and NaN
  weights = masked_softmax(jnp.where(found, retrieval.scores, 0), found)
  values = jnp.where(found[..., None], retrieval.values, 0)
  read = jnp.einsum("...k,...kv->...v", weights.astype(values.dtype), values)
  return read, weights


def _cell_step(
  cell: Any, carry: KVState, x: jax.Array, query: Layer, key: Layer, value: Layer
) -> tuple[KVState, jax.Array]:
  """One step of either cell; ``query``, ``key``, ``value`` are its projections."""
  _check_policy(cell.policy)
  _checks.check_k(cell.k, cell.num_slots)
  x_t, y_t = _carry.split_input(x, cell.input_size)
  _carry.check_carry_batch(carry, x, {"keys": 2, "values": 2, "valid": 1, "step": 0})
  q, kk = query(x_t), key(x_t)
  v = value(x_t if y_t is None else y_t)

  def one(state, q_, k_, v_):
    state, retrieved = read_and_touch(state, q_, cell.k, cell.similarity)
    out, _ = weighted_top_k(retrieved)
    state = write(state, k_, v_, cell.policy, cell.update_threshold, cell.update_similarity)
    return state, out

  new, out = _carry.vmap_batch(one, x.ndim - 1)(carry, q, kk, v)
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  return new, out


def _initial_carry(cell: Any, input_shape: tuple[int, ...]) -> KVState:
  state = init_state(cell.num_slots, cell.key_size, cell.value_size, cell.dtype)
  return _carry.broadcast_state(state, tuple(input_shape[:-1]))


class KVCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """Recurrent cell over a key-value store: top-k read, then write the step's item.

  The input of one step is ONE array ``x [*B, F]``: the first ``input_size`` features
  are ``x_t`` and the rest ``y_t`` (no ``y_t`` when ``input_size`` is None or F). With
  learned projections,

    query_t = W_q x_t,  key_t = W_k x_t,  value_t = W_v y_t  (W_v x_t without y_t)
    r = read_and_touch(M_t, query_t, k)                  # read BEFORE the write
    out_t = sum_j softmax_j(r.scores) r.values[j]        # [*B, V]
    M_{t+1} = write(M_t', key_t, value_t, policy, update_threshold)

  The top-k choice is not differentiable, but the softmax over the retrieved scores
  passes gradients to ``W_q`` (through the scores) and to the stored values.

  Attributes:
    num_slots: N, the capacity.
    key_size: K.
    value_size: V, also the output size.
    input_size: features of ``x_t`` at the front of ``x``; None = all of ``x``.
    k: slots retrieved per step.
    policy: eviction policy (``'ring'``, ``'lru'``, ``'least_used'``).
    update_threshold: in-place update threshold (None = off), see :func:`write`.
    similarity: similarity of the top-k read.
    update_similarity: similarity compared with ``update_threshold``.
    dtype: dtype of the store in the carry.
    param_dtype: dtype of the projection parameters.

  Example:
    >>> cell = KVCell(num_slots=16, key_size=8, value_size=4, input_size=3, k=2)
    >>> x = jnp.ones((5, 20, 3 + 4))               # [B, T, x_t ++ y_t]
    >>> (carry, y), variables = nn.RNN(cell, return_carry=True).init_with_output(
    ...     jax.random.key(0), x)
    >>> y.shape, carry.keys.shape
    ((5, 20, 4), (5, 16, 8))
  """

  num_slots: int
  key_size: int
  value_size: int
  input_size: int | None = None
  k: int = 1
  policy: Policy = "ring"
  update_threshold: float | None = None
  similarity: str | SimilarityFn = "dot"
  update_similarity: str | SimilarityFn = "cosine"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry: KVState, x: jax.Array) -> tuple[KVState, jax.Array]:
    """One step.

    Args:
      carry: :class:`KVState` with batch axes ``[*B]``.
      x: [*B, F] the step's ``x_t`` features followed by its ``y_t`` features.

    Returns:
      ``(new_carry, read [*B, V])``.
    """
    dense = lambda size, name: nn.Dense(size, name=name, param_dtype=self.param_dtype)
    layers = dense(self.key_size, "query"), dense(self.key_size, "key")
    return _cell_step(self, carry, x, *layers, dense(self.value_size, "value"))

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> KVState:
    """An empty store with batch axes ``input_shape[:-1]``.

    Args:
      rng: unused (the store starts empty); kept for the ``RNNCellBase`` API.
      input_shape: the shape ``[*B, F]`` of one step's input.

    Returns:
      :class:`KVState` with ``keys [*B, N, K]``, ``values [*B, N, V]``.
    """
    del rng
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


@_nnx.twin_of(KVCell)
class NNXKVCell(nnx.RNNCellBase):
  """The NNX form of :class:`KVCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN``, ``nnx.scan`` and ``nnx.Bidirectional``; its ``nnx.Linear``
  projections ``query``, ``key`` and ``value`` are named as the linen cell's, so
  ``KVCell.to_nnx(in_features, params=...)`` carries trained parameters across.

  Args:
    in_features: F, the size of one step's input ``x [*B, F]``.
    num_slots, key_size, value_size, input_size, k, policy, update_threshold,
      similarity, update_similarity, dtype, param_dtype: as :class:`KVCell`.
    rngs: initialises the projections.

  Example:
    >>> cell = NNXKVCell(7, num_slots=16, key_size=8, value_size=4, input_size=3, k=2,
    ...                  rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((5, 20, 7))).shape     # [B, T, x_t ++ y_t] -> [B, T, V]
    (5, 20, 4)
  """

  def __init__(
    self,
    in_features: int,
    num_slots: int,
    key_size: int,
    value_size: int,
    input_size: int | None = None,
    k: int = 1,
    policy: Policy = "ring",
    update_threshold: float | None = None,
    similarity: str | SimilarityFn = "dot",
    update_similarity: str | SimilarityFn = "cosine",
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    x_size, v_size = _carry.io_sizes(in_features, input_size)
    self.in_features, self.num_slots = in_features, num_slots
    self.key_size, self.value_size, self.input_size = key_size, value_size, input_size
    self.k, self.policy, self.update_threshold = k, policy, update_threshold
    self.similarity, self.update_similarity = similarity, update_similarity
    self.dtype, self.param_dtype = dtype, param_dtype
    linear = lambda i, o: nnx.Linear(i, o, param_dtype=param_dtype, rngs=rngs)
    self.query, self.key = linear(x_size, key_size), linear(x_size, key_size)
    self.value = linear(v_size, value_size)

  def __call__(self, carry: KVState, x: jax.Array) -> tuple[KVState, jax.Array]:
    """One step: ``(carry, x [*B, F]) -> (carry, read [*B, V])``."""
    return _cell_step(self, carry, x, self.query, self.key, self.value)

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None) -> KVState:
    """An empty store with batch axes ``input_shape[:-1]`` (``rngs`` unused)."""
    del rngs
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "DEFAULT_SIMILARITY",
  "Policy",
  "POLICIES",
  "KVState",
  "init_state",
  "eviction_slot",
  "write",
  "write_batch",
  "read",
  "read_and_touch",
  "reset",
  "weighted_top_k",
  "KVCell",
  "NNXKVCell",
]
