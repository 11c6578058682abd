"""Gated short-term memory: attention over the last N hidden states, gated into a context.

The memory holds the N most recent hidden states in a ring of slots. At step t, with
``M_{t-1}`` the slots before the write and ``c_{t-1}`` the previous context:

    q_t    = W_q h_t                                   (or h_t without projection)
    r_t    = sum_i softmax_i(q_t . M_{t-1}[i] / sqrt(H)) M_{t-1}[i]   (filled slots only)
    g_t    = sigmoid(W_g [h_t ; c_{t-1}] + b_g)        (a gate per feature, [H])
    c_t    = g_t * r_t + (1 - g_t) * c_{t-1}
    M_t    = M_{t-1} with slot (t mod N) set to h_t    (ring / FIFO write)

The read attends over the *previous* N hidden states (the current one is written
after the read), as in the short attention spans of Daniluk et al. 2017, and the gate
interpolates between the fresh read and the running context, like the gated
composition of the Recurrent Memory Network (Tran et al. 2016). An empty memory reads
zeros, so ``c_0 = 0``.

Write rule: a ring write of ``h_t`` (rather than a learned erase/add write, Graves et
al. 2014) keeps the memory a plain record of recent states: no parameters, no
interference between slots, exact recency, and the attention decides what to use.

References:
  M. Daniluk, T. Rocktaschel, J. Welbl, S. Riedel, "Frustratingly Short Attention
  Spans in Neural Language Modeling", ICLR 2017.
  K. Tran, A. Bisazza, C. Monz, "Recurrent Memory Networks for Language Modeling",
  NAACL 2016.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.memory._nnx import Layer
from memjax.ops import _checks
from memjax.ops.attention import attention_read
from memjax.ops.similarity import SimilarityFn


class GatedState(NamedTuple):
  """State of a gated short-term memory (one example)."""

  slots: jax.Array  # [N, H] the last N hidden states (ring buffer)
  context: jax.Array  # [H] the gated context c_{t-1}
  count: jax.Array  # [] int32 number of writes so far (next slot = count mod N)


def init_state(num_slots: int, size: int, dtype: jnp.dtype = jnp.float32) -> GatedState:
  """An empty memory: zero slots, zero context, count 0.

  Args:
    num_slots: number of slots N.
    size: feature size H of the hidden states.
    dtype: floating dtype.

  Returns:
    :class:`GatedState` with ``slots [N, H]``, ``context [H]``, ``count []``.
  """
  num_slots = _checks.check_size("num_slots", num_slots)
  size = _checks.check_size("size", size)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  return GatedState(
    slots=jnp.zeros((num_slots, size), dtype),
    context=jnp.zeros((size,), dtype),
    count=jnp.zeros((), jnp.int32),
  )


def _check_state(state: GatedState) -> tuple[int, int]:
  _checks.check_rank("state.slots", state.slots, 2, "[N, H] (one example; vmap for a batch)")
  _checks.check_floating("state.slots", state.slots)
  n, h = state.slots.shape
  if jnp.shape(state.context) != (h,):
    raise ValueError(f"state.context must have shape ({h},), got {jnp.shape(state.context)}")
  return n, h


def _check_vector(name: str, x: jax.Array, size: int) -> jax.Array:
  x = _checks.as_array(name, x)
  _checks.check_floating(name, x)
  _checks.check_rank(name, x, 1, "[H]")
  _checks.check_last_dim(name, x, size, "state.slots")
  return x


def filled(state: GatedState) -> jax.Array:
  """[N] bool: which slots hold a written state."""
  n = state.slots.shape[0]
  return jnp.arange(n, dtype=jnp.int32) < jnp.minimum(state.count, n)


def read(
  state: GatedState, query: jax.Array, similarity: str | SimilarityFn = "scaled_dot"
) -> tuple[jax.Array, jax.Array]:
  """Soft attention read over the filled slots.

  Args:
    state: the memory.
    query: [H] query.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.

  Returns:
    ``(read [H], weights [N])``; zeros when no slot is filled. Differentiable.
  """
  _, h = _check_state(state)
  query = _check_vector("query", query, h)
  return attention_read(query, state.slots, state.slots, mask=filled(state), similarity=similarity)


def write(state: GatedState, value: jax.Array) -> GatedState:
  """Ring write: stores ``value`` in slot ``count mod N`` (overwriting the oldest).

  Args:
    state: the memory.
    value: [H] the hidden state to store.

  Returns:
    The new state (same structure, shapes, dtypes); the context is unchanged.
  """
  n, h = _check_state(state)
  value = _check_vector("value", value, h)
  slots = state.slots.at[state.count % n].set(value.astype(state.slots.dtype))
  return GatedState(slots, state.context, state.count + 1)


def fuse(context: jax.Array, read_value: jax.Array, gate: jax.Array) -> jax.Array:
  """The gated context ``gate * read_value + (1 - gate) * context``.

  Args:
    context: [..., H] previous context.
    read_value: [..., H] fresh read.
    gate: [..., H] (or broadcastable by equal rank) values in [0, 1].

  Returns:
    [..., H] new context.
  """
  for name, v in (("context", context), ("read_value", read_value), ("gate", gate)):
    _checks.check_floating(name, v)
  _checks.check_last_dim("read_value", read_value, jnp.shape(context)[-1], "context")
  try:
    shape = jnp.broadcast_shapes(jnp.shape(context), jnp.shape(read_value), jnp.shape(gate))
  except ValueError:
    raise ValueError(
      f"gate {jnp.shape(gate)}, read_value {jnp.shape(read_value)} and context "
      f"{jnp.shape(context)} do not broadcast"
    ) from None
  context, read_value, gate = (jnp.broadcast_to(v, shape) for v in (context, read_value, gate))
  return gate * read_value + (1 - gate) * context


def step(
  state: GatedState,
  hidden: jax.Array,
  gate: jax.Array,
  query: jax.Array | None = None,
  similarity: str | SimilarityFn = "scaled_dot",
) -> tuple[GatedState, jax.Array, jax.Array]:
  """One full step: read with ``query``, fuse with ``gate``, ring-write ``hidden``.

  Args:
    state: the memory.
    hidden: [H] hidden state h_t (written after the read).
    gate: [H] (or []) gate g_t in [0, 1].
    query: [H] read query (default ``hidden``).
    similarity: similarity of the read.

  Returns:
    ``(state, context [H], weights [N])`` with the new context stored in the state.
  """
  _, h = _check_state(state)
  hidden = _check_vector("hidden", hidden, h)
  query = hidden if query is None else query
  read_value, weights = read(state, query, similarity)
  context = fuse(state.context, read_value, gate).astype(state.context.dtype)
  new = write(state._replace(context=context), hidden)
  return new, context, weights


def reset(state: GatedState) -> GatedState:
  """Clears the memory (same structure and dtypes)."""
  return jax.tree.map(jnp.zeros_like, state)


def _cell_step(
  cell: Any, carry: GatedState, x: jax.Array, query: Layer | None, gate: Layer
) -> tuple[GatedState, jax.Array]:
  """One step of either cell; ``query`` (None: query with h_t) and ``gate`` its layers."""
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 1, "[*B, H]")
  batch, h = x.shape[:-1], x.shape[-1]
  want = (*batch, cell.num_slots, h)
  if carry.slots.shape != want:
    raise ValueError(f"carry.slots must have shape {want} for x {x.shape}, got {carry.slots.shape}")
  hidden = x.astype(carry.slots.dtype)
  q = hidden if query is None else query(hidden)
  g = nn.sigmoid(gate(jnp.concatenate([hidden, carry.context], axis=-1)))
  fn = lambda s, hh, g_, q_: step(s, hh, g_, q_, cell.similarity)[:2]
  new, context = _carry.vmap_batch(fn, len(batch))(
    carry, hidden, g.astype(hidden.dtype), q.astype(hidden.dtype)
  )
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  y = hidden + context if cell.residual else context
  return new, y


def _initial_carry(cell: Any, input_shape: tuple[int, ...]) -> GatedState:
  batch, h = tuple(input_shape[:-1]), input_shape[-1]
  return _carry.broadcast_state(init_state(cell.num_slots, h, cell.dtype), batch)


class GatedMemoryCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """Gated short-term memory over the last ``num_slots`` hidden states.

  ``x_t`` is the hidden state ``h_t [*B, H]`` of some recurrent or feed-forward model;
  the output is the gated context ``c_t [*B, H]`` (``h_t + c_t`` with
  ``residual=True``). Parameters: ``query`` (``W_q``, without bias; absent when
  ``project_query=False``) and ``gate`` (``W_g``, ``b_g``; input ``[h_t ; c_{t-1}]``).
  See the module docstring for the equations.

  Attributes:
    num_slots: number of remembered hidden states N.
    similarity: similarity of the attention read.
    project_query: learn ``W_q`` (True) or query with ``h_t`` itself.
    residual: output ``h_t + c_t`` instead of ``c_t``.
    dtype: dtype of the memory.

  Example:
    >>> cell = GatedMemoryCell(num_slots=8)
    >>> h = jnp.ones((2, 5, 16))  # [B, T, H]
    >>> params = nn.RNN(cell).init(jax.random.key(0), h)
    >>> nn.RNN(cell).apply(params, h).shape
    (2, 5, 16)
  """

  num_slots: int
  similarity: str | SimilarityFn = "scaled_dot"
  project_query: bool = True
  residual: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, carry: GatedState, x: jax.Array) -> tuple[GatedState, jax.Array]:
    """One step.

    Args:
      carry: :class:`GatedState` with ``slots [*B, N, H]``, ``context [*B, H]``,
        ``count [*B]``.
      x: [*B, H] hidden state h_t.

    Returns:
      ``(carry, y [*B, H])``.
    """
    h = x.shape[-1] if x.ndim else 0
    query = None
    if self.project_query:
      query = nn.Dense(h, use_bias=False, dtype=self.dtype, name="query")
    gate = nn.Dense(h, dtype=self.dtype, name="gate")
    return _cell_step(self, carry, x, query, gate)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> GatedState:
    """An empty memory per example.

    Args:
      rng: unused (the memory starts at zero).
      input_shape: ``(*B, H)``, the shape of one step's ``x``.

    Returns:
      :class:`GatedState` with ``slots [*B, N, H]``, ``context [*B, H]``, ``count [*B]``.
    """
    del rng
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


class GatedMemoryLayer(nn.Module):
  """:class:`GatedMemoryCell` scanned over a sequence: ``[*B, T, H] -> [*B, T, H]``.

  Attributes: as :class:`GatedMemoryCell`. Parameters live under ``rnn/cell``.

  Example:
    >>> layer = GatedMemoryLayer(num_slots=4)
    >>> h = jnp.ones((2, 7, 8))
    >>> y = layer.apply(layer.init(jax.random.key(0), h), h)  # [2, 7, 8]
  """

  num_slots: int
  similarity: str | SimilarityFn = "scaled_dot"
  project_query: bool = True
  residual: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    hidden: jax.Array,
    initial_carry: GatedState | None = None,
    return_carry: bool = False,
  ) -> jax.Array | tuple[GatedState, jax.Array]:
    """Runs the cell over the time axis.

    Args:
      hidden: [*B, T, H] hidden states.
      initial_carry: optional :class:`GatedState` (batched) to continue from.
      return_carry: also return the final carry.

    Returns:
      ``y [*B, T, H]``, or ``(carry, y)`` with ``return_carry=True``.
    """
    _checks.check_min_rank("hidden", hidden, 2, "[*B, T, H]")
    cell = GatedMemoryCell(
      self.num_slots, self.similarity, self.project_query, self.residual, self.dtype, parent=None
    )
    rnn = nn.RNN(cell, return_carry=return_carry, name="rnn")
    return rnn(hidden, initial_carry=initial_carry)


@_nnx.twin_of(GatedMemoryCell)
class NNXGatedMemoryCell(nnx.RNNCellBase):
  """The NNX form of :class:`GatedMemoryCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN`` (which is the NNX form of :class:`GatedMemoryLayer`),
  ``nnx.scan`` and ``nnx.Bidirectional``. Its ``nnx.Linear`` layers ``query`` (``W_q``,
  no bias; absent when ``project_query=False``) and ``gate`` (``[h ; c] -> H``) are named
  as the linen cell's, so ``GatedMemoryCell.to_nnx(H, params=...)`` carries trained
  parameters across.

  Args:
    in_features: H, the size of the hidden states ``x [*B, H]``.
    num_slots, similarity, project_query, residual, dtype: as :class:`GatedMemoryCell`.
    rngs: initialises the layers.

  Example:
    >>> cell = NNXGatedMemoryCell(16, num_slots=8, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 16))).shape
    (2, 5, 16)
  """

  def __init__(
    self,
    in_features: int,
    num_slots: int,
    similarity: str | SimilarityFn = "scaled_dot",
    project_query: bool = True,
    residual: bool = False,
    dtype: jnp.dtype = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    h = _checks.check_size("in_features", in_features)
    self.in_features, self.num_slots, self.similarity = h, num_slots, similarity
    self.project_query, self.residual, self.dtype = project_query, residual, dtype
    self.query = nnx.Linear(h, h, use_bias=False, dtype=dtype, rngs=rngs) if project_query else None
    self.gate = nnx.Linear(2 * h, h, dtype=dtype, rngs=rngs)

  def __call__(self, carry: GatedState, x: jax.Array) -> tuple[GatedState, jax.Array]:
    """One step: ``(carry, h_t [*B, H]) -> (carry, y [*B, H])``."""
    return _cell_step(self, carry, x, self.query, self.gate)

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> GatedState:
    """An empty memory per example (``rngs`` unused)."""
    del rngs
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "GatedState",
  "init_state",
  "filled",
  "read",
  "write",
  "fuse",
  "step",
  "reset",
  "GatedMemoryCell",
  "GatedMemoryLayer",
  "NNXGatedMemoryCell",
]
