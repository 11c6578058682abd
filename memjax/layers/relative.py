"""Relative positions: Transformer-XL attention, rotary embeddings (RoPE), T5 bias.

Transformer-XL (Dai et al. 2019, section 3.3). With ``q_i = W_q x_i``,
``k_j = W_kE x_j`` and ``r_{i-j} = W_kR R_{i-j}`` (R sinusoidal), the logit of query i
on key j is

    A_ij = q_i . k_j  +  q_i . r_{i-j}  +  u . k_j  +  v . r_{i-j}
           (a)            (b)              (c)         (d)

scaled by ``D ** -0.5``, with learned ``u, v [H, D]`` shared across positions. Queries
are the last Tq of the Tk keys by default (``[memory ; current]``): query i sits at
position ``offset + i`` with ``offset = Tk - Tq``, key j at position j.

RoPE (Su et al. 2021) rotates feature pairs ``(x_m, x_{m + D/2})`` of a query or key at
position p by the angle ``p * base ** (-2m / D)``, so ``rope(q, p) . rope(k, p')``
depends on ``p - p'`` only.

T5 bias (Raffel et al. 2020): a learned scalar per head and bucket of ``j - i``; the
first half of the buckets are exact distances, the rest logarithmically wider up to
``max_distance``.

References:
  Z. Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length
  Context", ACL 2019.
  J. Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021.
  C. Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer", JMLR 2020.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.layers.attention import (
  _check_qkv,
  and_masks,
  causal_mask,
  dot_product_attention,
  head_dim,
  project_out,
)
from memjax.ops import _checks


def sinusoidal_embedding(positions: jax.Array, dim: int, base: float = 10000.0) -> jax.Array:
  """``[sin(p * f) ; cos(p * f)]`` with ``f_m = base ** (-2m / dim)``, m < dim / 2.

  Args:
    positions: [L] positions (any real values, e.g. relative distances).
    dim: even embedding size.
    base: wavelength base.

  Returns:
    [L, dim] float32.
  """
  dim = _checks.check_size("dim", dim)
  if dim % 2:
    raise ValueError(f"dim={dim} must be even (sin and cos halves)")
  freq = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [dim / 2]
  angle = jnp.asarray(positions, jnp.float32)[:, None] * freq[None, :]
  return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def relative_distances(num_queries: int, num_keys: int, offset: int | None = None) -> jax.Array:
  """The distances ``i + offset - j`` that :func:`xl_relative_logits` indexes, ascending.

  Returns:
    [Tq + Tk - 1] int32, from ``offset - (Tk - 1)`` to ``offset + Tq - 1``.
  """
  offset = num_keys - num_queries if offset is None else offset
  return jnp.arange(offset - (num_keys - 1), offset + num_queries, dtype=jnp.int32)


def xl_relative_logits(
  query: jax.Array,
  key: jax.Array,
  rel_keys: jax.Array,
  u: jax.Array,
  v: jax.Array,
  offset: int | None = None,
) -> jax.Array:
  """Unscaled Transformer-XL logits ``(a) + (b) + (c) + (d)`` (module docstring), float32.

  Args:
    query: [..., Tq, H, D] queries ``q_i``.
    key: [..., Tk, H, D] keys ``k_j``.
    rel_keys: [Tq + Tk - 1, H, D] projected relative encodings ``r_d`` for the distances
      of :func:`relative_distances` (ascending).
    u: [H, D] content bias.
    v: [H, D] position bias.
    offset: position of query 0 among the keys (default ``Tk - Tq``).

  Returns:
    [..., H, Tq, Tk] float32 logits.
  """
  tq, h, d = query.shape[-3:]
  tk = key.shape[-3]
  want = (tq + tk - 1, h, d)
  if rel_keys.shape != want:
    raise ValueError(f"rel_keys must have shape {want} [Tq + Tk - 1, H, D], got {rel_keys.shape}")
  for name, p in (("u", u), ("v", v)):
    if p.shape != (h, d):
      raise ValueError(f"{name} must have shape {(h, d)} [H, D], got {p.shape}")
  offset = tk - tq if offset is None else offset
  f32 = jnp.float32
  content = jnp.einsum(
    "...qhd,...khd->...hqk",
    query + jnp.broadcast_to(u.astype(query.dtype), query.shape),
    key,
    preferred_element_type=f32,
  )  # (a) + (c)
  position = jnp.einsum(
    "...qhd,lhd->...hql",
    query + jnp.broadcast_to(v.astype(query.dtype), query.shape),
    rel_keys,
    preferred_element_type=f32,
  )  # (b) + (d) for every distance: [..., H, Tq, L]
  i = jnp.arange(tq)[:, None]
  j = jnp.arange(tk)[None, :]
  index = (i + offset - j) - (offset - (tk - 1))  # distance -> row of rel_keys
  index = jnp.broadcast_to(index, position.shape[:-2] + (tq, tk))
  return content + jnp.take_along_axis(position, index, axis=-1)


def xl_relative_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  rel_keys: jax.Array,
  u: jax.Array,
  v: jax.Array,
  mask: jax.Array | None = None,
  offset: int | None = None,
) -> jax.Array:
  """Attention with Transformer-XL logits: ``softmax(A / sqrt(D)) V`` (float32 softmax).

  Args:
    query, key, rel_keys, u, v, offset: as :func:`xl_relative_logits`.
    value: [..., Tk, H, Dv].
    mask: optional bool broadcastable to [..., H, Tq, Tk].

  Returns:
    [..., Tq, H, Dv].
  """
  _check_qkv(query, key, value)
  logits = xl_relative_logits(query, key, rel_keys, u, v, offset)
  # dot_product_attention adds q.k itself; the bias carries (b) + (c) + (d).
  plain = jnp.einsum("...qhd,...khd->...hqk", query, key, preferred_element_type=jnp.float32)
  scale = query.shape[-1] ** -0.5
  return dot_product_attention(query, key, value, mask, (logits - plain) * scale)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding of ``x [..., T, H, D]`` at ``positions [T]`` (or [..., T]).

  Pairs ``(x_m, x_{m + D/2})`` are rotated by ``positions * base ** (-2m / D)``.
  Computed in float32, returned in ``x``'s dtype.
  """
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 3, "[..., T, H, D]")
  t, d = x.shape[-3], x.shape[-1]
  if d % 2:
    raise ValueError(f"x has head size {d} (shape {x.shape}); RoPE needs an even head size")
  positions = jnp.asarray(positions)
  if positions.shape[-1:] != (t,):
    raise ValueError(
      f"positions must have shape [..., {t}] (T of x {x.shape}), got {positions.shape}"
    )
  freq = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [D / 2]
  angle = (
    positions.astype(jnp.float32)[..., :, None, None] * freq[None, None, :]
  )  # [..., T, 1, D/2]
  angle = jnp.broadcast_to(angle, (*x.shape[:-1], d // 2))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x1, x2 = x[..., : d // 2].astype(jnp.float32), x[..., d // 2 :].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def relative_position_bucket(
  relative_position: jax.Array,
  bidirectional: bool = True,
  num_buckets: int = 32,
  max_distance: int = 128,
) -> jax.Array:
  """T5's bucket of ``relative_position = key_position - query_position`` (int32).

  Bidirectional: half the buckets for keys after the query. Of each half (or of all
  buckets, causal, where keys after the query share bucket 0), the first half are exact
  distances ``0 .. n/2 - 1``; larger distances fall into logarithmic buckets up to
  ``max_distance``, beyond which they share the last bucket.
  """
  num_buckets = _checks.check_size("num_buckets", num_buckets, 2)
  rel = jnp.asarray(relative_position, jnp.int32)
  bucket = jnp.zeros_like(rel)
  n = -rel
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (n < 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  small = n < max_exact
  ratio = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact) / math.log(
    max_distance / max_exact
  )
  large = max_exact + (ratio * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(small, n, large)


class RelativePositionBias(nn.Module):
  """T5's learned relative-position bias: ``bias[h, i, j] = table[bucket(j - i), h]``.

  Attributes:
    num_heads: H.
    num_buckets: table rows.
    max_distance: distance beyond which buckets are shared.
    bidirectional: separate buckets for keys after the query.

  Example:
    >>> bias = RelativePositionBias(num_heads=4)
    >>> b = bias.apply(bias.init(jax.random.key(0), 5, 7), 5, 7)  # [4, 5, 7]
  """

  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128
  bidirectional: bool = True

  @nn.compact
  def __call__(self, num_queries: int, num_keys: int, offset: int | None = None) -> jax.Array:
    """The [H, Tq, Tk] bias; query i sits at key position ``offset + i`` (default Tk - Tq)."""
    table = self.param(
      "table", nn.initializers.normal(0.02), (self.num_buckets, self.num_heads), jnp.float32
    )
    offset = num_keys - num_queries if offset is None else offset
    rel = jnp.arange(num_keys)[None, :] - (jnp.arange(num_queries)[:, None] + offset)
    buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)
    return jnp.moveaxis(table[buckets], -1, 0)


class XLRelativeAttention(nn.Module):
  """Transformer-XL multi-head attention over ``[memory ; x]`` with relative positions.

  Parameters: ``query``, ``key``, ``value`` (no bias, as in the paper), ``rel``
  (``W_kR`` applied to the sinusoidal ``R``), ``u``, ``v`` ``[H, Dh]`` and ``out``.

  Attributes:
    num_heads: H (must divide ``qkv_features``).
    qkv_features: total query / key / value size (default: the input size F).
    out_features: output size (default F).
    causal: query i sees the memory and the current keys ``j <= i``.
    dtype: computation dtype.

  Example:
    >>> layer = XLRelativeAttention(num_heads=2)
    >>> x, mem = jnp.ones((3, 5, 8)), jnp.ones((3, 4, 8))  # [B, T, F], [B, M, F]
    >>> layer.apply(layer.init(jax.random.key(0), x, mem), x, mem).shape
    (3, 5, 8)
  """

  num_heads: int
  qkv_features: int | None = None
  out_features: int | None = None
  causal: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    memory: jax.Array | None = None,
    memory_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
  ) -> jax.Array:
    """Attends ``x`` over ``[memory ; x]``.

    Args:
      x: [..., T, F] the current segment.
      memory: optional [..., M, F] the cached states of earlier segments (no gradient is
        taken into them here; :mod:`memjax.layers.recurrence` stops it).
      memory_mask: optional [..., M] bool, False = an empty memory slot.
      mask: optional bool broadcastable to [..., H, T, M + T] (and-ed with the rest).

    Returns:
      [..., T, out_features].
    """
    _checks.check_floating("x", x)
    _checks.check_min_rank("x", x, 2, "[..., T, F]")
    t, features = x.shape[-2:]
    if memory is None:
      memory = jnp.zeros((*x.shape[:-2], 0, features), x.dtype)
    if memory.shape[:-2] != x.shape[:-2] or memory.shape[-1] != features:
      raise ValueError(
        f"memory must have shape [..., M, {features}] with the batch axes of x {x.shape}, "
        f"got {memory.shape}"
      )
    m = memory.shape[-2]
    if features % 2:
      raise ValueError(
        f"x has {features} features (shape {x.shape}); the sinusoidal relative encoding R "
        "needs an even feature size"
      )
    qkv = self.qkv_features or features
    dh = head_dim(qkv, self.num_heads)
    dense = lambda name: nn.DenseGeneral(
      (self.num_heads, dh), use_bias=False, dtype=self.dtype, name=name
    )
    context = jnp.concatenate([memory.astype(x.dtype), x], axis=-2)
    q, k, v = dense("query")(x), dense("key")(context), dense("value")(context)
    r = sinusoidal_embedding(relative_distances(t, m + t), features)
    rel_keys = dense("rel")(r.astype(x.dtype))
    u = self.param("u", nn.initializers.zeros, (self.num_heads, dh), jnp.float32)
    v_bias = self.param("v", nn.initializers.zeros, (self.num_heads, dh), jnp.float32)
    full = jnp.ones((t, m + t), bool)
    if self.causal:
      full = causal_mask(t, m + t)
    full = jnp.broadcast_to(full, (*x.shape[:-2], 1, t, m + t))
    if memory_mask is not None:
      if memory_mask.shape != memory.shape[:-1] or memory_mask.dtype != jnp.bool_:
        raise ValueError(
          f"memory_mask must be bool of shape {memory.shape[:-1]}, got "
          f"{memory_mask.dtype}{memory_mask.shape}"
        )
      seen = jnp.concatenate([memory_mask, jnp.ones((*x.shape[:-2], t), bool)], axis=-1)
      full = full & seen[..., None, None, :]
    full = and_masks(full, mask)
    out = xl_relative_attention(q, k, v, rel_keys, u, v_bias, full)
    return project_out(self, out, self.out_features or features, False, self.dtype)


__all__ = [
  "sinusoidal_embedding",
  "relative_distances",
  "xl_relative_logits",
  "xl_relative_attention",
  "apply_rope",
  "relative_position_bucket",
  "RelativePositionBias",
  "XLRelativeAttention",
]
