"""Soft attention memory: a ring of N slots read by softmax attention.

Each step appends one (key, value) encoding into the next slot of a ring buffer
(overwriting the oldest slot once all N are full); a read is the softmax-attention
average of the values of the written slots, ``softmax(sim(q, K_M)) V_M``, with empty
slots masked out. Everything is differentiable in the keys, values and queries.

    state = init_state(num_slots=4, key_size=8, value_size=3)
    state = write(state, key, value)          # slot position % N
    value, weights = read(state, query)       # [V], [N]

References:
  Graves et al. 2014, "Neural Turing Machines" (content-based soft read).
  Vaswani et al. 2017, "Attention Is All You Need" (scaled dot-product attention).
  Santoro et al. 2016, "Meta-Learning with Memory-Augmented Neural Networks"
  (writing (x_t, y_{t-1}) encodings and reading before the label is seen).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.memory._nnx import Layer
from memjax.ops import _checks
from memjax.ops.attention import attention_read
from memjax.ops.similarity import SimilarityFn


class AttentionState(NamedTuple):
  """State of a soft attention memory (one example; a cell's carry adds ``[*B]``)."""

  keys: jax.Array  # [N, K]
  values: jax.Array  # [N, V]
  valid: jax.Array  # [N] bool, True once the slot holds a write
  written: jax.Array  # [N] int32 write count at which the slot was written, -1 = empty
  position: jax.Array  # [] int32 number of writes so far; the next goes to position % N


def init_state(
  num_slots: int, key_size: int, value_size: int, dtype: Any = jnp.float32
) -> AttentionState:
  """An empty memory: zero keys and values, no valid slot, position 0.

  Args:
    num_slots: N, the number of slots.
    key_size: K, the key size.
    value_size: V, the value size.
    dtype: floating dtype of the keys and values.

  Returns:
    :class:`AttentionState` with ``keys [N, K]``, ``values [N, V]``.
  """
  num_slots = _checks.check_size("num_slots", num_slots)
  key_size = _checks.check_size("key_size", key_size)
  value_size = _checks.check_size("value_size", value_size)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  return AttentionState(
    keys=jnp.zeros((num_slots, key_size), dtype),
    values=jnp.zeros((num_slots, value_size), dtype),
    valid=jnp.zeros((num_slots,), bool),
    written=jnp.full((num_slots,), -1, jnp.int32),
    position=jnp.zeros((), jnp.int32),
  )


def _check_state(state: AttentionState) -> None:
  _checks.check_rank("state.keys", state.keys, 2, "[N, K]")
  _checks.check_rank("state.values", state.values, 2, "[N, V] (use jax.vmap for a batch)")


def write(state: AttentionState, key: jax.Array, value: jax.Array) -> AttentionState:
  """Appends ``(key, value)`` into slot ``position % N`` (the oldest slot once full).

  Args:
    state: the memory.
    key: [K] floating key.
    value: [V] floating value.

  Returns:
    The new state, with the same structure, shapes and dtypes (key and value are cast
    to the state's dtype). Differentiable in ``key``, ``value`` and the old state.

  Raises:
    ValueError / TypeError: wrong rank, mismatched sizes, non-floating key or value.
  """
  _check_state(state)
  key, value = _checks.as_array("key", key), _checks.as_array("value", value)
  _checks.check_floating("key", key)
  _checks.check_floating("value", value)
  _checks.check_rank("key", key, 1, "[K] (use jax.vmap for a batch)")
  _checks.check_rank("value", value, 1, "[V] (use jax.vmap for a batch)")
  _checks.check_last_dim("key", key, state.keys.shape[-1], f"state.keys {state.keys.shape}")
  _checks.check_last_dim(
    "value", value, state.values.shape[-1], f"state.values {state.values.shape}"
  )
  slot = state.position % state.keys.shape[0]
  return AttentionState(
    keys=state.keys.at[slot].set(key.astype(state.keys.dtype)),
    values=state.values.at[slot].set(value.astype(state.values.dtype)),
    valid=state.valid.at[slot].set(True),
    written=state.written.at[slot].set(state.position),
    position=state.position + 1,
  )


def read(
  state: AttentionState, query: jax.Array, similarity: str | SimilarityFn = "scaled_dot"
) -> tuple[jax.Array, jax.Array]:
  """Soft read ``sum_i softmax_i(sim(query, keys)) values[i]`` over the valid slots.

  Args:
    state: the memory.
    query: [..., K] floating queries (several queries may share one memory; an array or
      array-like).
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.

  Returns:
    ``(read [..., V], weights [..., N])``; empty slots get weight 0 and an empty memory
    reads zeros. A slot whose key holds a NaN or inf is read as an empty slot; if every
    written slot is so corrupted the read is NaN (see
    :func:`memjax.ops.attention_read`). Differentiable in the query, keys and values.

  Raises:
    ValueError / TypeError: mismatched key sizes, non-floating query.
  """
  _check_state(state)
  return attention_read(query, state.keys, state.values, mask=state.valid, similarity=similarity)


def reset(state: AttentionState, slots: jax.Array | None = None) -> AttentionState:
  """Empties slots.

  Args:
    state: the memory.
    slots: optional [N] bool, True = clear that slot (zero key and value, not valid).
      None clears every slot and sets ``position`` back to 0; a mask leaves
      ``position`` unchanged.

  Returns:
    The new state (same structure, shapes and dtypes).
  """
  _check_state(state)
  n = state.keys.shape[0]
  if slots is None:
    return init_state(n, state.keys.shape[1], state.values.shape[1], state.keys.dtype)
  _checks.check_rank("slots", slots, 1, "[N]")
  if jnp.result_type(slots) != jnp.bool_ or slots.shape != (n,):
    raise ValueError(f"slots must be bool of shape ({n},), got {slots.dtype}{slots.shape}")
  keep = ~slots
  return AttentionState(
    keys=jnp.where(keep[:, None], state.keys, 0),
    values=jnp.where(keep[:, None], state.values, 0),
    valid=state.valid & keep,
    written=jnp.where(keep, state.written, -1),
    position=state.position,
  )


def _cell_step(
  cell: Any, carry: AttentionState, x: jax.Array, query: Layer, key: Layer, value: Layer
) -> tuple[AttentionState, jax.Array]:
  """One step of either cell; ``query``, ``key``, ``value`` are its projections."""
  x_t, y_t = _carry.split_input(x, cell.input_size)
  _carry.check_carry_batch(carry, x, {"keys": 2, "values": 2, "valid": 1, "position": 0})
  q, k = query(x_t), key(x_t)
  v = value(x_t if y_t is None else y_t)
  nb = x.ndim - 1
  out, _ = _carry.vmap_batch(lambda s, q_: read(s, q_, cell.similarity), nb)(carry, q)
  new = _carry.vmap_batch(write, nb)(carry, k, v)
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  return new, out


def _initial_carry(cell: Any, input_shape: tuple[int, ...]) -> AttentionState:
  state = init_state(cell.num_slots, cell.key_size, cell.value_size, cell.dtype)
  return _carry.broadcast_state(state, tuple(input_shape[:-1]))


class AttentionMemoryCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """Recurrent cell: read the memory by attention, then append the step's encoding.

  The input of one step is ONE array ``x [*B, F]``: the first ``input_size`` features
  are ``x_t`` and the remaining ``F - input_size`` are ``y_t`` (e.g. the previous or
  current label; if ``input_size`` is None or equals F there is no ``y_t``). With
  learned projections,

    query_t = W_q x_t,  key_t = W_k x_t,  value_t = W_v y_t  (W_v x_t without y_t)
    out_t   = read(M_t, query_t)                 # read BEFORE the write,
    M_{t+1} = write(M_t, key_t, value_t)         # so out_t never sees y_t

  The memory lives only in the carry (an :class:`AttentionState` with batch axes
  ``[*B]``), so the cell runs under ``nn.RNN`` / ``nn.scan`` and scanning a sequence
  builds ``M_T``.

  Attributes:
    num_slots: N, slots in the ring (older writes are overwritten after N steps).
    key_size: K.
    value_size: V, also the output size.
    input_size: features of ``x_t`` at the front of ``x``; None = all of ``x``.
    similarity: similarity of the read (see :mod:`memjax.ops.similarity`).
    dtype: dtype of the memory in the carry.
    param_dtype: dtype of the projection parameters.

  Example:
    >>> cell = AttentionMemoryCell(num_slots=8, key_size=16, value_size=5, input_size=3)
    >>> x = jnp.ones((2, 10, 3 + 5))            # [B, T, F] = x_t features ++ y_t features
    >>> rnn = nn.RNN(cell, return_carry=True)
    >>> (carry, y), variables = rnn.init_with_output(jax.random.key(0), x)
    >>> y.shape, carry.keys.shape
    ((2, 10, 5), (2, 8, 16))
  """

  num_slots: int
  key_size: int
  value_size: int
  input_size: int | None = None
  similarity: str | SimilarityFn = "scaled_dot"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry: AttentionState, x: jax.Array) -> tuple[AttentionState, jax.Array]:
    """One step.

    Args:
      carry: :class:`AttentionState` with batch axes ``[*B]``.
      x: [*B, F] the step's ``x_t`` features followed by its ``y_t`` features.

    Returns:
      ``(new_carry, read [*B, V])``.
    """
    dense = lambda size, name: nn.Dense(size, name=name, param_dtype=self.param_dtype)
    layers = dense(self.key_size, "query"), dense(self.key_size, "key")
    return _cell_step(self, carry, x, *layers, dense(self.value_size, "value"))

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> AttentionState:
    """An empty memory with batch axes ``input_shape[:-1]``.

    Args:
      rng: unused (the memory starts empty); kept for the ``RNNCellBase`` API.
      input_shape: the shape ``[*B, F]`` of one step's input.

    Returns:
      :class:`AttentionState` with ``keys [*B, N, K]``, ``values [*B, N, V]``.
    """
    del rng
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


@_nnx.twin_of(AttentionMemoryCell)
class NNXAttentionMemoryCell(nnx.RNNCellBase):
  """The NNX form of :class:`AttentionMemoryCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN``, ``nnx.scan`` and ``nnx.Bidirectional``. The projections
  ``query``, ``key`` (``x_t -> K``) and ``value`` (``y_t -> V``, or ``x_t -> V`` without
  ``y_t``) are ``nnx.Linear`` layers named as the linen cell's, so
  ``AttentionMemoryCell.to_nnx(in_features, params=...)`` carries trained parameters
  across.

  Args:
    in_features: F, the size of one step's input ``x [*B, F]``.
    num_slots, key_size, value_size, input_size, similarity, dtype, param_dtype: as
      :class:`AttentionMemoryCell`.
    rngs: initialises the projections.

  Example:
    >>> cell = NNXAttentionMemoryCell(8, num_slots=8, key_size=16, value_size=5,
    ...                               input_size=3, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 10, 8))).shape     # [B, T, F] -> [B, T, V]
    (2, 10, 5)
  """

  def __init__(
    self,
    in_features: int,
    num_slots: int,
    key_size: int,
    value_size: int,
    input_size: int | None = None,
    similarity: str | SimilarityFn = "scaled_dot",
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    x_size, v_size = _carry.io_sizes(in_features, input_size)
    self.in_features, self.num_slots = in_features, num_slots
    self.key_size, self.value_size, self.input_size = key_size, value_size, input_size
    self.similarity, self.dtype, self.param_dtype = similarity, dtype, param_dtype
    linear = lambda i, o: nnx.Linear(i, o, param_dtype=param_dtype, rngs=rngs)
    self.query, self.key = linear(x_size, key_size), linear(x_size, key_size)
    self.value = linear(v_size, value_size)

  def __call__(self, carry: AttentionState, x: jax.Array) -> tuple[AttentionState, jax.Array]:
    """One step: ``(carry, x [*B, F]) -> (carry, read [*B, V])``."""
    return _cell_step(self, carry, x, self.query, self.key, self.value)

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> AttentionState:
    """An empty memory with batch axes ``input_shape[:-1]`` (``rngs`` unused)."""
    del rngs
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "AttentionState",
  "init_state",
  "write",
  "read",
  "reset",
  "AttentionMemoryCell",
  "NNXAttentionMemoryCell",
]
