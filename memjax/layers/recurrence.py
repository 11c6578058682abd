"""Transformer-XL segment recurrence: the previous segments' states as an explicit carry.

A long sequence is processed in segments of T tokens. Each attention layer keeps the
last M *inputs* it saw (its hidden states ``h^{n-1}`` of earlier segments, Dai et al.
2019, eq. 1) in an :class:`XLMemory` and attends over ``[memory ; current]``; the memory
is updated after the segment with ``stop_gradient``, so no gradient crosses a segment
boundary:

    memory = init_memory(batch_shape, M, F)
    for segment in segments:                       # or lax.scan
      memory, y = layer(memory, segment)           # y from [memory ; segment]
      # memory.states == the last M states of (previous memory ; segment)

``reset`` empties the memory of chosen examples (document boundaries).

References:
  Z. Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length
  Context", ACL 2019.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.layers.relative import XLRelativeAttention
from memjax.ops import _checks


class XLMemory(NamedTuple):
  """The cached states of one layer (batched: every leaf has leading axes ``[*B]``)."""

  states: jax.Array  # [*B, M, F] the last M hidden states, oldest first
  valid: jax.Array  # [*B, M] bool, False = an empty slot (before M states were seen)


def init_memory(
  batch_shape: tuple[int, ...], memory_length: int, features: int, dtype: Any = jnp.float32
) -> XLMemory:
  """An empty memory: zero states, no valid slot.

  Args:
    batch_shape: the batch axes ``B``.
    memory_length: M >= 1.
    features: F >= 1.
    dtype: floating dtype of the states.
  """
  m = _checks.check_size("memory_length", memory_length)
  f = _checks.check_size("features", features)
  batch_shape = tuple(batch_shape)
  return XLMemory(jnp.zeros((*batch_shape, m, f), dtype), jnp.zeros((*batch_shape, m), bool))


def _check_memory(memory: XLMemory) -> None:
  _checks.check_min_rank("memory.states", memory.states, 2, "[*B, M, F]")
  if memory.valid.shape != memory.states.shape[:-1]:
    raise ValueError(
      f"memory.valid {memory.valid.shape} must have the shape of memory.states "
      f"{memory.states.shape} without its last axis"
    )


def update(memory: XLMemory, hidden: jax.Array) -> XLMemory:
  """The new memory: the last M states of ``[memory ; hidden]``, without gradient.

  Args:
    memory: the memory before the segment.
    hidden: [*B, T, F] the segment's states (the layer's inputs).

  Returns:
    :class:`XLMemory` with the same shapes and dtypes.
  """
  _check_memory(memory)
  _checks.check_floating("hidden", hidden)
  m, f = memory.states.shape[-2:]
  batch = memory.states.shape[:-2]
  if hidden.ndim != len(batch) + 2 or hidden.shape[:-2] != batch or hidden.shape[-1] != f:
    raise ValueError(f"hidden must have shape [*B, T, {f}] with B = {batch}, got {hidden.shape}")
  states = jnp.concatenate([memory.states, hidden.astype(memory.states.dtype)], axis=-2)
  valid = jnp.concatenate([memory.valid, jnp.ones(hidden.shape[:-1], bool)], axis=-1)
  return XLMemory(jax.lax.stop_gradient(states[..., -m:, :]), valid[..., -m:])


def reset(memory: XLMemory, reset_mask: jax.Array) -> XLMemory:
  """Empties the memory of the examples where ``reset_mask [*B]`` is True."""
  _check_memory(memory)
  reset_mask = _checks.as_array("reset_mask", reset_mask)
  if reset_mask.dtype != jnp.bool_ or reset_mask.shape != memory.valid.shape[:-1]:
    raise ValueError(
      f"reset_mask must be bool of shape {memory.valid.shape[:-1]} [*B], got "
      f"{reset_mask.dtype}{reset_mask.shape}"
    )
  keep = ~reset_mask
  return XLMemory(
    jnp.where(keep[..., None, None], memory.states, jnp.zeros((), memory.states.dtype)),
    memory.valid & keep[..., None],
  )


class XLAttention(nn.Module):
  """One Transformer-XL attention layer with its segment memory as the carry.

  ``__call__(memory, x) -> (new_memory, y)``: ``y`` attends over ``[memory ; x]`` with
  relative positions (:class:`memjax.layers.relative.XLRelativeAttention`, parameters
  under ``attention``); ``new_memory = update(memory, x)``.

  Attributes:
    num_heads: H.
    memory_length: M, the states kept (used by :meth:`initialize_carry`).
    qkv_features, out_features, causal, dtype: as ``XLRelativeAttention``.

  Example:
    >>> layer = XLAttention(num_heads=2, memory_length=4)
    >>> x = jnp.ones((3, 5, 8))
    >>> mem = layer.initialize_carry(x.shape)
    >>> (mem, y), params = layer.init_with_output(jax.random.key(0), mem, x)
    >>> mem.states.shape, y.shape
    ((3, 4, 8), (3, 5, 8))
  """

  num_heads: int
  memory_length: int
  qkv_features: int | None = None
  out_features: int | None = None
  causal: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(
    self, memory: XLMemory, x: jax.Array, reset_mask: jax.Array | None = None
  ) -> tuple[XLMemory, jax.Array]:
    """One segment.

    Args:
      memory: the carry (:meth:`initialize_carry`).
      x: [*B, T, F] the segment.
      reset_mask: optional [*B] bool; True empties that example's memory first (a new
        document starts with this segment).

    Returns:
      ``(new_memory, y [*B, T, out_features])``.
    """
    _check_memory(memory)
    if reset_mask is not None:
      memory = reset(memory, reset_mask)
    y = XLRelativeAttention(
      self.num_heads,
      self.qkv_features,
      self.out_features,
      self.causal,
      self.dtype,
      name="attention",
    )(x, memory.states, memory.valid)
    return update(memory, x), y

  @nn.nowrap
  def initialize_carry(self, input_shape: tuple[int, ...], dtype: Any = jnp.float32) -> XLMemory:
    """An empty memory for inputs of shape ``(*B, T, F)``."""
    return init_memory(tuple(input_shape[:-2]), self.memory_length, input_shape[-1], dtype)


__all__ = ["XLMemory", "init_memory", "update", "reset", "XLAttention"]
