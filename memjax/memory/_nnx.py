"""What the NNX cells share: parameter transfer from linen, carry keys, cell attributes.

Every memory family has a linen cell and an NNX cell. Both run the same private step
function of the family (the math exists once); they differ only in how they hold their
parameters: the linen cell creates ``nn.Dense`` layers inside ``@nn.compact``, the NNX
cell owns ``nnx.Linear`` layers built in ``__init__`` (NNX builds parameters eagerly, so
it needs the input size ``in_features``). The layers carry the same names in both
(``query``, ``key``, ...), so a linen parameter tree maps onto the NNX cell's
``nnx.Param`` state one to one, and :func:`load_linen_params` moves it across.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import unfreeze

Layer = Callable[[jax.Array], jax.Array]  # a projection: nn.Dense / nnx.Linear, called on x


def linen_attributes(cell: Any) -> dict[str, Any]:
  """The dataclass attributes of a linen cell (its configuration), without parent/name."""
  return {
    f.name: getattr(cell, f.name)
    for f in dataclasses.fields(cell)
    if f.init and f.name not in ("parent", "name")
  }


def _flat(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out: dict[tuple[str, ...], Any] = {}
  for name, value in tree.items():
    path = prefix + (str(name),)
    if isinstance(value, Mapping):
      out.update(_flat(value, path))
    else:
      out[path] = value
  return out


def load_linen_params(
  module: nnx.Module,
  params: Mapping[str, Any],
  convert: Callable[[dict[tuple[str, ...], Any]], dict[tuple[str, ...], Any]] | None = None,
) -> nnx.Module:
  """Copies a linen parameter tree into an NNX module's ``nnx.Param`` state (in place).

  Args:
    module: the NNX module (e.g. an NNX memory cell).
    params: the linen parameters of the matching linen module, ``variables['params']``
      (a ``{'params': ...}`` dict is accepted too).
    convert: optional map of the flat linen tree (``path tuple -> array``) to the NNX
      layout, for layers whose parameters are laid out differently in the two APIs
      (e.g. linen's per-gate LSTM kernels against NNX's fused ones).

  Returns:
    ``module``, its parameters replaced (same shapes and dtypes; the arrays are copied).

  Raises:
    ValueError: the two trees differ in paths, or a parameter's shape or dtype differs;
      the message lists the differing paths.
  """
  params = unfreeze(params)
  if set(params) == {"params"}:
    params = params["params"]
  flat = _flat(params)
  if convert is not None:
    flat = convert(flat)
  state = nnx.state(module, nnx.Param)
  target = {tuple(str(p) for p in path): v for path, v in nnx.to_flat_state(state)}
  missing, extra = sorted(set(target) - set(flat)), sorted(set(flat) - set(target))
  if missing or extra:
    raise ValueError(
      f"the linen parameters do not match {type(module).__name__}: missing {missing}, "
      f"unexpected {extra} (build the NNX cell with the linen cell's attributes and input "
      "size, e.g. with the linen cell's to_nnx(in_features))"
    )
  for path, var in target.items():
    got = jnp.asarray(flat[path])
    if got.shape != var.shape or got.dtype != var.dtype:
      raise ValueError(
        f"parameter {'/'.join(path)}: linen has {got.dtype}{list(got.shape)}, "
        f"{type(module).__name__} expects {var.dtype}{list(var.shape)}"
      )
  pure = nnx.to_pure_dict(state)
  by_str = {tuple(str(p) for p in path): path for path, _ in nnx.to_flat_state(state)}
  for spath, path in by_str.items():
    node = pure
    for part in path[:-1]:
      node = node[part]
    node[path[-1]] = jnp.array(flat[spath], copy=True)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(module, state)
  return module


def to_nnx(
  linen_cell: Any,
  nnx_cls: type,
  in_features: int,
  rngs: nnx.Rngs | None,
  params: Mapping[str, Any] | None,
  convert: Callable[[dict[tuple[str, ...], Any]], dict[tuple[str, ...], Any]] | None = None,
  **overrides: Any,
) -> Any:
  """Builds ``nnx_cls`` with the linen cell's attributes (and its parameters, if given)."""
  attributes = linen_attributes(linen_cell) | overrides
  cell = nnx_cls(in_features, **attributes, rngs=nnx.Rngs(0) if rngs is None else rngs)
  if params is not None:
    load_linen_params(cell, params, convert)
  return cell


_TWINS: dict[type, type] = {}


def twin_of(linen_cls: type) -> Callable[[type], type]:
  """Class decorator: registers the decorated NNX class as ``linen_cls``'s twin."""

  def register(nnx_cls: type) -> type:
    _TWINS[linen_cls] = nnx_cls
    return nnx_cls

  return register


class HasNNXTwin:
  """Mixin of the linen memory modules: :meth:`to_nnx` builds the registered NNX twin."""

  # A map of the flat linen parameter tree to the NNX layout (None: the same layout).
  _nnx_convert: Callable[[dict[tuple[str, ...], Any]], dict[tuple[str, ...], Any]] | None = None

  @nn.nowrap
  def to_nnx(
    self,
    in_features: int,
    *,
    rngs: nnx.Rngs | None = None,
    params: Mapping[str, Any] | None = None,
    **overrides: Any,
  ) -> Any:
    """The NNX twin of this module for inputs of ``in_features`` (``params`` copied in).

    Args:
      in_features: F, the size of one step's input (NNX builds parameters eagerly).
      rngs: initialises the NNX parameters (default ``nnx.Rngs(0)``).
      params: optional linen parameters of this module (``variables['params']`` of it)
        to copy into the twin, see :func:`load_linen_params`.
      **overrides: constructor arguments of the twin that replace this module's
        attributes (e.g. an NNX ``encoder``).

    Returns:
      The NNX module with this module's attributes.
    """
    twin = next((_TWINS[c] for c in type(self).__mro__ if c in _TWINS), None)
    if twin is None:
      raise TypeError(f"{type(self).__name__} has no registered NNX twin")
    return to_nnx(self, twin, in_features, rngs, params, type(self)._nnx_convert, **overrides)


def carry_key(rngs: nnx.Rngs | nnx.RngStream | jax.Array | None) -> jax.Array | None:
  """A PRNG key from what ``nnx.RNN`` hands ``initialize_carry`` (None stays None)."""
  if rngs is None or isinstance(rngs, jax.Array):
    return rngs
  return rngs()


__all__ = [
  "Layer",
  "linen_attributes",
  "load_linen_params",
  "to_nnx",
  "twin_of",
  "HasNNXTwin",
  "carry_key",
]
