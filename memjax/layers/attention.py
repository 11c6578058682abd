"""Multi-head dot-product attention with a bf16-safe softmax.

The pure core is :func:`dot_product_attention` over per-head arrays in Flax's layout
``[..., T, H, D]`` (batch axes first, then time, heads, features):

    logits = (q . k) * scale + bias           # float32, whatever the input dtype
    weights = softmax(logits) over the visible keys (mask), 0 for a row with none
    out = dropout(weights) . v                # [..., Tq, H, Dv], in the inputs' dtype

The logits and the softmax are accumulated in float32 for bf16 / f16 inputs (the
``exp`` of a bf16 logit loses most of its bits), and a query that sees no key (a fully
masked row) reads zeros, never NaN, with zero gradients. :class:`MultiHeadAttention`
adds the query / key / value / output projections around it.

References:
  A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.attention import masked_softmax


def _check_qkv(query: jax.Array, key: jax.Array, value: jax.Array) -> None:
  for name, x in (("query", query), ("key", key), ("value", value)):
    _checks.check_floating(name, x)
    _checks.check_min_rank(name, x, 3, "[..., T, H, D]")
  if query.shape[-1] != key.shape[-1] or query.shape[-2] != key.shape[-2]:
    raise ValueError(
      f"query {query.shape} and key {key.shape} must have the same heads and head size "
      "(last two axes [H, D])"
    )
  if key.shape[:-1] != value.shape[:-1]:
    raise ValueError(
      f"value {value.shape} must match key {key.shape} on every axis but the last [..., Tk, H]"
    )
  if query.shape[:-3] != key.shape[:-3]:
    raise ValueError(f"query {query.shape} and key {key.shape} must have the same batch axes [...]")


def _broadcast_to_logits(name: str, x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  try:
    return jnp.broadcast_to(x, shape)
  except ValueError:
    raise ValueError(
      f"{name} of shape {jnp.shape(x)} does not broadcast to the logits [..., H, Tq, Tk] = {shape}"
    ) from None


def attention_weights(
  query: jax.Array,
  key: jax.Array,
  mask: jax.Array | None = None,
  bias: jax.Array | None = None,
  scale: float | None = None,
) -> jax.Array:
  """Softmax attention weights, computed in float32.

  Args:
    query: [..., Tq, H, D] queries.
    key: [..., Tk, H, D] keys.
    mask: optional bool broadcastable to [..., H, Tq, Tk]; True = the query sees the key.
    bias: optional float broadcastable to [..., H, Tq, Tk], added to the scaled logits.
    scale: logit scale (default ``D ** -0.5``).

  Returns:
    [..., H, Tq, Tk] float32 weights; a row with no visible key is all zeros.
  """
  d = query.shape[-1]
  scale = d**-0.5 if scale is None else scale
  logits = jnp.einsum("...qhd,...khd->...hqk", query, key, preferred_element_type=jnp.float32)
  logits = logits * jnp.float32(scale)
  if bias is not None:
    _checks.check_floating("bias", bias)
    logits = logits + _broadcast_to_logits("bias", bias, logits.shape).astype(jnp.float32)
  if mask is not None:
    mask = _checks.as_array("mask", mask)
    if jnp.result_type(mask) != jnp.bool_:
      raise TypeError(f"mask must be boolean, got {jnp.result_type(mask)}")
    mask = _broadcast_to_logits("mask", mask, logits.shape)
  return masked_softmax(logits, mask)


def dot_product_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  mask: jax.Array | None = None,
  bias: jax.Array | None = None,
  dropout_rate: float = 0.0,
  dropout_rng: jax.Array | None = None,
  deterministic: bool = True,
  scale: float | None = None,
  return_weights: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Scaled dot-product attention of every head: ``softmax(q k^T * scale + bias) v``.

  Args:
    query: [..., Tq, H, D] queries.
    key: [..., Tk, H, D] keys.
    value: [..., Tk, H, Dv] values.
    mask: optional bool broadcastable to [..., H, Tq, Tk]; True = the query sees the key.
      A query that sees no key reads zeros.
    bias: optional float broadcastable to [..., H, Tq, Tk] added to the logits (a
      relative-position bias, ALiBi, ...).
    dropout_rate: probability of dropping an attention weight (inverted dropout).
    dropout_rng: PRNG key, needed when ``dropout_rate > 0`` and not ``deterministic``.
    deterministic: no dropout.
    scale: logit scale (default ``D ** -0.5``).
    return_weights: also return the (pre-dropout) float32 weights [..., H, Tq, Tk].

  Returns:
    [..., Tq, H, Dv] in ``result_type(query, key, value)`` (and the weights).

  Raises:
    ValueError / TypeError: mismatched shapes, a non-boolean mask, a missing dropout rng.

  Example:
    >>> q = k = v = jnp.ones((2, 5, 4, 8))  # [B, T, H, D]
    >>> dot_product_attention(q, k, v, mask=causal_mask(5, 5)).shape
    (2, 5, 4, 8)
  """
  _check_qkv(query, key, value)
  weights = attention_weights(query, key, mask, bias, scale)
  used = weights
  if not deterministic and dropout_rate > 0.0:
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1)")
    if dropout_rng is None:
      raise ValueError("dropout_rng is required when dropout_rate > 0 and not deterministic")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    used = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  out_dtype = jnp.result_type(query, key, value)
  out = jnp.einsum(
    "...hqk,...khd->...qhd", used, value.astype(jnp.float32), preferred_element_type=jnp.float32
  ).astype(out_dtype)
  return (out, weights) if return_weights else out


def causal_mask(num_queries: int, num_keys: int, offset: int | None = None) -> jax.Array:
  """[Tq, Tk] bool: query i (at position ``offset + i``) sees key j iff ``j <= offset + i``.

  Args:
    num_queries: Tq.
    num_keys: Tk.
    offset: position of the first query among the keys; default ``Tk - Tq`` (the queries
      are the last Tq keys, e.g. ``[memory ; current]``).
  """
  offset = num_keys - num_queries if offset is None else offset
  i = jnp.arange(num_queries)[:, None] + offset
  j = jnp.arange(num_keys)[None, :]
  return j <= i


def and_masks(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
  """``a & b`` of two bool masks of any broadcastable shapes (None = all True)."""
  if a is None or b is None:
    return b if a is None else a
  a, b = _checks.as_array("mask", a), _checks.as_array("mask", b)
  for m in (a, b):
    if jnp.result_type(m) != jnp.bool_:
      raise TypeError(f"mask must be boolean, got {jnp.result_type(m)}")
  try:
    shape = jnp.broadcast_shapes(a.shape, b.shape)
  except ValueError:
    raise ValueError(f"masks of shapes {a.shape} and {b.shape} do not broadcast") from None
  return jnp.broadcast_to(a, shape) & jnp.broadcast_to(b, shape)


def head_dim(features: int, num_heads: int, name: str = "qkv_features") -> int:
  """``features // num_heads``; raises ValueError naming both when it does not divide."""
  _checks.check_size("num_heads", num_heads)
  _checks.check_size(name, features)
  if features % num_heads:
    raise ValueError(f"{name}={features} must be divisible by num_heads={num_heads}")
  return features // num_heads


def project_qkv(
  module: nn.Module,
  x: jax.Array,
  context: jax.Array,
  num_heads: int,
  qkv_features: int | None,
  use_bias: bool = True,
  dtype: Any = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Inside a compact ``module``: ``query [..., Tq, H, Dh]`` from ``x``, ``key``,
  ``value [..., Tk, H, Dh]`` from ``context`` (DenseGeneral layers named ``query``,
  ``key``, ``value``). ``qkv_features`` defaults to ``x.shape[-1]``."""
  qkv = qkv_features or x.shape[-1]
  dh = head_dim(qkv, num_heads)
  dense = lambda name: nn.DenseGeneral((num_heads, dh), use_bias=use_bias, dtype=dtype, name=name)
  return dense("query")(x), dense("key")(context), dense("value")(context)


def project_out(
  module: nn.Module, out: jax.Array, features: int, use_bias: bool = True, dtype: Any = None
) -> jax.Array:
  """Inside a compact ``module``: ``[..., T, H, Dh] -> [..., T, features]`` (layer ``out``)."""
  return nn.DenseGeneral(features, axis=(-2, -1), use_bias=use_bias, dtype=dtype, name="out")(out)


class MultiHeadAttention(nn.Module):
  """Multi-head attention with learned projections (self- or cross-attention).

  Attributes:
    num_heads: number of heads H.
    qkv_features: total query / key / value size (default: the input size F); must be
      divisible by ``num_heads``.
    out_features: output size (default F).
    causal: query i sees keys ``j <= i + Tk - Tq``.
    dropout_rate: attention-weight dropout (needs a ``'dropout'`` rng when not
      deterministic).
    use_bias: biases in the projections.
    dtype: computation dtype (the softmax is float32 regardless).

  Example:
    >>> layer = MultiHeadAttention(num_heads=2, causal=True)
    >>> x = jnp.ones((3, 5, 8))  # [B, T, F]
    >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
    (3, 5, 8)
  """

  num_heads: int
  qkv_features: int | None = None
  out_features: int | None = None
  causal: bool = False
  dropout_rate: float = 0.0
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    context: jax.Array | None = None,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    deterministic: bool = True,
  ) -> jax.Array:
    """Attends the tokens of ``x`` to those of ``context`` (default ``x``).

    Args:
      x: [..., Tq, F] queries' inputs.
      context: [..., Tk, F'] keys' and values' inputs (default ``x``).
      mask: optional bool broadcastable to [..., H, Tq, Tk] (and-ed with the causal mask).
      bias: optional float broadcastable to [..., H, Tq, Tk].
      deterministic: no dropout.

    Returns:
      [..., Tq, out_features].
    """
    _checks.check_floating("x", x)
    _checks.check_min_rank("x", x, 2, "[..., T, F]")
    context = x if context is None else context
    _checks.check_min_rank("context", context, 2, "[..., T, F]")
    features = x.shape[-1]
    q, k, v = project_qkv(
      self, x, context, self.num_heads, self.qkv_features, self.use_bias, self.dtype
    )
    if self.causal:
      mask = and_masks(mask, causal_mask(x.shape[-2], context.shape[-2]))
    rng = None
    if not deterministic and self.dropout_rate > 0.0:
      rng = self.make_rng("dropout")
    out = dot_product_attention(
      q, k, v, mask, bias, self.dropout_rate, rng, deterministic or self.dropout_rate == 0.0
    )
    return project_out(self, out, self.out_features or features, self.use_bias, self.dtype)


__all__ = [
  "attention_weights",
  "dot_product_attention",
  "causal_mask",
  "and_masks",
  "head_dim",
  "project_qkv",
  "project_out",
  "MultiHeadAttention",
]
