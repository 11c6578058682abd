"""Numpy references shared by the tests, written from the formulas, never calling memjax.

Every function computes in float64 and accepts leading batch axes where it says so. The
tests compare memjax against these, so none of them may import memjax.
"""

import math

import numpy as np

# ------------------------------------------------------------------ softmax, reads


def softmax(scores, mask=None, axis=-1):
  """Softmax over ``axis`` with exactly 0 weight on masked entries.

  ``mask`` (bool, broadcastable to ``scores``; False = masked). A slice along ``axis``
  with no valid entry has all-zero weights.
  """
  s = np.moveaxis(np.asarray(scores, np.float64), axis, -1)
  if mask is None:
    valid = np.ones(s.shape, bool)
  else:
    valid = np.moveaxis(np.broadcast_to(np.asarray(mask, bool), np.shape(scores)), axis, -1)
  out = np.zeros(s.shape)
  for idx in np.ndindex(s.shape[:-1]):  # one slice at a time, only its valid entries
    keep = valid[idx]
    if keep.any():
      e = np.exp(s[idx][keep] - s[idx][keep].max())
      out[idx][keep] = e / e.sum()
  return np.moveaxis(out, -1, axis)


def scaled_dot_read(keys, values, valid, query):
  """One query's softmax(q . k_i / sqrt(d)) read over the valid slots: ``(read, weights)``.

  An empty memory (no valid slot) reads zeros with zero weights.
  """
  keys, values, query = (np.asarray(a, np.float64) for a in (keys, values, query))
  w = softmax(keys @ query / math.sqrt(len(query)), np.asarray(valid, bool))
  return w @ values, w


# ------------------------------------------------------------------- similarities


def dot(q, k):
  """``[..., K] x [N, K] -> [..., N]`` inner products."""
  return np.einsum("...k,nk->...n", np.float64(q), np.float64(k))


def scaled_dot(q, k):
  return dot(q, k) / math.sqrt(np.shape(q)[-1])


def cosine(q, k, eps=1e-6):
  """Cosine with ``eps`` added to each norm (a zero vector has cosine 0)."""
  q, k = np.float64(q), np.float64(k)
  qn = q / (np.linalg.norm(q, axis=-1, keepdims=True) + eps)
  kn = k / (np.linalg.norm(k, axis=-1, keepdims=True) + eps)
  return dot(qn, kn)


def neg_sq_l2(q, k):
  diff = np.float64(q)[..., None, :] - np.float64(k)
  return -np.sum(diff * diff, axis=-1)


SIMILARITIES = {"dot": dot, "scaled_dot": scaled_dot, "cosine": cosine, "neg_sq_l2": neg_sq_l2}


# ---------------------------------------------------------- circular convolution


def _circulant_index(d):
  j, k = np.arange(d)[:, None], np.arange(d)[None, :]
  return j, k


def circular_convolution(a, b):
  """Direct sum ``c_j = sum_k a_k b_{(j - k) mod D}`` over the last axis (batch axes broadcast)."""
  a, b = np.broadcast_arrays(np.float64(a), np.float64(b))
  j, k = _circulant_index(a.shape[-1])
  return np.sum(a[..., None, :] * b[..., (j - k) % a.shape[-1]], axis=-1)


def circular_correlation(trace, key):
  """Direct sum ``y_j = sum_k key_k trace_{(j + k) mod D}`` over the last axis."""
  trace, key = np.broadcast_arrays(np.float64(trace), np.float64(key))
  j, k = _circulant_index(trace.shape[-1])
  return np.sum(key[..., None, :] * trace[..., (j + k) % trace.shape[-1]], axis=-1)


# ---------------------------------------------------------------- NTM addressing


def ntm_address(memory, key, beta, gate, shift, gamma, w_prev, eps=1e-6):
  """One head's NTM addressing (Graves et al. 2014, eqs. 5-9) written as loops.

  Content weights softmax(beta cos(key, M_i)) (eps added to each norm), gated
  interpolation with ``w_prev``, circular shift by ``shift`` over offsets
  ``-s..s``, sharpening ``(w + eps)^gamma / sum`` (float64: no underflow at these sizes).
  """
  memory, key = np.float64(memory), np.float64(key)
  n = memory.shape[0]
  cos = np.array(
    [key @ m / ((np.linalg.norm(key) + eps) * (np.linalg.norm(m) + eps)) for m in memory]
  )
  e = np.exp(beta * cos - np.max(beta * cos))
  w = gate * e / e.sum() + (1 - gate) * np.float64(w_prev)
  s = len(shift) // 2
  w = np.array([sum(w[(i - d) % n] * shift[d + s] for d in range(-s, s + 1)) for i in range(n)])
  p = (w + eps) ** gamma
  return p / p.sum()
