"""Numpy references for the layer tests, written from the formulas (float64 loops).

None of them imports memjax.
"""

import math

import numpy as np


def attend(q, k, v, visible, bias=None, scale=None):
  """One head: q [Tq, D], k [Tk, D], v [Tk, Dv], visible(i, j) -> bool; bias [Tq, Tk]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
  out = np.zeros((q.shape[0], v.shape[-1]))
  for i in range(q.shape[0]):
    js = [j for j in range(k.shape[0]) if visible(i, j)]
    if not js:
      continue
    s = np.array([q[i] @ k[j] * scale + (0 if bias is None else bias[i, j]) for j in js])
    w = np.exp(s - s.max())
    w /= w.sum()
    out[i] = w @ v[js]
  return out


def multi_head(q, k, v, visible, bias=None, scale=None):
  """q [B, Tq, H, D] etc.; visible(b, h, i, j); bias [H, Tq, Tk] or None."""
  b_size, tq, heads, _ = q.shape
  out = np.zeros((b_size, tq, heads, v.shape[-1]))
  for b in range(b_size):
    for h in range(heads):
      out[b, :, h] = attend(
        q[b, :, h],
        k[b, :, h],
        v[b, :, h],
        lambda i, j, b=b, h=h: visible(b, h, i, j),
        None if bias is None else np.asarray(bias)[h],
        scale,
      )
  return out
