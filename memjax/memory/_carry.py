"""Helpers shared by the memory cells: batching a single-example state, splitting inputs.

The pure memory ops are written for one example. A cell's carry holds the same state
with leading batch axes ``[*B, ...]`` on every leaf; these helpers build such a carry
and lift single-example ops over it with nested :func:`jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from memjax.ops import _checks

State = TypeVar("State")


def broadcast_state(state: State, batch_shape: tuple[int, ...]) -> State:
  """Gives every leaf of a single-example state the leading axes ``batch_shape``.

  Args:
    state: a single-example memory state (a pytree of arrays).
    batch_shape: the batch axes ``B`` to prepend, e.g. ``()``, ``(B,)`` or ``(2, B)``.

  Returns:
    The same tree with each leaf ``[N, ...]`` broadcast to ``[*B, N, ...]``.
  """
  return jax.tree_util.tree_map(
    lambda a: jnp.broadcast_to(a, tuple(batch_shape) + jnp.shape(a)), state
  )


def vmap_batch(fn: Callable[..., Any], num_batch_dims: int) -> Callable[..., Any]:
  """Maps ``fn`` over ``num_batch_dims`` leading axes of all its (array) arguments.

  Args:
    fn: a single-example function of pytrees of arrays.
    num_batch_dims: how many leading batch axes to map over (0 returns ``fn``).

  Returns:
    The batched function.
  """
  for _ in range(num_batch_dims):
    fn = jax.vmap(fn)
  return fn


def split_input(x: jax.Array, input_size: int | None) -> tuple[jax.Array, jax.Array | None]:
  """Splits a cell input ``[*B, F]`` into ``x_t = x[..., :input_size]`` and the rest ``y_t``.

  Args:
    x: [*B, F] floating cell input, the concatenation of ``x_t`` and ``y_t`` features.
    input_size: the number of leading features that form ``x_t``; None means all of
      ``x`` is ``x_t`` (no ``y_t``).

  Returns:
    ``(x_t [*B, input_size], y_t [*B, F - input_size] or None when F == input_size)``.

  Raises:
    ValueError / TypeError: ``x`` of rank 0, non-floating, or ``input_size`` outside
      ``[1, F]``.
  """
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 1, "[*B, F]")
  features = x.shape[-1]
  if input_size is None or input_size == features:
    return x, None
  if not 1 <= input_size <= features:
    raise ValueError(
      f"input_size={input_size} must be in [1, {features}] (the feature size of x, shape {x.shape})"
    )
  return x[..., :input_size], x[..., input_size:]


def check_carry_batch(carry: Any, x: jax.Array, feature_ndim: dict[str, int]) -> None:
  """Checks that every carry field has the batch axes ``x.shape[:-1]``.

  Args:
    carry: a NamedTuple state with batch axes.
    x: [*B, F] cell input.
    feature_ndim: field name -> rank of that field in a single-example state.

  Raises:
    ValueError: naming the first carry field whose batch axes differ from ``x``'s.
  """
  batch = x.shape[:-1]
  for name, ndim in feature_ndim.items():
    leaf = getattr(carry, name)
    got = leaf.shape[: leaf.ndim - ndim] if leaf.ndim >= ndim else None
    if got != batch:
      raise ValueError(
        f"carry.{name} has shape {leaf.shape}, expected batch axes {batch} (from x of "
        f"shape {x.shape}) followed by {ndim} memory axes; build the carry with "
        "initialize_carry(rng, x.shape)"
      )


__all__ = ["broadcast_state", "vmap_batch", "split_input", "check_carry_batch"]
