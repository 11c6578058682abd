"""Sliding-window attention, computed blockwise in O(T * w) memory, with global tokens.

Query ``i`` sees key ``j`` when

* causal:        ``i - w < j <= i``  (the last ``w`` positions, itself included);
* bidirectional: ``|i - j| < w``     (``w - 1`` positions on each side and itself);

plus, optionally, a few *global* tokens (Longformer): every query sees the global
positions (causal: those ``<= i``) and a global position's query sees every key
(causal: every ``j <= g``).

Blockwise: the sequence is cut into blocks of ``b = min(w, T)`` queries (a ragged last
block is padded inside the function and masked; the caller's arrays are never padded);
block ``n`` attends to its own key block and the ``p = ceil((w - 1) / b)`` blocks before
it (and after it, bidirectional). The logits have shape ``[..., T/b, b, H, (2p + 1) b]``,
so memory grows as ``T * w`` (plus ``T * G`` for G global tokens), never ``T ** 2``.
Softmax in float32 as in :func:`memjax.layers.dot_product_attention`.

References:
  I. Beltagy, M. Peters, A. Cohan, "Longformer: The Long-Document Transformer", 2020.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.layers.attention import _check_qkv, dot_product_attention, project_out, project_qkv
from memjax.ops import _checks
from memjax.ops.attention import masked_softmax


def band_mask(num_queries: int, window: int, causal: bool = True) -> jax.Array:
  """[T, T] bool: the sliding-window visibility ``mask[i, j]`` (see the module docstring)."""
  i = jnp.arange(num_queries)[:, None]
  j = jnp.arange(num_queries)[None, :]
  if causal:
    return (j <= i) & (i - j < window)
  return jnp.abs(i - j) < window


def _pad_time(x: jax.Array, axis: int, before: int, after: int) -> jax.Array:
  """Pads ``axis`` with zeros (False for a mask)."""
  pads = [(0, 0)] * x.ndim
  pads[axis] = (before, after)
  return jnp.pad(x, pads)


def sliding_window_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  window: int,
  causal: bool = True,
  global_indices: Any = None,
  key_mask: jax.Array | None = None,
  block_size: int | None = None,
  scale: float | None = None,
) -> jax.Array:
  """Sliding-window (self-)attention, blockwise, with optional global tokens.

  Args:
    query: [..., T, H, D] queries.
    key: [..., T, H, D] keys (the same positions as the queries).
    value: [..., T, H, Dv] values.
    window: w >= 1 (see the module docstring for which keys a query sees).
    causal: causal (True) or bidirectional window.
    global_indices: optional [G] int positions of distinct global tokens (a sequence or an
      int array; values may be traced, G is static).
    key_mask: optional [..., T] bool, False = a padding key nobody sees.
    block_size: queries per block (default ``min(window, T)``); any value >= 1 gives the
      same result, memory ``O(T * (window + block_size))``.
    scale: logit scale (default ``D ** -0.5``).

  Returns:
    [..., T, H, Dv] in ``result_type(query, key, value)``. A query that sees no key reads
    zeros.

  Raises:
    ValueError / TypeError: mismatched shapes, ``window < 1``, a bad mask or indices.

  Example:
    >>> q = k = v = jnp.ones((2, 10, 4, 8))  # [B, T, H, D]
    >>> sliding_window_attention(q, k, v, window=3).shape
    (2, 10, 4, 8)
  """
  _check_qkv(query, key, value)
  window = _checks.check_size("window", window)
  *batch, t, h, d = query.shape
  if key.shape[-3] != t:
    raise ValueError(
      f"sliding-window self-attention needs keys at the queries' positions: key has "
      f"{key.shape[-3]} steps (shape {key.shape}) but query has {t} (shape {query.shape})"
    )
  batch = tuple(batch)
  dv = value.shape[-1]
  scale = d**-0.5 if scale is None else scale
  if key_mask is not None:
    key_mask = _checks.as_array("key_mask", key_mask)
    if jnp.result_type(key_mask) != jnp.bool_ or key_mask.shape != (*batch, t):
      raise ValueError(
        f"key_mask must be bool of shape {(*batch, t)} [..., T], got "
        f"{jnp.result_type(key_mask)}{key_mask.shape}"
      )
  if t == 0:
    return jnp.zeros((*batch, 0, h, dv), jnp.result_type(query, key, value))
  b = min(t, window) if block_size is None else _checks.check_size("block_size", block_size)
  b = min(b, t)
  nb = -(-t // b)
  tp = nb * b
  p = min(math.ceil((window - 1) / b), nb - 1)
  left, right = p * b, (0 if causal else p * b)
  num_key_blocks = p + 1 if causal else 2 * p + 1

  def key_blocks(x: jax.Array) -> jax.Array:
    """[..., T, ...] -> [..., nb, num_key_blocks * b, ...]: each query block's keys."""
    time_axis = len(batch)
    xp = _pad_time(x, time_axis, left, tp - t + right)
    xb = xp.reshape(*xp.shape[:time_axis], nb + num_key_blocks - 1, b, *xp.shape[time_axis + 1 :])
    parts = [jax.lax.slice_in_dim(xb, s, s + nb, axis=time_axis) for s in range(num_key_blocks)]
    return jnp.concatenate(parts, axis=time_axis + 1)

  qb = _pad_time(query, len(batch), 0, tp - t).reshape(*batch, nb, b, h, d)
  kw, vw = key_blocks(key), key_blocks(value)  # [..., nb, Kw, H, D]
  kw_len = num_key_blocks * b
  q_pos = jnp.arange(tp).reshape(nb, b)  # [nb, b]
  k_pos = (jnp.arange(nb)[:, None] - p) * b + jnp.arange(kw_len)[None, :]  # [nb, Kw]
  rel = q_pos[:, :, None] - k_pos[:, None, :]  # [nb, b, Kw]
  in_range = (k_pos >= 0) & (k_pos < t)
  in_window = (rel >= 0) & (rel < window) if causal else jnp.abs(rel) < window
  mask_w = jnp.broadcast_to((in_window & in_range[:, None, :]), (*batch, nb, b, kw_len))
  if key_mask is not None:
    km = key_blocks(key_mask)  # [..., nb, Kw]
    mask_w = mask_w & km[..., :, None, :]
  logits = jnp.einsum("...nrhd,...nchd->...nrhc", qb, kw, preferred_element_type=jnp.float32)
  logits = logits * jnp.float32(scale)
  mask_w = jnp.broadcast_to(mask_w[..., None, :], logits.shape)

  if global_indices is None:
    weights = masked_softmax(logits, mask_w)
    out = jnp.einsum("...nrhc,...nchd->...nrhd", weights, vw.astype(jnp.float32))
    out = out.reshape(*batch, tp, h, dv)[..., :t, :, :]
    return out.astype(jnp.result_type(query, key, value))

  gi = _checks.as_array("global_indices", global_indices)
  if not jnp.issubdtype(gi.dtype, jnp.integer) or gi.ndim != 1:
    raise ValueError(
      f"global_indices must be a [G] integer array of positions, got {gi.dtype}{gi.shape}"
    )
  gi = gi.astype(jnp.int32)
  g = gi.shape[0]
  kg = jnp.take(key, gi, axis=len(batch), mode="clip")  # [..., G, H, D]
  vg = jnp.take(value, gi, axis=len(batch), mode="clip")
  rel_g = q_pos[:, :, None] - gi[None, None, :]  # [nb, b, G]
  seen_g = (rel_g >= 0) if causal else jnp.ones_like(rel_g, bool)
  in_window_g = (rel_g >= 0) & (rel_g < window) if causal else jnp.abs(rel_g) < window
  # A global key inside the query's window is already among the window keys.
  in_seq = ((gi >= 0) & (gi < t))[None, None, :]
  mask_g = jnp.broadcast_to(seen_g & ~in_window_g & in_seq, (*batch, nb, b, g))
  if key_mask is not None:
    mask_g = mask_g & jnp.take(key_mask, gi, axis=-1, mode="clip")[..., None, None, :]
  logits_g = jnp.einsum("...nrhd,...ghd->...nrhg", qb, kg, preferred_element_type=jnp.float32)
  logits_g = logits_g * jnp.float32(scale)
  mask_g = jnp.broadcast_to(mask_g[..., None, :], logits_g.shape)
  weights = masked_softmax(
    jnp.concatenate([logits, logits_g], axis=-1), jnp.concatenate([mask_w, mask_g], axis=-1)
  )
  w_w, w_g = weights[..., :kw_len], weights[..., kw_len:]
  out = jnp.einsum("...nrhc,...nchd->...nrhd", w_w, vw.astype(jnp.float32))
  out = out + jnp.einsum("...nrhg,...ghd->...nrhd", w_g, vg.astype(jnp.float32))
  out = out.reshape(*batch, tp, h, dv)[..., :t, :, :].astype(jnp.result_type(query, key, value))

  # Global queries see every key (causal: every earlier key): full attention for G rows.
  qg = jnp.take(query, gi, axis=len(batch), mode="clip")  # [..., G, H, D]
  j = jnp.arange(t)[None, :]
  full = (j <= gi[:, None]) if causal else jnp.ones((g, t), bool)  # [G, T]
  full = jnp.broadcast_to(full, (*batch, g, t))
  if key_mask is not None:
    full = full & key_mask[..., None, :]
  out_g = dot_product_attention(qg, key, value, full[..., None, :, :], scale=scale)
  rows = jnp.where((gi >= 0) & (gi < t), gi, t)  # out-of-range indices are dropped
  return out.at[..., rows, :, :].set(out_g.astype(out.dtype), mode="drop")


class SlidingWindowAttention(nn.Module):
  """Multi-head sliding-window self-attention with projections (see the module docstring).

  Attributes:
    num_heads: number of heads H (must divide ``qkv_features``).
    window: w >= 1.
    causal: causal or bidirectional window.
    qkv_features: total query / key / value size (default: the input size F).
    out_features: output size (default F).
    block_size: queries per block (default ``min(window, T)``).
    use_bias: biases in the projections.
    dtype: computation dtype.

  Example:
    >>> layer = SlidingWindowAttention(num_heads=2, window=4)
    >>> x = jnp.ones((3, 10, 8))  # [B, T, F]
    >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
    (3, 10, 8)
  """

  num_heads: int
  window: int
  causal: bool = True
  qkv_features: int | None = None
  out_features: int | None = None
  block_size: int | None = None
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(
    self, x: jax.Array, global_indices: Any = None, key_mask: jax.Array | None = None
  ) -> jax.Array:
    """Args: ``x [..., T, F]``, ``global_indices [G]``, ``key_mask [..., T]``.

    Returns:
      [..., T, out_features].
    """
    _checks.check_floating("x", x)
    _checks.check_min_rank("x", x, 2, "[..., T, F]")
    _checks.check_size("window", self.window)
    q, k, v = project_qkv(self, x, x, self.num_heads, self.qkv_features, self.use_bias, self.dtype)
    out = sliding_window_attention(
      q, k, v, self.window, self.causal, global_indices, key_mask, self.block_size
    )
    return project_out(self, out, self.out_features or x.shape[-1], self.use_bias, self.dtype)


__all__ = ["band_mask", "sliding_window_attention", "SlidingWindowAttention"]
