"""Trace-time argument checks with errors that name the argument.

They run while jit traces (shapes and dtypes are static), so they cost nothing
in compiled code. Library code never checks values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def check_query_keys(query: jax.Array, keys: jax.Array) -> None:
  """Checks ``query [..., K]`` against ``keys [N, K]``."""
  check_floating("query", query)
  check_floating("keys", keys)
  check_rank("keys", keys, 2, "[N, K]")
  check_min_rank("query", query, 1, "[..., K]")
  check_last_dim("query", query, jnp.shape(keys)[-1], f"keys {jnp.shape(keys)}")


def check_k(k: int, capacity: int, name: str = "k") -> None:
  """Raises ValueError unless ``1 <= k <= capacity`` (k must be a Python int)."""
  if not isinstance(k, int) or isinstance(k, bool):
    raise TypeError(f"{name} must be a Python int (it fixes an output shape), got {k!r}")
  if not 1 <= k <= capacity:
    raise ValueError(f"{name}={k} must be in [1, {capacity}] (the number of memory slots)")


def check_mask(mask: jax.Array | None, num_slots: int) -> None:
  """Checks a validity mask ``[..., N]`` of bools."""
  if mask is None:
    return
  if jnp.result_type(mask) != jnp.bool_:
    raise TypeError(f"mask must be boolean, got {jnp.result_type(mask)}")
  if jnp.shape(mask)[-1:] != (num_slots,):
    raise ValueError(f"mask must have shape [..., {num_slots}], got {jnp.shape(mask)}")
