"""Persistent memory: learned key/value vectors concatenated to every attention's keys.

Sukhbaatar et al. 2019 add P learned vectors per head to the keys and values of
self-attention, ``K' = [K_p ; K]``, ``V' = [V_p ; V]``; they act like the weights of
a feed-forward layer inside the attention. The persistent slots carry no position and
are never masked: every query sees them, also under a causal or padding mask.

Two forms share one parameter layout (``query``, ``key``, ``value``, ``out`` dense
layers and ``persistent_keys``, ``persistent_values`` of shape ``[Hd, P, Dh]``):

* :class:`PersistentMemoryAttention`: multi-head attention over a whole sequence
  ``[*B, T, F]``, optionally causal.
* :class:`PersistentMemoryCell`: the same attention one token at a time; its carry is
  a ring cache of the last ``window`` keys and values (:class:`CacheState`). With
  ``window >= T`` it reproduces the causal layer exactly; with a smaller window it is
  sliding-window attention plus the persistent slots.

Initialisation (our choice): persistent keys ~ N(0, 1/Dh), persistent values
~ N(0, 1/P).

References:
  S. Sukhbaatar, E. Grave, G. Lample, H. Jegou, A. Joulin, "Augmenting Self-attention
  with Persistent Memory", arXiv:1907.01470, 2019.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.ops import _checks
from memjax.ops.attention import attention_read


def with_persistent(
  keys: jax.Array,
  values: jax.Array,
  persistent_keys: jax.Array,
  persistent_values: jax.Array,
  mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """Prepends persistent slots: ``[K_p ; K]``, ``[V_p ; V]``, ``[True ; mask]``.

  Args:
    keys: [..., S, K] keys of the inputs.
    values: [..., S, V] values of the inputs.
    persistent_keys: [..., P, K] persistent keys (leading axes broadcast to ``keys``').
    persistent_values: [..., P, V] persistent values.
    mask: optional bool [..., S] (e.g. [..., Q, S]) validity of the input slots.

  Returns:
    ``(keys [..., P + S, K], values [..., P + S, V], mask [..., P + S] or None)``;
    the persistent slots come first and are always valid.

  Raises:
    ValueError / TypeError: mismatched sizes, naming the argument.
  """
  for name, x in (
    ("keys", keys),
    ("values", values),
    ("persistent_keys", persistent_keys),
    ("persistent_values", persistent_values),
  ):
    _checks.check_floating(name, x)
    _checks.check_min_rank(name, x, 2, "[..., slots, features]")
  if keys.shape[:-1] != values.shape[:-1]:
    raise ValueError(f"values {values.shape} must match keys {keys.shape} except the last axis")
  _checks.check_last_dim("persistent_keys", persistent_keys, keys.shape[-1], f"keys {keys.shape}")
  _checks.check_last_dim(
    "persistent_values", persistent_values, values.shape[-1], f"values {values.shape}"
  )
  if persistent_keys.shape[-2] != persistent_values.shape[-2]:
    raise ValueError(
      f"persistent_values has {persistent_values.shape[-2]} slots (shape "
      f"{persistent_values.shape}) but persistent_keys has {persistent_keys.shape[-2]}"
    )
  lead = keys.shape[:-2]
  try:
    pk = jnp.broadcast_to(persistent_keys, (*lead, *persistent_keys.shape[-2:]))
    pv = jnp.broadcast_to(persistent_values, (*lead, *persistent_values.shape[-2:]))
  except ValueError:
    raise ValueError(
      f"persistent_keys {persistent_keys.shape} / persistent_values "
      f"{persistent_values.shape} leading axes do not broadcast to keys {keys.shape}"
    ) from None
  out_keys = jnp.concatenate([pk.astype(keys.dtype), keys], axis=-2)
  out_values = jnp.concatenate([pv.astype(values.dtype), values], axis=-2)
  if mask is None:
    return out_keys, out_values, None
  _checks.check_mask(mask, keys.shape[-2])
  always = jnp.ones((*mask.shape[:-1], persistent_keys.shape[-2]), bool)
  return out_keys, out_values, jnp.concatenate([always, mask], axis=-1)


def persistent_attention(
  query: jax.Array,
  keys: jax.Array,
  values: jax.Array,
  persistent_keys: jax.Array,
  persistent_values: jax.Array,
  mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One head of attention over ``[persistent ; inputs]`` (scaled dot product).

  Args:
    query: [..., K] queries (e.g. [Q, K]).
    keys: [S, K] input keys.
    values: [S, V] input values.
    persistent_keys: [P, K].
    persistent_values: [P, V].
    mask: optional bool [S] or [..., S] (e.g. [Q, S]) validity of the input slots.

  Returns:
    ``(out [..., V], weights [..., P + S])``. Differentiable.
  """
  _checks.check_rank("keys", keys, 2, "[S, K]")
  _checks.check_rank("persistent_keys", persistent_keys, 2, "[P, K]")
  k, v, m = with_persistent(keys, values, persistent_keys, persistent_values, mask)
  return attention_read(query, k, v, mask=m, similarity="scaled_dot")


def causal_mask(length: int, window: int | None = None) -> jax.Array:
  """[T, T] bool: query i sees input j iff ``j <= i`` (and ``i - j < window``)."""
  i = jnp.arange(length)[:, None]
  j = jnp.arange(length)[None, :]
  mask = j <= i
  if window is not None:
    mask = mask & (i - j < window)
  return mask


class CacheState(NamedTuple):
  """Ring cache of the recent keys and values of one example."""

  keys: jax.Array  # [W, Hd, Dh] keys of the last W tokens
  values: jax.Array  # [W, Hd, Dh] values of the last W tokens
  count: jax.Array  # [] int32 tokens written so far (next slot = count mod W)


def init_state(
  window: int, num_heads: int, head_dim: int, dtype: jnp.dtype = jnp.float32
) -> CacheState:
  """An empty cache.

  Args:
    window: number of cached tokens W.
    num_heads: number of heads Hd.
    head_dim: feature size per head Dh.
    dtype: floating dtype.

  Returns:
    :class:`CacheState` of zeros with ``count`` 0.
  """
  window = _checks.check_size("window", window)
  num_heads = _checks.check_size("num_heads", num_heads)
  head_dim = _checks.check_size("head_dim", head_dim)
  zeros = jnp.zeros((window, num_heads, head_dim), dtype)
  return CacheState(zeros, zeros, jnp.zeros((), jnp.int32))


def _check_state(state: CacheState) -> tuple[int, ...]:
  _checks.check_rank("state.keys", state.keys, 3, "[W, Hd, Dh] (one example; vmap for a batch)")
  if state.values.shape != state.keys.shape:
    raise ValueError(f"state.values {state.values.shape} must match state.keys {state.keys.shape}")
  return state.keys.shape


def write(state: CacheState, key: jax.Array, value: jax.Array) -> CacheState:
  """Stores one token's ``key, value [Hd, Dh]`` in slot ``count mod W``.

  Returns:
    The new state (same structure, shapes, dtypes).
  """
  w, heads, dim = _check_state(state)
  for name, x in (("key", key), ("value", value)):
    _checks.check_floating(name, x)
    if x.shape != (heads, dim):
      raise ValueError(f"{name} must have shape ({heads}, {dim}) [Hd, Dh], got {x.shape}")
  slot = state.count % w
  return CacheState(
    state.keys.at[slot].set(key.astype(state.keys.dtype)),
    state.values.at[slot].set(value.astype(state.values.dtype)),
    state.count + 1,
  )


def read(
  state: CacheState,
  query: jax.Array,
  persistent_keys: jax.Array,
  persistent_values: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """Attention of ``query [Hd, Dh]`` over ``[persistent ; cached tokens]``, per head.

  Args:
    state: the cache.
    query: [Hd, Dh].
    persistent_keys: [Hd, P, Dh].
    persistent_values: [Hd, P, Dh].

  Returns:
    ``(out [Hd, Dh], weights [Hd, P + W])``; empty cache slots get weight 0.
  """
  w, heads, dim = _check_state(state)
  _checks.check_floating("query", query)
  if query.shape != (heads, dim):
    raise ValueError(f"query must have shape ({heads}, {dim}) [Hd, Dh], got {query.shape}")
  for name, x in (("persistent_keys", persistent_keys), ("persistent_values", persistent_values)):
    _checks.check_rank(name, x, 3, "[Hd, P, Dh]")
  valid = jnp.arange(w) < jnp.minimum(state.count, w)
  per_head = jax.vmap(persistent_attention, in_axes=(0, 1, 1, 0, 0, None))
  return per_head(query, state.keys, state.values, persistent_keys, persistent_values, valid)


def reset(state: CacheState) -> CacheState:
  """Empties the cache (same structure and dtypes)."""
  return jax.tree.map(jnp.zeros_like, state)


def _head_dim(features: int, num_heads: int, num_persistent: int, qkv_features: int | None) -> int:
  qkv = qkv_features or features
  if qkv % num_heads:
    raise ValueError(f"qkv_features={qkv} must be divisible by num_heads={num_heads}")
  _checks.check_size("num_persistent", num_persistent)
  return qkv // num_heads


def _persistent_init(num_persistent: int, head_dim: int) -> tuple[Any, Any]:
  """Initialisers of the persistent keys and values ``[Hd, P, Dh]``."""
  return (
    nn.initializers.normal(head_dim**-0.5),
    nn.initializers.normal(num_persistent**-0.5),
  )


def _linen_layers(module: nn.Module, features: int) -> tuple[Any, ...]:
  """Creates (inside ``module``'s compact call) the projections and persistent slots."""
  hd, p = module.num_heads, module.num_persistent
  dh = _head_dim(features, hd, p, module.qkv_features)
  dense = lambda name: nn.DenseGeneral((hd, dh), dtype=module.dtype, name=name)
  init_k, init_v = _persistent_init(p, dh)
  pk = module.param("persistent_keys", init_k, (hd, p, dh), module.dtype)
  pv = module.param("persistent_values", init_v, (hd, p, dh), module.dtype)
  out = nn.DenseGeneral(
    module.out_features or features, axis=(-2, -1), dtype=module.dtype, name="out"
  )
  return dense("query"), dense("key"), dense("value"), out, pk, pv


def _nnx_layers(module: nnx.Module, features: int, rngs: nnx.Rngs) -> None:
  """Sets the NNX module's projections and persistent slots (the linen layout)."""
  hd, p, dtype = module.num_heads, module.num_persistent, module.dtype
  dh = _head_dim(features, hd, p, module.qkv_features)
  dense = lambda: nnx.LinearGeneral(features, (hd, dh), dtype=dtype, rngs=rngs)
  module.query, module.key, module.value = dense(), dense(), dense()
  init_k, init_v = _persistent_init(p, dh)
  module.persistent_keys = nnx.Param(init_k(rngs.params(), (hd, p, dh), dtype))
  module.persistent_values = nnx.Param(init_v(rngs.params(), (hd, p, dh), dtype))
  module.out = nnx.LinearGeneral(
    (hd, dh), module.out_features or features, axis=(-2, -1), dtype=dtype, rngs=rngs
  )


def _nnx_layer_tuple(module: nnx.Module) -> tuple[Any, ...]:
  return (
    module.query,
    module.key,
    module.value,
    module.out,
    module.persistent_keys[...],
    module.persistent_values[...],
  )


def _attend(
  cell: Any, x: jax.Array, mask: jax.Array | None, layers: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
  """Either attention layer: ``(y [*B, T, F_out], weights [*B, Hd, T, P + T])``."""
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 2, "[*B, T, F]")
  batch, t = x.shape[:-2], x.shape[-2]
  query, key, value, out_layer, pk, pv = layers
  q, k, v = query(x), key(x), value(x)
  full = causal_mask(t) if cell.causal else jnp.ones((t, t), bool)
  if mask is not None:
    if jnp.result_type(mask) != jnp.bool_:
      raise TypeError(f"mask must be boolean, got {jnp.result_type(mask)}")
    if mask.shape not in ((t, t), (*batch, t, t)):
      raise ValueError(f"mask must have shape {(t, t)} or {(*batch, t, t)}, got {mask.shape}")
    full = jnp.broadcast_to(full, mask.shape) & mask
  full = jnp.broadcast_to(full, (*batch, t, t))
  # [*B, T, Hd, Dh] -> [*B, Hd, T, Dh]; one head of one example at a time.
  heads_first = lambda a: jnp.moveaxis(a, -2, -3)
  per_head = jax.vmap(persistent_attention, in_axes=(0, 0, 0, 0, 0, None))
  per_example = lambda q_, k_, v_, m_: per_head(q_, k_, v_, pk, pv, m_)
  out, weights = _carry.vmap_batch(per_example, len(batch))(
    heads_first(q), heads_first(k), heads_first(v), full
  )
  return out_layer(jnp.moveaxis(out, -3, -2)), weights  # [*B, T, Hd, Dh] -> [*B, T, F_out]


def _cell_step(
  cell: Any, carry: CacheState, x: jax.Array, layers: tuple[Any, ...]
) -> tuple[CacheState, jax.Array]:
  """One token of either cell."""
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 1, "[*B, F]")
  _carry.check_carry_batch(carry, x, {"keys": 3, "values": 3, "count": 0})
  batch = x.shape[:-1]
  query, key, value, out_layer, pk, pv = layers
  q, k, v = query(x), key(x), value(x)
  if carry.keys.shape[-3:] != (cell.window, *k.shape[-2:]):
    raise ValueError(
      f"carry.keys must have shape [*B, {cell.window}, {k.shape[-2]}, {k.shape[-1]}], "
      f"got {carry.keys.shape}; build it with initialize_carry(rng, x.shape)"
    )

  def one(state, q_, k_, v_):
    state = write(state, k_, v_)
    return state, read(state, q_, pk, pv)[0]

  new, out = _carry.vmap_batch(one, len(batch))(carry, q, k, v)
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  return new, out_layer(out)


def _initial_carry(cell: Any, input_shape: tuple[int, ...]) -> CacheState:
  batch, features = tuple(input_shape[:-1]), input_shape[-1]
  qkv = cell.qkv_features or features
  if qkv % cell.num_heads:
    raise ValueError(f"qkv_features={qkv} must be divisible by num_heads={cell.num_heads}")
  state = init_state(cell.window, cell.num_heads, qkv // cell.num_heads, cell.dtype)
  return _carry.broadcast_state(state, batch)


class PersistentMemoryAttention(nn.Module, _nnx.HasNNXTwin):
  """Multi-head self-attention over ``[persistent ; inputs]`` (Sukhbaatar et al. 2019).

  Attributes:
    num_heads: number of heads Hd.
    num_persistent: persistent slots per head P.
    qkv_features: total query/key/value size (default: the input size F).
    out_features: output size (default F).
    causal: query i sees inputs ``j <= i`` (always all persistent slots).
    dtype: computation dtype.

  Example:
    >>> layer = PersistentMemoryAttention(num_heads=2, num_persistent=4, causal=True)
    >>> x = jnp.ones((3, 5, 8))  # [B, T, F]
    >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
    (3, 5, 8)
  """

  num_heads: int
  num_persistent: int
  qkv_features: int | None = None
  out_features: int | None = None
  causal: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, mask: jax.Array | None = None, return_weights: bool = False
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Attends every token to the persistent slots and the (visible) tokens.

    Args:
      x: [*B, T, F] inputs.
      mask: optional bool [T, T] or [*B, T, T]; ``mask[..., i, j]`` = query i may see
        input j. Combined (and) with the causal mask.
      return_weights: also return the attention weights.

    Returns:
      ``y [*B, T, out_features]``, and with ``return_weights`` the weights
      ``[*B, Hd, T, P + T]`` (persistent slots first).
    """
    _checks.check_min_rank("x", x, 2, "[*B, T, F]")
    y, weights = _attend(self, x, mask, _linen_layers(self, x.shape[-1]))
    return (y, weights) if return_weights else y


class PersistentMemoryCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """Causal persistent-memory attention one token at a time, with a ring cache.

  The carry is a :class:`CacheState` of the last ``window`` keys and values; the
  persistent slots are parameters. Each step projects ``x_t``, writes its key and
  value into the cache, then attends from its query over ``[persistent ; cache]``.
  Parameters have the layout of :class:`PersistentMemoryAttention` (so a trained
  layer's params decode token by token).

  Attributes:
    num_heads: number of heads Hd.
    num_persistent: persistent slots per head P.
    window: cached tokens W.
    qkv_features: total query/key/value size (default: the input size F).
    out_features: output size (default F).
    dtype: dtype of the cache and the computation.

  Example:
    >>> cell = PersistentMemoryCell(num_heads=2, num_persistent=4, window=16)
    >>> x = jnp.ones((3, 5, 8))  # [B, T, F]
    >>> rnn = nn.RNN(cell)
    >>> rnn.apply(rnn.init(jax.random.key(0), x), x).shape
    (3, 5, 8)
  """

  num_heads: int
  num_persistent: int
  window: int
  qkv_features: int | None = None
  out_features: int | None = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, carry: CacheState, x: jax.Array) -> tuple[CacheState, jax.Array]:
    """One token.

    Args:
      carry: :class:`CacheState` with ``keys, values [*B, W, Hd, Dh]``, ``count [*B]``.
      x: [*B, F] one token per example.

    Returns:
      ``(carry, y [*B, out_features])``.
    """
    _checks.check_min_rank("x", x, 1, "[*B, F]")
    return _cell_step(self, carry, x, _linen_layers(self, x.shape[-1]))

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> CacheState:
    """An empty cache per example.

    Args:
      rng: unused.
      input_shape: ``(*B, F)``, the shape of one step's ``x``.

    Returns:
      :class:`CacheState` with ``keys, values [*B, W, Hd, Dh]``, ``count [*B]``.
    """
    del rng
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


@_nnx.twin_of(PersistentMemoryAttention)
class NNXPersistentMemoryAttention(nnx.Module):
  """The NNX form of :class:`PersistentMemoryAttention` (same computation and layout).

  Args:
    in_features: F, the input size.
    num_heads, num_persistent, qkv_features, out_features, causal, dtype: as
      :class:`PersistentMemoryAttention`.
    rngs: initialises the projections and the persistent slots.

  Example:
    >>> layer = NNXPersistentMemoryAttention(8, num_heads=2, num_persistent=4,
    ...                                      causal=True, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((3, 5, 8))).shape
    (3, 5, 8)
  """

  def __init__(
    self,
    in_features: int,
    num_heads: int,
    num_persistent: int,
    qkv_features: int | None = None,
    out_features: int | None = None,
    causal: bool = False,
    dtype: jnp.dtype = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    self.in_features = _checks.check_size("in_features", in_features)
    self.num_heads, self.num_persistent = num_heads, num_persistent
    self.qkv_features, self.out_features = qkv_features, out_features
    self.causal, self.dtype = causal, dtype
    _nnx_layers(self, self.in_features, rngs)

  def __call__(
    self, x: jax.Array, mask: jax.Array | None = None, return_weights: bool = False
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """As :meth:`PersistentMemoryAttention.__call__`."""
    y, weights = _attend(self, x, mask, _nnx_layer_tuple(self))
    return (y, weights) if return_weights else y


@_nnx.twin_of(PersistentMemoryCell)
class NNXPersistentMemoryCell(nnx.RNNCellBase):
  """The NNX form of :class:`PersistentMemoryCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN``, ``nnx.scan`` and ``nnx.Bidirectional``; parameters have the
  layout of :class:`NNXPersistentMemoryAttention` (and of the linen cell, so
  ``PersistentMemoryCell.to_nnx(F, params=...)`` carries them across).

  Args:
    in_features: F, the size of one token ``x [*B, F]``.
    num_heads, num_persistent, window, qkv_features, out_features, dtype: as
      :class:`PersistentMemoryCell`.
    rngs: initialises the projections and the persistent slots.

  Example:
    >>> cell = NNXPersistentMemoryCell(8, num_heads=2, num_persistent=4, window=16,
    ...                                rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((3, 5, 8))).shape
    (3, 5, 8)
  """

  def __init__(
    self,
    in_features: int,
    num_heads: int,
    num_persistent: int,
    window: int,
    qkv_features: int | None = None,
    out_features: int | None = None,
    dtype: jnp.dtype = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    self.in_features = _checks.check_size("in_features", in_features)
    self.num_heads, self.num_persistent, self.window = num_heads, num_persistent, window
    self.qkv_features, self.out_features, self.dtype = qkv_features, out_features, dtype
    _nnx_layers(self, self.in_features, rngs)

  def __call__(self, carry: CacheState, x: jax.Array) -> tuple[CacheState, jax.Array]:
    """One token: ``(carry, x [*B, F]) -> (carry, y [*B, out_features])``."""
    return _cell_step(self, carry, x, _nnx_layer_tuple(self))

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> CacheState:
    """An empty cache per example (``rngs`` unused)."""
    del rngs
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "with_persistent",
  "persistent_attention",
  "causal_mask",
  "CacheState",
  "init_state",
  "write",
  "read",
  "reset",
  "PersistentMemoryAttention",
  "PersistentMemoryCell",
  "NNXPersistentMemoryAttention",
  "NNXPersistentMemoryCell",
]
