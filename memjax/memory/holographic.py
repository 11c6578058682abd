"""Holographic associative memory: key-value pairs superposed in one HRR trace.

The whole memory is one vector ``trace [D]``: ``write`` adds ``w * bind(key, value)``,
``read`` unbinds with the key (circular correlation) and returns a noisy value, and
``read_cleanup`` snaps it to the nearest item of a codebook. Capacity grows linearly
with D (see ``benchmarks/hrr_capacity.py``); the noise of a read grows like
``sqrt(count / D)``.

Every pair is superposed in the one trace, so a NaN or inf in a written key, value or
weight makes the whole trace, and every later read, non-finite (writes are not checked;
:func:`read_cleanup` then returns codebook item 0 with a NaN score, as
:func:`memjax.ops.argmax_read` does when every score is NaN).

References:
  T. A. Plate, "Holographic reduced representations", IEEE Transactions on Neural
  Networks 6(3), 1995.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.memory import _carry, _nnx
from memjax.memory._nnx import Layer
from memjax.ops import _checks, hrr
from memjax.ops.retrieval import Retrieval


class HRRState(NamedTuple):
  """State of a holographic memory (one example)."""

  trace: jax.Array  # [D] superposition of bound key-value pairs
  count: jax.Array  # [] int32 number of writes


def init_state(dim: int, dtype: jnp.dtype = jnp.float32) -> HRRState:
  """An empty memory: a zero trace and count 0.

  Args:
    dim: dimension D of keys, values and trace.
    dtype: floating dtype of the trace.

  Returns:
    :class:`HRRState` with ``trace [D]`` zeros and ``count`` 0.
  """
  dim = _checks.check_size("dim", dim)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  return HRRState(trace=jnp.zeros((dim,), dtype), count=jnp.zeros((), jnp.int32))


def _check_state(state: HRRState) -> int:
  _checks.check_rank("state.trace", state.trace, 1, "[D] (one example; vmap for a batch)")
  _checks.check_floating("state.trace", state.trace)
  return state.trace.shape[0]


def _check_vector(name: str, x: jax.Array, dim: int) -> jax.Array:
  x = _checks.as_array(name, x)
  _checks.check_floating(name, x)
  _checks.check_rank(name, x, 1, "[D]")
  _checks.check_last_dim(name, x, dim, "state.trace")
  return x


def write(
  state: HRRState, key: jax.Array, value: jax.Array, weight: jax.typing.ArrayLike = 1.0
) -> HRRState:
  """Adds ``weight * bind(key, value)`` to the trace.

  Args:
    state: the memory.
    key: [D] key.
    value: [D] value.
    weight: [] scale of the pair (0 = no write; a gate in a cell).

  Returns:
    The new state, same structure, shapes and dtypes.
  """
  dim = _check_state(state)
  key = _check_vector("key", key, dim)
  value = _check_vector("value", value, dim)
  _checks.check_rank("weight", weight, 0, "[] (a scalar)")
  bound = hrr.bind(key, value).astype(state.trace.dtype)
  w = jnp.asarray(weight, state.trace.dtype)
  increment = (w != 0).astype(jnp.int32)
  return HRRState(state.trace + w * bound, state.count + increment)


def read(state: HRRState, key: jax.Array) -> jax.Array:
  """Decodes the value bound to ``key``: ``unbind(trace, key)``.

  Args:
    state: the memory.
    key: [D] key.

  Returns:
    [D] noisy value (differentiable in trace and key).
  """
  dim = _check_state(state)
  key = _check_vector("key", key, dim)
  return hrr.unbind(state.trace, key).astype(state.trace.dtype)


def read_cleanup(
  state: HRRState, key: jax.Array, codebook: jax.Array, similarity: str = "cosine"
) -> Retrieval:
  """Decodes the value bound to ``key`` and snaps it to the nearest codebook item.

  Args:
    state: the memory.
    key: [D] key.
    codebook: [M, D] candidate values.
    similarity: similarity of the cleanup search (default cosine).

  Returns:
    :class:`~memjax.ops.Retrieval` with ``values [D]``, ``indices []``, ``scores []``.
    The choice of item is not differentiable.
  """
  return hrr.cleanup(read(state, key), codebook, similarity=similarity)


def reset(state: HRRState) -> HRRState:
  """Clears the memory (same structure and dtypes)."""
  return HRRState(jnp.zeros_like(state.trace), jnp.zeros_like(state.count))


def _normalize(x: jax.Array, eps: float) -> jax.Array:
  # rsqrt(|x|^2 + eps) keeps the gradient finite at x = 0 (norm() would give NaN).
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def _cell_step(
  cell: Any, carry: HRRState, x: jax.Array, layers: tuple[Layer, Layer, Layer, Layer] | None
) -> tuple[HRRState, jax.Array]:
  """One step of either cell; ``layers`` = (key, value, query, gate), None if not learned."""
  _checks.check_floating("x", x)
  _checks.check_min_rank("x", x, 1, "[*B, F]")
  batch = x.shape[:-1]
  if carry.trace.shape != (*batch, cell.dim):
    raise ValueError(
      f"carry.trace must have shape {(*batch, cell.dim)} for x {x.shape}, got {carry.trace.shape}"
    )
  if layers is not None:
    key_layer, value_layer, query_layer, gate_layer = layers
    key, value, query = key_layer(x), value_layer(x), query_layer(x)
    gate = nn.sigmoid(gate_layer(x))[..., 0]
  else:
    if x.shape[-1] != 3 * cell.dim:
      raise ValueError(
        f"x must have {3 * cell.dim} features ([key ; value ; query], 3 * dim) when "
        f"learned=False, got shape {x.shape}"
      )
    key, value, query = jnp.split(x, 3, axis=-1)
    gate = jnp.ones(batch, x.dtype)
  key, query = _normalize(key, cell.eps), _normalize(query, cell.eps)
  cast = lambda a: a.astype(carry.trace.dtype)
  new = _carry.vmap_batch(write, len(batch))(carry, cast(key), cast(value), cast(gate))
  _carry.check_carry_kept(type(cell).__name__, carry, new)
  y = _carry.vmap_batch(read, len(batch))(new, cast(query))
  return new, y


def _initial_carry(cell: Any, input_shape: tuple[int, ...]) -> HRRState:
  return _carry.broadcast_state(init_state(cell.dim, cell.dtype), tuple(input_shape[:-1]))


class HolographicCell(nn.RNNCellBase, _nnx.HasNNXTwin):
  """A recurrent cell whose carry is a holographic memory.

  Each step maps ``x_t [*B, F]`` to a key, a value and a query of size ``dim`` and a
  write gate, writes ``g_t * bind(k_t, v_t)`` and then reads ``unbind(trace, q_t)``:

      k_t = normalize(W_k x_t),  v_t = W_v x_t,  q_t = normalize(W_q x_t)
      g_t = sigmoid(w_g . x_t + b_g)
      trace_t = trace_{t-1} + g_t * (k_t (*) v_t),   y_t = q_t* (*) trace_t

  Keys and queries are L2-normalised (``x / sqrt(|x|^2 + eps)``; unbinding assumes
  unit-norm keys). With
  ``learned=False`` there are no parameters: ``x_t`` must be ``[key ; value ; query]``
  of size ``3 * dim`` and the gate is 1.

  Attributes:
    dim: HRR dimension D.
    learned: learn the projections and gate (True) or split ``x`` (False).
    dtype: dtype of the trace.

  Example:
    >>> cell = HolographicCell(dim=64, learned=False)
    >>> k, v = hrr.random_vectors(jax.random.key(0), 2, 64)
    >>> x = jnp.stack([jnp.concatenate([k, v, k])] * 3)[None]  # [B=1, T=3, 192]
    >>> y = nn.RNN(cell).apply({}, x)  # [1, 3, 64], y[0, t] ~ (t + 1) * v
  """

  dim: int
  learned: bool = True
  dtype: jnp.dtype = jnp.float32
  eps: float = 1e-6

  @nn.compact
  def __call__(self, carry: HRRState, x: jax.Array) -> tuple[HRRState, jax.Array]:
    """One step.

    Args:
      carry: :class:`HRRState` with ``trace [*B, D]``, ``count [*B]``.
      x: [*B, F] input (``F = 3 * dim`` when ``learned=False``).

    Returns:
      ``(carry, y [*B, D])``.
    """
    layers = None
    if self.learned:
      dense = lambda name: nn.Dense(self.dim, use_bias=False, dtype=self.dtype, name=name)
      gate = nn.Dense(1, dtype=self.dtype, name="gate")
      layers = dense("key"), dense("value"), dense("query"), gate
    return _cell_step(self, carry, x, layers)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> HRRState:
    """An empty memory per example.

    Args:
      rng: unused (the memory starts at zero).
      input_shape: ``(*B, F)``, the shape of one step's ``x``.

    Returns:
      :class:`HRRState` with ``trace [*B, D]`` and ``count [*B]``.
    """
    del rng
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


@_nnx.twin_of(HolographicCell)
class NNXHolographicCell(nnx.RNNCellBase):
  """The NNX form of :class:`HolographicCell`: same step, parameters held by NNX.

  Runs under ``nnx.RNN``, ``nnx.scan`` and ``nnx.Bidirectional``. With ``learned=True``
  its ``nnx.Linear`` layers ``key``, ``value``, ``query`` (``F -> D``, no bias) and
  ``gate`` (``F -> 1``) are named as the linen cell's, so
  ``HolographicCell.to_nnx(F, params=...)`` carries trained parameters across; with
  ``learned=False`` it has no parameters.

  Args:
    in_features: F, the size of one step's input ``x [*B, F]``.
    dim, learned, dtype, eps: as :class:`HolographicCell`.
    rngs: initialises the layers.

  Example:
    >>> cell = NNXHolographicCell(12, dim=64, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((1, 3, 12))).shape
    (1, 3, 64)
  """

  def __init__(
    self,
    in_features: int,
    dim: int,
    learned: bool = True,
    dtype: jnp.dtype = jnp.float32,
    eps: float = 1e-6,
    *,
    rngs: nnx.Rngs,
  ):
    f = _checks.check_size("in_features", in_features)
    self.in_features, self.dim, self.learned, self.dtype, self.eps = f, dim, learned, dtype, eps
    if learned:
      linear = lambda: nnx.Linear(f, dim, use_bias=False, dtype=dtype, rngs=rngs)
      self.key, self.value, self.query = linear(), linear(), linear()
      self.gate = nnx.Linear(f, 1, dtype=dtype, rngs=rngs)
    else:
      self.key = self.value = self.query = self.gate = None

  def __call__(self, carry: HRRState, x: jax.Array) -> tuple[HRRState, jax.Array]:
    """One step: ``(carry, x [*B, F]) -> (carry, y [*B, D])``."""
    layers = (self.key, self.value, self.query, self.gate) if self.learned else None
    return _cell_step(self, carry, x, layers)

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> HRRState:
    """An empty memory per example (``rngs`` unused)."""
    del rngs
    return _initial_carry(self, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return 1


__all__ = [
  "HRRState",
  "init_state",
  "write",
  "read",
  "read_cleanup",
  "reset",
  "HolographicCell",
  "NNXHolographicCell",
]
