"""Helpers shared by the memory cells: batching a single-example state, splitting inputs.

The pure memory ops are written for one example. A cell's carry holds the same state
with leading batch axes ``[*B, ...]`` on every leaf; these helpers build such a carry,
lift single-example ops over it with nested :func:`jax.vmap`, and check the scan carry
rule (a step returns a carry of the same structure, shapes and dtypes as it got).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import chex
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


def io_sizes(in_features: int, input_size: int | None) -> tuple[int, int]:
  """The sizes of ``x_t`` and of the value input for an input of ``in_features``.

  The value input is ``y_t`` when the input has features beyond ``input_size``, else
  ``x_t`` itself (the split of :func:`split_input`).

  Raises:
    ValueError: ``input_size`` outside ``[1, in_features]``.
  """
  in_features = _checks.check_size("in_features", in_features)
  if input_size is None or input_size == in_features:
    return in_features, in_features
  if not 1 <= input_size <= in_features:
    raise ValueError(f"input_size={input_size} must be in [1, {in_features}] (in_features)")
  return input_size, in_features - input_size


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


def check_carry_kept(cell: str, carry: Any, new_carry: Any) -> None:
  """Checks the scan carry rule: ``new_carry`` is typed exactly like ``carry``.

  Same tree structure, and per leaf the same shape, dtype and weak type (a weakly typed
  leaf would retrace a jitted step and change the type of a ``lax.scan`` carry). Only
  static properties are compared, so under ``jit`` the check runs once, at trace time,
  and costs nothing at run time.

  Args:
    cell: the name of the cell whose ``__call__`` produced ``new_carry`` (for the error).
    carry: the carry the step got.
    new_carry: the carry the step returns.

  Raises:
    TypeError: naming ``cell`` and the first leaf that differs.
  """
  try:
    chex.assert_trees_all_equal_structs(carry, new_carry)
    chex.assert_trees_all_equal_shapes_and_dtypes(carry, new_carry)
  except AssertionError as e:
    raise TypeError(
      f"{cell} must return a carry of the structure, shapes and dtypes it got (the scan "
      f"carry rule; tree 0 is the carry it got, tree 1 the one it returned): {e}"
    ) from None
  old_leaves = jax.tree_util.tree_flatten_with_path(carry)[0]
  for (path, old), new in zip(old_leaves, jax.tree.leaves(new_carry), strict=True):
    if jax.typeof(old).weak_type != jax.typeof(new).weak_type:
      raise TypeError(
        f"{cell} must return a carry of the types it got (the scan carry rule), but carry"
        f"{jax.tree_util.keystr(path)} came in as {jax.typeof(old)} and went out as "
        f"{jax.typeof(new)} ('~' marks a weak type)"
      )


__all__ = [
  "broadcast_state",
  "vmap_batch",
  "split_input",
  "io_sizes",
  "check_carry_batch",
  "check_carry_kept",
]
