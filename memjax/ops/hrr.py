"""Holographic reduced representations (HRR): binding by circular convolution.

Vectors of dimension D with i.i.d. N(0, 1/D) entries (so ``|a| ~ 1``) are *bound* by
circular convolution, ``(a (*) b)_j = sum_k a_k b_{(j - k) mod D}``, computed in
``O(D log D)`` with the real FFT, and *unbound* by circular correlation, i.e. binding
with the involution ``a*_j = a_{-j mod D}`` (the approximate inverse of ``a``). Bound
pairs are *superposed* by addition; the noisy result of an unbinding is *cleaned up*
by a nearest-neighbour search over a codebook of known vectors.

Expected dot products for random HRR vectors (derived in the frequency domain, for
even D, and checked by sampling in ``tests/ops/test_hrr.py``; compare the table of
dot-product statistics in Plate 2003, ch. 3): ``(a (*) b) . (a (*) b) ~ 1`` with
variance ``(6D + 4) / D^2``, ``(a (*) b) . (a (*) c) ~ 0`` with variance
``(2D + 2) / D^2``, ``(a (*) b) . (c (*) d) ~ 0`` with variance ``1 / D``, and
``cos(unbind(bind(a, b), a), b) -> 1 / sqrt(2 + 2/D)``.

All functions work on ``[..., D]`` arrays (batch axes broadcast explicitly) and are
differentiable. The FFT runs in at least float32; results are cast back to the input
dtype (bf16 in, bf16 out).

References:
  T. A. Plate, "Holographic reduced representations", IEEE Transactions on Neural
  Networks 6(3), 1995. T. A. Plate, "Holographic Reduced Representation: Distributed
  Representation for Cognitive Structures", CSLI Publications, 2003.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from memjax.ops import _checks
from memjax.ops.retrieval import Retrieval, argmax_read
from memjax.ops.similarity import SimilarityFn


def _pair(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Checks two ``[..., D]`` float arrays and broadcasts their batch axes."""
  a, b = _checks.as_array(name_a, a), _checks.as_array(name_b, b)
  _checks.check_floating(name_a, a)
  _checks.check_floating(name_b, b)
  _checks.check_min_rank(name_a, a, 1, "[..., D]")
  _checks.check_min_rank(name_b, b, 1, "[..., D]")
  _checks.check_last_dim(name_b, b, jnp.shape(a)[-1], f"{name_a} {jnp.shape(a)}")
  try:
    shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b))
  except ValueError:
    raise ValueError(
      f"{name_a} {jnp.shape(a)} and {name_b} {jnp.shape(b)} have batch axes that do not broadcast"
    ) from None
  return jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)


def _fft_dtype(dtype) -> jnp.dtype:
  return jnp.promote_types(dtype, jnp.float32)


def bind(a: jax.Array, b: jax.Array) -> jax.Array:
  """Circular convolution ``a (*) b`` via ``irfft(rfft(a) * rfft(b))``.

  Commutative, associative and bilinear.

  Args:
    a: [..., D] floating vectors.
    b: [..., D] floating vectors (batch axes broadcast with ``a``).

  Returns:
    [..., D] bound vectors, in the common dtype of ``a`` and ``b``.

  Raises:
    ValueError / TypeError: feature sizes differ, a scalar, a non-floating input.

  Example:
    >>> bind(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]))  # shift by one
    Array([3., 1., 2.], dtype=float32)
  """
  a, b = _pair("a", a, "b", b)
  dtype = jnp.result_type(a, b)
  d = a.shape[-1]
  fa = jnp.fft.rfft(a.astype(_fft_dtype(dtype)), axis=-1)
  fb = jnp.fft.rfft(b.astype(_fft_dtype(dtype)), axis=-1)
  return jnp.fft.irfft(fa * fb, n=d, axis=-1).astype(dtype)


def involution(a: jax.Array) -> jax.Array:
  """The approximate inverse ``a*_j = a_{-j mod D}`` (index reversal keeping ``a_0``).

  Args:
    a: [..., D] floating vectors.

  Returns:
    [..., D], same dtype.
  """
  _checks.check_floating("a", a)
  _checks.check_min_rank("a", a, 1, "[..., D]")
  return jnp.roll(jnp.flip(a, axis=-1), 1, axis=-1)


def unbind(trace: jax.Array, key: jax.Array) -> jax.Array:
  """Circular correlation ``key* (*) trace``: decodes what ``key`` was bound to.

  ``unbind(bind(a, b), a)`` is a noisy version of ``b`` (cosine about 0.71 for
  random vectors); clean it up with :func:`cleanup`.

  Args:
    trace: [..., D] floating memory trace(s).
    key: [..., D] floating key(s) (batch axes broadcast with ``trace``).

  Returns:
    [..., D] decoded vectors.
  """
  trace, key = _pair("trace", trace, "key", key)
  dtype = jnp.result_type(trace, key)
  d = trace.shape[-1]
  ft = jnp.fft.rfft(trace.astype(_fft_dtype(dtype)), axis=-1)
  fk = jnp.fft.rfft(key.astype(_fft_dtype(dtype)), axis=-1)
  # Correlation: multiply by the conjugate spectrum (the spectrum of the involution).
  return jnp.fft.irfft(ft * jnp.conj(fk), n=d, axis=-1).astype(dtype)


def random_vectors(key: jax.Array, num: int, dim: int, dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """``num`` random HRR vectors with i.i.d. N(0, 1/dim) entries.

  Args:
    key: a PRNG key.
    num: number of vectors.
    dim: dimension D.
    dtype: floating dtype.

  Returns:
    [num, dim] vectors of expected squared norm 1.
  """
  dim = _checks.check_size("dim", dim)
  num = _checks.check_size("num", num, 0)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be floating, got {dtype}")
  return (jax.random.normal(key, (num, dim), jnp.float32) / jnp.sqrt(dim)).astype(dtype)


def superpose(keys: jax.Array, values: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """The trace ``sum_i w_i keys_i (*) values_i`` of bound pairs.

  Args:
    keys: [..., N, D] keys.
    values: [..., N, D] values.
    weights: optional [..., N] weights (default 1).

  Returns:
    [..., D] trace.
  """
  _checks.check_min_rank("keys", keys, 2, "[..., N, D]")
  _checks.check_min_rank("values", values, 2, "[..., N, D]")
  bound = bind(keys, values)
  if weights is not None:
    _checks.check_floating("weights", weights)
    if jnp.shape(weights) != bound.shape[:-1]:
      raise ValueError(
        f"weights must have shape {bound.shape[:-1]} (one per pair), got {jnp.shape(weights)}"
      )
    bound = bound * weights[..., None].astype(bound.dtype)
  return jnp.sum(bound, axis=-2)


def cleanup(
  noisy: jax.Array,
  codebook: jax.Array,
  similarity: str | SimilarityFn = "cosine",
  mask: jax.Array | None = None,
) -> Retrieval:
  """Nearest codebook item to a noisy vector (cosine by default).

  Args:
    noisy: [..., D] decoded vectors.
    codebook: [M, D] clean items.
    similarity: a name from :mod:`memjax.ops.similarity` or a callable.
    mask: optional [M] bool validity of the codebook items.

  Returns:
    :class:`~memjax.ops.Retrieval` with ``values [..., D]`` (the clean items),
    ``indices [...]`` and ``scores [...]``. The index is not differentiable.
  """
  return argmax_read(noisy, codebook, codebook, similarity=similarity, mask=mask)


__all__ = ["bind", "unbind", "involution", "random_vectors", "superpose", "cleanup"]
