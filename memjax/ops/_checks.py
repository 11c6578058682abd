"""Trace-time argument checks with errors that name the argument.

They run while jit traces (shapes and dtypes are static), so they cost nothing
in compiled code. Library code never checks values.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_array(name: str, x: Any) -> jax.Array:
  """``x`` as an array: array-likes (lists, tuples, scalars, numpy arrays) go through
  ``jnp.asarray``; anything else raises a TypeError naming the argument.

  Python lists of floats become float32 arrays (float64 with ``jax_enable_x64``); a list
  of ints becomes an integer array, which the floating-dtype checks then reject by name.
  """
  if isinstance(x, (jax.Array, np.ndarray)):
    return jnp.asarray(x) if isinstance(x, np.ndarray) else x
  try:
    return jnp.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f"{name} must be an array or an array-like of numbers (a nested list of equal "
      f"lengths), got {type(x).__name__}: {e}"
    ) from None


def check_size(name: str, value: Any, minimum: int = 1) -> int:
  """``value`` as a Python int, or an error naming ``name``.

  Any integral value is accepted (a Python int, a NumPy integer such as ``np.int64(4)``,
  a concrete 0-d integer array: whatever ``operator.index`` takes). Booleans, floats and
  traced values raise TypeError; a value below ``minimum`` raises ValueError.
  """
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be an int (a Python or NumPy integer), got {value!r} (a bool)")
  try:
    size = operator.index(value)
  except TypeError:
    hint = ""
    if isinstance(value, jax.core.Tracer):
      hint = "; it fixes a shape, so it must be a concrete value, not a traced one"
    raise TypeError(
      f"{name} must be an int (a Python or NumPy integer), got {value!r} "
      f"({type(value).__name__}){hint}"
    ) from None
  if size < minimum:
    want = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    raise ValueError(f"{name} must be {want}, got {size}")
  return size


def check_floating(name: str, x: jax.Array) -> None:
  """Raises TypeError unless ``x`` has a floating dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(
      f"{name} must have a floating dtype, got {jnp.result_type(x)} "
      f"(shape {jnp.shape(x)}); cast it, e.g. {name}.astype(jnp.float32)"
    )


def check_rank(name: str, x: jax.Array, rank: int | set[int], what: str = "") -> None:
  """Raises ValueError unless ``x.ndim`` is ``rank`` (or in the set)."""
  ranks = {rank} if isinstance(rank, int) else rank
  if jnp.ndim(x) not in ranks:
    want = " or ".join(str(r) for r in sorted(ranks))
    hint = f" {what}" if what else ""
    raise ValueError(f"{name} must have rank {want}{hint}, got shape {jnp.shape(x)}")


def check_min_rank(name: str, x: jax.Array, rank: int, what: str = "") -> None:
  """Raises ValueError unless ``x.ndim >= rank``."""
  if jnp.ndim(x) < rank:
    hint = f" {what}" if what else ""
    raise ValueError(f"{name} must have rank >= {rank}{hint}, got shape {jnp.shape(x)}")


def check_last_dim(name: str, x: jax.Array, size: int, other: str) -> None:
  """Raises ValueError unless ``x.shape[-1] == size`` (``other`` says where size came from)."""
  if jnp.shape(x)[-1] != size:
    raise ValueError(
      f"{name} has feature size {jnp.shape(x)[-1]} (shape {jnp.shape(x)}) but {other} has {size}"
    )


def check_query_keys(query: Any, keys: Any) -> tuple[jax.Array, jax.Array]:
  """Checks ``query [..., K]`` against ``keys [N, K]``; returns both as arrays."""
  query, keys = as_array("query", query), as_array("keys", keys)
  check_floating("query", query)
  check_floating("keys", keys)
  check_rank("keys", keys, 2, "[N, K]")
  check_min_rank("query", query, 1, "[..., K]")
  check_last_dim("query", query, jnp.shape(keys)[-1], f"keys {jnp.shape(keys)}")
  return query, keys


def check_k(k: Any, capacity: int, name: str = "k") -> int:
  """``k`` as a Python int; raises unless ``1 <= k <= capacity``.

  ``k`` fixes an output shape, so it must be a concrete integer: a Python int or a NumPy
  integer (TypeError for a bool, a float or a traced value). A memory with no slots
  (``capacity == 0``) has nothing to retrieve and is refused by name.
  """
  if isinstance(k, (bool, np.bool_)):
    raise TypeError(f"{name} must be a Python int or a NumPy integer, got {k!r} (a bool)")
  try:
    k = operator.index(k)
  except TypeError:
    raise TypeError(
      f"{name} must be a Python int or a NumPy integer (it fixes an output shape, so it "
      f"must be concrete), got {k!r} ({type(k).__name__})"
    ) from None
  if capacity < 1:
    raise ValueError(f"{name}={k}: the memory has no slots (capacity 0), nothing to retrieve")
  if not 1 <= k <= capacity:
    raise ValueError(f"{name}={k} must be in [1, {capacity}] (the memory has {capacity} slots)")
  return k


def check_mask(mask: Any, num_slots: int) -> jax.Array | None:
  """Checks a validity mask ``[..., N]`` of bools; returns it as an array (or None)."""
  if mask is None:
    return None
  mask = as_array("mask", mask)
  if jnp.result_type(mask) != jnp.bool_:
    raise TypeError(f"mask must be boolean, got {jnp.result_type(mask)}")
  if jnp.shape(mask)[-1:] != (num_slots,):
    raise ValueError(f"mask must have shape [..., {num_slots}], got {jnp.shape(mask)}")
  return mask
