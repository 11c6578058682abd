"""Neural Turing Machine addressing: content, interpolation, circular shift, sharpening.

Each step of the NTM's addressing pipeline (Graves et al. 2014, section 3.3) is a small
pure function over weightings of ONE head, ``[N]`` over the N memory slots (leading axes
``[...]`` broadcast, so several heads can be addressed at once):

    w_c = content_weights(memory, key, beta)          # softmax(beta * cos(key, M_i))
    w_g = interpolate(w_c, w_prev, g)                 # g w_c + (1 - g) w_prev
    w_s = circular_shift(w_g, shift)                  # sum_j w_g(j) s(i - j mod N)
    w   = sharpen(w_s, gamma)                         # w_s^gamma / sum w_s^gamma
    w   = address(memory, key, beta, g, shift, gamma, w_prev)   # all four

Constrained parameters (``beta >= 0``, ``g`` in [0, 1], ``shift`` a distribution,
``gamma >= 1``) are taken as given; the NTM cell maps raw controller outputs to them.

References:
  Graves, Wayne, Danihelka 2014, "Neural Turing Machines", arXiv:1410.5401.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.similarity import _safe_norm, dot

_EPS = 1e-6


def _check_weights(name: str, w: jax.Array) -> None:
  _checks.check_floating(name, w)
  _checks.check_min_rank(name, w, 1, "[..., N]")


def _check_param(name: str, p: jax.Array, batch: tuple[int, ...]) -> None:
  """A per-head scalar parameter: shape ``batch`` or ``batch + (1,)``."""
  _checks.check_floating(name, p)
  shape = jnp.shape(p)
  if shape != batch and shape != batch + (1,):
    raise ValueError(
      f"{name} must have shape {batch} (one value per weighting) or {batch + (1,)}, got {shape}"
    )


def _as_column(p: jax.Array, batch: tuple[int, ...]) -> jax.Array:
  return jnp.reshape(p, batch + (1,))


def content_weights(
  memory: jax.Array, key: jax.Array, beta: jax.Array, eps: float = _EPS
) -> jax.Array:
  """Content addressing ``w_c(i) = softmax_i(beta * cos(key, memory[i]))``.

  Args:
    memory: [N, W] memory matrix.
    key: [..., W] keys (one per head).
    beta: [...] or [..., 1] key strengths (>= 0; 0 gives uniform weights).
    eps: added to the norms in the cosine, so a zero key or an empty slot gives 0.

  Returns:
    [..., N] weightings (each sums to 1).

  Raises:
    ValueError / TypeError: mismatched shapes or non-floating inputs (naming the argument).
  """
  _checks.check_floating("memory", memory)
  _checks.check_rank("memory", memory, 2, "[N, W]")
  _checks.check_floating("key", key)
  _checks.check_min_rank("key", key, 1, "[..., W]")
  _checks.check_last_dim("key", key, memory.shape[-1], f"memory {memory.shape}")
  batch = key.shape[:-1]
  _check_param("beta", beta, batch)
  # cos(k, M_i) = k . M_i / ((|k| + eps) (|M_i| + eps)), as similarity.cosine; dividing the
  # [..., N] dot products rather than normalising the [N, W] memory keeps reverse mode from
  # storing a normalised copy of the memory at every step of a scan.
  memory_norms = jnp.reshape(_safe_norm(memory, eps), (1,) * len(batch) + memory.shape[:1])
  scores = dot(key, memory) / (_safe_norm(key, eps) * memory_norms)
  return jax.nn.softmax(_as_column(beta, batch) * scores, axis=-1)


def interpolate(w_content: jax.Array, w_prev: jax.Array, gate: jax.Array) -> jax.Array:
  """Interpolation ``g * w_content + (1 - g) * w_prev``.

  Args:
    w_content: [..., N] content weightings.
    w_prev: [..., N] weightings of the previous step.
    gate: [...] or [..., 1] interpolation gates in [0, 1] (1 = content only).

  Returns:
    [..., N] gated weightings.
  """
  _check_weights("w_content", w_content)
  _check_weights("w_prev", w_prev)
  if w_content.shape != w_prev.shape:
    raise ValueError(f"w_prev has shape {w_prev.shape} but w_content has shape {w_content.shape}")
  batch = w_content.shape[:-1]
  _check_param("gate", gate, batch)
  g = _as_column(gate, batch)
  return g * w_content + (1 - g) * w_prev


def circular_shift(w: jax.Array, shift: jax.Array) -> jax.Array:
  """Circular convolution ``w~(i) = sum_j w(j) s(i - j mod N)`` with allowed shifts.

  ``shift`` is a distribution over the ``S = 2k + 1`` integer shifts ``-k, ..., k``
  (entry ``j`` is the probability of shift ``j - k``); a shift of +1 moves the focus to the
  next slot and the last slot wraps to the first.

  Args:
    w: [..., N] weightings.
    shift: [..., S] shift distributions, S odd and at most N.

  Returns:
    [..., N] shifted weightings.
  """
  _check_weights("w", w)
  _checks.check_floating("shift", shift)
  _checks.check_min_rank("shift", shift, 1, "[..., S]")
  n, s = w.shape[-1], shift.shape[-1]
  if s % 2 != 1 or s > n:
    raise ValueError(
      f"shift must have an odd size S = 2k + 1 <= N = {n} along its last axis, got shape "
      f"{shift.shape}"
    )
  if shift.shape[:-1] != w.shape[:-1]:
    raise ValueError(f"shift has shape {shift.shape} but w has leading axes {w.shape[:-1]}")
  k = s // 2
  # S is small and static: one roll per allowed shift.
  out = jnp.zeros_like(w)
  for j in range(s):
    out = out + shift[..., j : j + 1] * jnp.roll(w, j - k, axis=-1)
  return out


def sharpen(w: jax.Array, gamma: jax.Array, eps: float = _EPS) -> jax.Array:
  """Sharpening ``w(i)^gamma / sum_j w(j)^gamma``.

  Computed as ``softmax_i(gamma * log(w(i) + eps))``: the same ratio, but the powers are
  never formed. Formed directly, ``w^gamma`` underflows float32 for every slot once the
  weighting is diffuse and ``gamma`` large (``(1/128)^20`` is ~1e-42), the weighting turns
  to zeros, and with it the head's gradient: a head that can never recover.

  Args:
    w: [..., N] non-negative weightings.
    gamma: [...] or [..., 1] exponents (>= 1).
    eps: added to ``w`` before the logarithm (so it and the gradient in ``gamma`` are
      finite where ``w`` is 0).

  Returns:
    [..., N] sharpened weightings (each sums to 1).
  """
  _check_weights("w", w)
  batch = w.shape[:-1]
  _check_param("gamma", gamma, batch)
  return jax.nn.softmax(_as_column(gamma, batch) * jnp.log(w + eps), axis=-1)


def address(
  memory: jax.Array,
  key: jax.Array,
  beta: jax.Array,
  gate: jax.Array,
  shift: jax.Array,
  gamma: jax.Array,
  w_prev: jax.Array,
  eps: float = _EPS,
) -> jax.Array:
  """The full NTM addressing: content, interpolation, circular shift, sharpening.

  Args:
    memory: [N, W] memory matrix.
    key: [..., W] keys.
    beta: [...] or [..., 1] key strengths (>= 0).
    gate: [...] or [..., 1] interpolation gates in [0, 1].
    shift: [..., S] shift distributions (S = 2k + 1).
    gamma: [...] or [..., 1] sharpening exponents (>= 1).
    w_prev: [..., N] weightings of the previous step.
    eps: numerical epsilon of the cosine and the sharpening.

  Returns:
    [..., N] weightings.
  """
  w = content_weights(memory, key, beta, eps)
  w = interpolate(w, w_prev, gate)
  w = circular_shift(w, shift)
  return sharpen(w, gamma, eps)


__all__ = ["content_weights", "interpolate", "circular_shift", "sharpen", "address"]
