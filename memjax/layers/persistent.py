"""Persistent memory tokens as a layer: learned key/value slots every query sees.

:class:`PersistentTokens` holds ``persistent_keys``, ``persistent_values [H, P, D]`` and
prepends them to any attention's keys and values in the layers' layout
``[..., T, H, D]`` (with :func:`memjax.memory.persistent.with_persistent`), extending
the mask so the P slots are always visible. :class:`PersistentAttention` is multi-head
attention over ``[persistent ; inputs]`` built from it; its parameters have the layout of
:class:`memjax.memory.persistent.PersistentMemoryAttention`.

References:
  S. Sukhbaatar, E. Grave, G. Lample, H. Jegou, A. Joulin, "Augmenting Self-attention
  with Persistent Memory", arXiv:1907.01470, 2019.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.layers.attention import (
  and_masks,
  causal_mask,
  dot_product_attention,
  project_out,
  project_qkv,
)
from memjax.memory.persistent import _persistent_init, with_persistent
from memjax.ops import _checks


class PersistentTokens(nn.Module):
  """P learned key/value slots per head, prepended to keys and values.

  Attributes:
    num_heads: H.
    num_persistent: P.
    head_dim: D of the keys and values.
    dtype: parameter dtype.

  Example:
    >>> tokens = PersistentTokens(num_heads=2, num_persistent=3, head_dim=4)
    >>> k = v = jnp.ones((5, 7, 2, 4))  # [B, T, H, D]
    >>> (k2, v2, m2), _ = tokens.init_with_output(jax.random.key(0), k, v)
    >>> k2.shape
    (5, 10, 2, 4)
  """

  num_heads: int
  num_persistent: int
  head_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, key: jax.Array, value: jax.Array, mask: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Prepends the slots.

    Args:
      key: [..., T, H, D] keys.
      value: [..., T, H, D] values.
      mask: optional bool broadcastable to [..., H, Tq, T].

    Returns:
      ``(key [..., P + T, H, D], value [..., P + T, H, D], mask [..., H, Tq, P + T])``
      (the mask None when given None); the persistent slots come first.
    """
    h, p, d = self.num_heads, self.num_persistent, self.head_dim
    _checks.check_size("num_persistent", p)
    if key.shape[-2:] != (h, d) or value.shape[-2:] != (h, d):
      raise ValueError(f"key {key.shape} and value {value.shape} must end in [H, D] = {(h, d)}")
    init_k, init_v = _persistent_init(p, d)
    pk = self.param("persistent_keys", init_k, (h, p, d), self.dtype)
    pv = self.param("persistent_values", init_v, (h, p, d), self.dtype)
    heads_first = lambda a: jnp.moveaxis(a, -2, -3)  # [..., T, H, D] -> [..., H, T, D]
    k2, v2, _ = with_persistent(heads_first(key), heads_first(value), pk, pv)
    back = lambda a: jnp.moveaxis(a, -3, -2)
    if mask is None:
      return back(k2), back(v2), None
    t = key.shape[-3]
    mask = jnp.asarray(mask)
    shape = jnp.broadcast_shapes(mask.shape, (*key.shape[:-3], h, 1, t))
    _, _, m2 = with_persistent(
      heads_first(key), heads_first(value), pk, pv, jnp.broadcast_to(mask, shape)
    )
    return back(k2), back(v2), m2


class PersistentAttention(nn.Module):
  """Multi-head self-attention over ``[persistent ; inputs]`` (Sukhbaatar et al. 2019).

  Parameters ``query``, ``key``, ``value``, ``out`` and ``persistent_keys``,
  ``persistent_values [H, P, Dh]`` (under ``tokens``).

  Attributes:
    num_heads: H (must divide ``qkv_features``).
    num_persistent: P.
    qkv_features: total query / key / value size (default: the input size F).
    out_features: output size (default F).
    causal: query i sees inputs ``j <= i`` (always all persistent slots).
    dtype: computation dtype.

  Example:
    >>> layer = PersistentAttention(num_heads=2, num_persistent=4, causal=True)
    >>> x = jnp.ones((3, 5, 8))
    >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
    (3, 5, 8)
  """

  num_heads: int
  num_persistent: int
  qkv_features: int | None = None
  out_features: int | None = None
  causal: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Args: ``x [..., T, F]``, ``mask`` bool broadcastable to [..., H, T, T].

    Returns:
      [..., T, out_features].
    """
    _checks.check_floating("x", x)
    _checks.check_min_rank("x", x, 2, "[..., T, F]")
    t = x.shape[-2]
    q, k, v = project_qkv(self, x, x, self.num_heads, self.qkv_features, True, self.dtype)
    full = causal_mask(t, t) if self.causal else jnp.ones((t, t), bool)
    full = and_masks(full, mask)
    tokens = PersistentTokens(
      self.num_heads, self.num_persistent, q.shape[-1], self.dtype or jnp.float32, name="tokens"
    )
    k, v, full = tokens(k, v, full)
    out = dot_product_attention(q, k, v, full)
    return project_out(self, out, self.out_features or x.shape[-1], True, self.dtype)


__all__ = ["PersistentTokens", "PersistentAttention"]
