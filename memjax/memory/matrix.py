"""External memory matrix: N rows ``m_i``, read by address or by content, written additively.

The memory is a matrix ``M [N, D]`` whose rows are encodings ``m_i = Encoder(x_i)``.

- Read by address: a hard row index (``M[i]``) or soft address weights ``w [N]``
  (``sum_i w_i m_i``; a one-hot ``w`` is the hard read, differentiably).
- Read by content: ``w = softmax(beta * sim(q, M))``, ``r = sum_i w_i m_i``.
- Additive write at an address: ``m_i <- m_i + lambda * w_i * r`` for a vector ``r``,
  with ``w`` a one-hot row (hard index) or soft weights.

Every read and write is differentiable in the memory, the query, the written vector,
``lambda`` and soft weights; hard indices are not differentiable.

References:
  Weston et al. 2015, "Memory Networks"; Sukhbaatar et al. 2015, "End-To-End Memory
  Networks" (memory of encoded inputs m_i = Encoder(x_i), soft content read).
  Graves et al. 2014, "Neural Turing Machines" (soft address weights, additive writes,
  key strength beta).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.memory._nnx import Layer
from memjax.ops import _checks
from memjax.ops.attention import attention_read
from memjax.ops.similarity import SimilarityFn, get_similarity

Addressing = Literal["ring", "content"]


class MatrixState(NamedTuple):
  """State of a memory matrix (one example; a cell's carry adds ``[*B]``)."""

  memory: jax.Array  # [N, D] rows m_i
  position: jax.Array  # [] int32 number of writes so far (a ring pointer: position % N)


def init_state(
  num_slots: int, slot_size: int, dtype: Any = jnp.float32, init_value: float = 0.0
) -> MatrixState:
  """A memory whose every entry is ``init_value``.

  Args:
    num_slots: N, the number of rows.
    slot_size: D, the row size.
    dtype: floating dtype of the memory.
    init_value: the constant every entry starts at (a small constant, by default 0).

  Returns:
    :class:`MatrixState` with ``memory [N, D]`` and ``position`` 0.
  """
  num_slots = _checks.check_size("num_slots", num_slots)
  slot_size = _checks.check_size("slot_size", slot_size)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  return MatrixState(
    memory=jnp.full((num_slots, slot_size), init_value, dtype),
    position=jnp.zeros((), jnp.int32),
  )


def _check_state(state: MatrixState) -> None:
  _checks.check_rank("state.memory", state.memory, 2, "[N, D] (use jax.vmap for a batch)")


def address_weights(address: jax.ArrayLike, num_slots: int, dtype: Any) -> jax.Array:
  """Turns an address into weights over the rows.

  Args:
    address: an integer row index ``[...]`` (one-hot weights, not differentiable) or
      floating weights ``[..., N]`` (returned as they are).
    num_slots: N.
    dtype: dtype of one-hot weights.

  Returns:
    [..., N] weights.

  Raises:
    ValueError: floating weights whose last axis is not N; TypeError: a bool address.
  """
  address = jnp.asarray(address)
  if jnp.issubdtype(address.dtype, jnp.integer):
    return jax.nn.one_hot(address, num_slots, dtype=dtype)
  if jnp.issubdtype(address.dtype, jnp.floating):
    _checks.check_min_rank("address", address, 1, "[..., N] (soft weights)")
    if address.shape[-1] != num_slots:
      raise ValueError(
        f"address weights have {address.shape[-1]} entries (shape {address.shape}) but "
        f"the memory has {num_slots} rows"
      )
    return address
  raise TypeError(f"address must be an integer index or floating weights, got {address.dtype}")


def read_by_address(state: MatrixState, address: jax.ArrayLike) -> jax.Array:
  """Reads rows by address.

  Args:
    state: the memory.
    address: integer row indices ``[...]`` (a gather; out-of-range indices are clipped;
      the index is not differentiable) or
      floating weights ``[..., N]`` (``sum_i w_i m_i``, differentiable in ``w``).

  Returns:
    [..., D] the read rows.
  """
  _check_state(state)
  address = jnp.asarray(address)
  if jnp.issubdtype(address.dtype, jnp.integer):
    return jnp.take(state.memory, address, axis=0, mode="clip")
  weights = address_weights(address, state.memory.shape[0], state.memory.dtype)
  return jnp.einsum("...n,nd->...d", weights.astype(state.memory.dtype), state.memory)


def read_by_content(
  state: MatrixState,
  query: jax.Array,
  similarity: str | SimilarityFn = "cosine",
  sharpness: jax.ArrayLike = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """Content read ``w = softmax(sharpness * sim(query, M))``, ``r = w M``.

  Args:
    state: the memory.
    query: [..., D] floating queries (an array or array-like).
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    sharpness: beta >= 0, the key strength multiplying the scores (scalar or ``[...]``).

  Returns:
    ``(read [..., D], weights [..., N])``. Differentiable in all float inputs. A row
    holding a NaN or inf is read as an empty row (weight 0, not read); if every row is
    so corrupted the read is NaN (see :func:`memjax.ops.attention_read`).

  Raises:
    ValueError / TypeError: mismatched sizes, non-floating query.
  """
  _check_state(state)
  sim = get_similarity(similarity)
  beta = jnp.asarray(sharpness).astype(state.memory.dtype)
  beta = beta if beta.ndim == 0 else beta[..., None]
  sharpened = lambda q, k: sim(q, k) * beta
  return attention_read(query, state.memory, state.memory, similarity=sharpened)


def read(
  state: MatrixState,
  query: jax.Array,
  similarity: str | SimilarityFn = "cosine",
  sharpness: jax.ArrayLike = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """The family's read (by content, as every family's ``read``): :func:`read_by_content`.

  Args:
    state: the memory.
    query: [..., D] floating queries.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    sharpness: beta >= 0, the key strength.

  Returns:
    ``(read [..., D], weights [..., N])``; read rows by index with
    :func:`read_by_address`.
  """
  return read_by_content(state, query, similarity, sharpness)


def write(
  state: MatrixState,
  vector: jax.Array,
  address: jax.ArrayLike,
  strength: jax.ArrayLike = 1.0,
) -> MatrixState:
  """Additive write ``m_i <- m_i + strength * w_i * vector``.

  Args:
    state: the memory.
    vector: [D] floating vector r (cast to the memory's dtype).
    address: a scalar integer row index or floating weights ``[N]``.
    strength: lambda, a scalar.

  Returns:
    The new state (same structure, shapes and dtypes), ``position`` advanced by one.
    Rows with weight 0 are unchanged (a NaN in ``vector`` reaches only the rows written).
    Differentiable in the memory, ``vector``, ``strength`` and soft weights.

  Raises:
    ValueError / TypeError: wrong rank, mismatched sizes, non-floating vector.
  """
  _check_state(state)
  vector = _checks.as_array("vector", vector)
  _checks.check_floating("vector", vector)
  _checks.check_rank("vector", vector, 1, "[D] (use jax.vmap for a batch)")
  _checks.check_last_dim(
    "vector", vector, state.memory.shape[1], f"state.memory {state.memory.shape}"
  )
  address = jnp.asarray(address)
  _checks.check_rank("address", address, {0, 1}, "(an index [] or weights [N])")
  if jnp.issubdtype(address.dtype, jnp.integer) and address.ndim != 0:
    raise ValueError(f"an integer address must be a scalar row index, got shape {address.shape}")
  strength = jnp.asarray(strength)
  _checks.check_rank("strength", strength, 0, "(a scalar lambda)")
  dtype = state.memory.dtype
  weights = address_weights(address, state.memory.shape[0], dtype).astype(dtype)
  update = strength.astype(dtype) * weights[:, None] * vector.astype(dtype)[None, :]
  # Rows with weight 0 are left exactly as they were: a NaN or inf in the vector must not
  # reach them through 0 * NaN (a hard write would otherwise corrupt every row).
  update = jnp.where(weights[:, None] != 0, update, jnp.zeros((), dtype))
  return MatrixState(memory=state.memory + update, position=state.position + 1)


def reset(
  state: MatrixState, rows: jax.Array | None = None, init_value: float = 0.0
) -> MatrixState:
  """Sets rows back to ``init_value``.

  Args:
    state: the memory.
    rows: optional [N] bool, True = reset that row. None resets every row and sets
      ``position`` to 0; a mask leaves ``position`` unchanged.
    init_value: the constant the rows are reset to.

  Returns:
    The new state (same structure, shapes and dtypes).
  """
  _check_state(state)
  n, d = state.memory.shape
  if rows is None:
    return init_state(n, d, state.memory.dtype, init_value)
  _checks.check_rank("rows", rows, 1, "[N]")
  if jnp.result_type(rows) != jnp.bool_ or rows.shape != (n,):
    raise ValueError(f"rows must be bool of shape ({n},), got {rows.dtype}{rows.shape}")
  fill = jnp.asarray(init_value, state.memory.dtype)
  return MatrixState(jnp.where(rows[:, None], fill, state.memory), state.position)


def _cell_step(
  cell: Any, carry: MatrixState, x: jax.Array, query: Layer, encoder: Layer, strength: jax.Array
) -> tuple[MatrixState, jax.Array]:
  """One step of either cell; ``query``, ``encoder`` its layers, ``strength`` lambda."""
  if cell.addressing not in ("ring", "content"):
    raise ValueError(f"addressing={cell.addressing!r} is not 'ring' or 'content'")
  x_t, _ = _carry.split_input(x, cell.input_size)
  _carry.check_carry_batch(carry, x, {"memory": 2, "position": 0})
  q = query(x_t)
  encoded = encoder(x)
  if encoded.shape != x.shape[:-1] + (cell.slot_size,):
    raise ValueError(
      f"encoder output has shape {encoded.shape}, expected {x.shape[:-1] + (cell.slot_size,)}"
    )

  def one(state, q_, r):
    out, weights = read_by_content(state, q_, cell.similarity, cell.sharpness)
    address = state.position % state.memory.shape[0] if cell.addressing == "ring" else weights
    return write(state, r, address, strength), out

  new, out = _carry.vmap_batch(one, x.ndim - 1)(carry, q, encoded)
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  return new, out


def _initial_carry(cell: Any, rng: jax.Array | None, input_shape: tuple[int, ...]) -> MatrixState:
  state = init_state(cell.num_slots, cell.slot_size, cell.dtype, cell.init_value)
  if cell.init_scale > 0:
    if rng is None:
      raise ValueError(f"init_scale={cell.init_scale} > 0 needs a random key for the carry")
    noise = jax.random.normal(rng, state.memory.shape, cell.dtype) * cell.init_scale
    state = state._replace(memory=state.memory + noise)
  return _carry.broadcast_state(state, tuple(input_shape[:-1]))


class MatrixMemoryCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """Recurrent cell over a memory matrix: content read, then additive write of an encoding.

  The input of one step is ONE array ``x [*B, F]``; its first ``input_size`` features
  are ``x_t`` (all of ``x`` when ``input_size`` is None), the rest ``y_t``. Per step:

    q_t     = W_q x_t                              # learned query [*B, D]
    out_t, w_t = read_by_content(M_t, q_t)        # read BEFORE the write
    r_t     = Encoder(x)                           # encoding of (x_t, y_t) [*B, D]
    M_{t+1} = write(M_t, r_t, a_t, lambda)         # m_i += lambda * a_t[i] * r_t

  with the address ``a_t`` = row ``t mod N`` (``addressing='ring'``: with zero init and
  T <= N the memory rows are ``m_t = lambda * Encoder(x_t)``) or ``a_t = w_t``
  (``addressing='content'``: write where the query read). ``lambda`` is a learned
  scalar. For content addressing, a non-zero ``init_scale`` breaks the symmetry of an
  all-equal memory (every row would otherwise receive the same writes).

  Attributes:
    num_slots: N, rows of the memory.
    slot_size: D, the row size and the output size.
    input_size: features of ``x_t`` at the front of ``x``; None = all of ``x``.
    encoder: a module mapping ``x [*B, F] -> [*B, D]``; None = ``nn.Dense(D)``.
    addressing: ``'ring'`` or ``'content'`` write address.
    similarity: similarity of the content read.
    sharpness: beta, key strength of the content read.
    strength_init: the initial value of the learned write strength lambda.
    init_value: the constant the memory starts at.
    init_scale: if > 0, ``initialize_carry`` adds ``init_scale * normal(rng)`` noise to
      the initial memory (the same for every batch element).
    dtype: dtype of the memory in the carry.
    param_dtype: dtype of the parameters.

  Example:
    >>> cell = MatrixMemoryCell(num_slots=10, slot_size=6, input_size=4)
    >>> x = jnp.ones((3, 10, 4 + 2))               # [B, T, x_t ++ y_t]
    >>> (carry, y), variables = nn.RNN(cell, return_carry=True).init_with_output(
    ...     jax.random.key(0), x)
    >>> y.shape, carry.memory.shape
    ((3, 10, 6), (3, 10, 6))
  """

  num_slots: int
  slot_size: int
  input_size: int | None = None
  encoder: nn.Module | None = None
  addressing: Addressing = "ring"
  similarity: str | SimilarityFn = "scaled_dot"
  sharpness: float = 1.0
  strength_init: float = 1.0
  init_value: float = 0.0
  init_scale: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry: MatrixState, x: jax.Array) -> tuple[MatrixState, jax.Array]:
    """One step.

    Args:
      carry: :class:`MatrixState` with batch axes ``[*B]``.
      x: [*B, F] the step's ``x_t`` features followed by its ``y_t`` features.

    Returns:
      ``(new_carry, read [*B, D])``.
    """
    query = nn.Dense(self.slot_size, name="query", param_dtype=self.param_dtype)
    encoder = self.encoder
    if encoder is None:
      encoder = nn.Dense(self.slot_size, name="encoder", param_dtype=self.param_dtype)
    strength = self.param("strength", lambda _: jnp.asarray(self.strength_init, self.param_dtype))
    return _cell_step(self, carry, x, query, encoder, strength)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> MatrixState:
    """The initial memory with batch axes ``input_shape[:-1]``.

    Args:
      rng: used only when ``init_scale > 0`` (noise of the initial memory).
      input_shape: the shape ``[*B, F]`` of one step's input.

    Returns:
      :class:`MatrixState` with ``memory [*B, N, D]``.
    """
    return _initial_carry(self, rng, input_shape)

  @nn.nowrap
  def to_nnx(
    self,
    in_features: int,
    *,
    rngs: nnx.Rngs | None = None,
    params: Any = None,
    encoder: nnx.Module | None = None,
  ) -> NNXMatrixMemoryCell:
    """The NNX twin (see :meth:`memjax.memory._nnx.HasNNXTwin.to_nnx`).

    Args:
      in_features: F, the size of one step's input.
      rngs: initialises the NNX parameters (default ``nnx.Rngs(0)``).
      params: optional linen parameters of this cell to copy into the NNX cell.
      encoder: the NNX encoder replacing a custom linen ``encoder`` (required when the
        linen cell has one; its parameters must have the same layout to copy ``params``).

    Raises:
      ValueError: the linen cell has a custom encoder and ``encoder`` is None.
    """
    if self.encoder is not None and encoder is None:
      raise ValueError(
        f"this cell's encoder is a linen module ({type(self.encoder).__name__}); pass its "
        "NNX counterpart as to_nnx(..., encoder=...)"
      )
    return super().to_nnx(in_features, rngs=rngs, params=params, encoder=encoder)

  @property
  def num_feature_axes(self) -> int:
    return 1


@_nnx.twin_of(MatrixMemoryCell)
class NNXMatrixMemoryCell(nnx.RNNCellBase):
  """The NNX form of :class:`MatrixMemoryCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN``, ``nnx.scan`` and ``nnx.Bidirectional``. Its layers ``query``
  (``nnx.Linear``, ``x_t -> D``), ``encoder`` (``x -> D``; an ``nnx.Linear`` unless
  given) and the write strength ``strength`` (an ``nnx.Param``) are named as the linen
  cell's, so ``MatrixMemoryCell.to_nnx(in_features, params=...)`` carries trained
  parameters across.

  Args:
    in_features: F, the size of one step's input ``x [*B, F]``.
    num_slots, slot_size, input_size, addressing, similarity, sharpness, strength_init,
      init_value, init_scale, dtype, param_dtype: as :class:`MatrixMemoryCell`.
    encoder: an NNX module ``x [*B, F] -> [*B, D]``; None = ``nnx.Linear(F, D)``.
    rngs: initialises the parameters.

  Example:
    >>> cell = NNXMatrixMemoryCell(6, num_slots=10, slot_size=6, input_size=4,
    ...                            rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((3, 10, 6))).shape
    (3, 10, 6)
  """

  def __init__(
    self,
    in_features: int,
    num_slots: int,
    slot_size: int,
    input_size: int | None = None,
    encoder: nnx.Module | None = None,
    addressing: Addressing = "ring",
    similarity: str | SimilarityFn = "scaled_dot",
    sharpness: float = 1.0,
    strength_init: float = 1.0,
    init_value: float = 0.0,
    init_scale: float = 0.0,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    x_size, _ = _carry.io_sizes(in_features, input_size)
    self.in_features, self.num_slots, self.slot_size = in_features, num_slots, slot_size
    self.input_size, self.addressing, self.similarity = input_size, addressing, similarity
    self.sharpness, self.strength_init = sharpness, strength_init
    self.init_value, self.init_scale = init_value, init_scale
    self.dtype, self.param_dtype = dtype, param_dtype
    self.query = nnx.Linear(x_size, slot_size, param_dtype=param_dtype, rngs=rngs)
    if encoder is None:
      encoder = nnx.Linear(in_features, slot_size, param_dtype=param_dtype, rngs=rngs)
    self.encoder = encoder
    self.strength = nnx.Param(jnp.asarray(strength_init, param_dtype))

  def __call__(self, carry: MatrixState, x: jax.Array) -> tuple[MatrixState, jax.Array]:
    """One step: ``(carry, x [*B, F]) -> (carry, read [*B, D])``."""
    return _cell_step(self, carry, x, self.query, self.encoder, self.strength[...])

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> MatrixState:
    """The initial memory with batch axes ``input_shape[:-1]``.

    ``rngs`` draws the initial noise when ``init_scale > 0`` (``nnx.RNN`` passes its
    carry stream); unused otherwise.
    """
    key = _nnx.carry_key(rngs) if self.init_scale > 0 else None
    return _initial_carry(self, key, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "Addressing",
  "MatrixState",
  "init_state",
  "address_weights",
  "read_by_address",
  "read_by_content",
  "read",
  "write",
  "reset",
  "MatrixMemoryCell",
  "NNXMatrixMemoryCell",
]
