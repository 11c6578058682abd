"""Tests for memjax.ops.attention against a numpy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from memjax.ops import attention_read, masked_softmax


def _np_attention(q, keys, values, mask=None):
  """Loop-free float64 reference of softmax(q K^T / sqrt(d)) V with slot masks."""
  q, keys, values = (np.asarray(a, np.float64) for a in (q, keys, values))
  s = np.einsum("...k,nk->...n", q, keys) / np.sqrt(q.shape[-1])
  if mask is None:
    mask = np.ones(s.shape, bool)
  mask = np.broadcast_to(mask, s.shape)
  s = np.where(mask, s, -np.inf)
  m = np.max(s, axis=-1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  e = np.where(mask, np.exp(s - m), 0.0)
  z = e.sum(-1, keepdims=True)
  w = np.where(z > 0, e / np.where(z > 0, z, 1.0), 0.0)
  return np.einsum("...n,nv->...v", w, values), w


def _data(batch=(3,), n=6, k=4, v=2, seed=0):
  rng = np.random.default_rng(seed)
  return (
    rng.standard_normal((*batch, k)).astype(np.float32),
    rng.standard_normal((n, k)).astype(np.float32),
    rng.standard_normal((n, v)).astype(np.float32),
  )


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_matches_numpy(batch):
  q, keys, values = _data(batch)
  read, w = attention_read(q, keys, values)
  want_read, want_w = _np_attention(q, keys, values)
  assert read.shape == (*batch, 2) and w.shape == (*batch, 6)
  np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-6)


def test_masks_slot_and_per_query():
  q, keys, values = _data((4,))
  slot_mask = np.array([True, False, True, True, False, True])
  read, w = attention_read(q, keys, values, mask=slot_mask)  # [N]
  want_read, want_w = _np_attention(q, keys, values, slot_mask)
  np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(w)[:, ~slot_mask] == 0)
  # Per-query masks [B, N]; row 2 has no valid slot and reads exactly zeros.
  per_query = np.random.default_rng(1).random((4, 6)) > 0.4
  per_query[2] = False
  read, w = attention_read(q, keys, values, mask=per_query)
  want_read, want_w = _np_attention(q, keys, values, per_query)
  np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(read)[2] == 0) and np.all(np.asarray(w)[2] == 0)
  assert np.all(np.isfinite(np.asarray(read)))


def test_all_masked_has_finite_gradients():
  q, keys, values = _data((2,))
  mask = np.zeros((6,), bool)
  grads = jax.grad(lambda q, k, v: attention_read(q, k, v, mask=mask)[0].sum(), (0, 1, 2))(
    q, keys, values
  )
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g) == 0)


def test_known_answer_one_hot_read():
  keys = jnp.eye(3)
  values = jnp.arange(6.0).reshape(3, 2)
  read, w = attention_read(jnp.array([100.0, 0.0, 0.0]), keys, values)
  np.testing.assert_allclose(np.asarray(w), [1.0, 0.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(read), [0.0, 1.0], atol=1e-5)


def test_masked_softmax_rows_sum_to_one_or_zero():
  s = jnp.asarray(np.random.default_rng(2).standard_normal((3, 5)), jnp.float32)
  mask = jnp.array([[True] * 5, [False, True, False, True, False], [False] * 5])
  w = np.asarray(masked_softmax(s, mask))
  np.testing.assert_allclose(w.sum(-1), [1.0, 1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(masked_softmax(s)), np.asarray(jax.nn.softmax(s)))


def test_other_similarities():
  q, keys, values = _data((3,))
  read, w = attention_read(q, keys, values, similarity="dot")
  s = q.astype(np.float64) @ keys.T.astype(np.float64)
  e = np.exp(s - s.max(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(w), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_dtype_follows_values():
  q, keys, values = (jnp.asarray(a, jnp.bfloat16) for a in _data((3,)))
  read, _ = attention_read(q, keys, values)
  assert read.dtype == jnp.bfloat16


def test_check_grads():
  q, keys, values = _data((2,), n=5, k=3, v=2, seed=3)
  mask = np.array([True, True, False, True, True])[None, :]
  f = jax.jit(lambda q, k, v: attention_read(q, k, v, mask=mask)[0])
  check_grads(f, (q, keys, values), order=1, modes=("fwd", "rev"), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(query=np.ones((2, 5))), ValueError, "query has feature size 5"),
    (dict(query=np.ones((2, 4), np.int32)), TypeError, "query must have a floating"),
    (dict(keys=np.ones((6,), np.float32)), ValueError, "keys must have rank 2"),
    (dict(values=np.ones((5, 2), np.float32)), ValueError, "values has 5 slots"),
    (dict(values=np.ones((6,), np.float32)), ValueError, "values must have rank 2"),
    (dict(mask=np.ones((6,), np.int32)), TypeError, "mask must be boolean"),
    (dict(mask=np.ones((5,), bool)), ValueError, "mask must have shape"),
  ],
)
def test_bad_inputs_name_the_argument(kwargs, error, match):
  q, keys, values = _data((2,))
  args = dict(query=q, keys=keys, values=values) | kwargs
  with pytest.raises(error, match=match):
    attention_read(**args)


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_matches_no_jit(self):
    q, keys, values = _data((2, 3))
    mask = np.array([True, False, True, True, True, False])[None, None, :]
    read, w = self.variant(attention_read)(q, keys, values, mask)
    want_read, want_w = _np_attention(q, keys, values, mask)
    np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5, atol=1e-6)
