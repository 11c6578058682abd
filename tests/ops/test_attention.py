"""Tests for memjax.ops.attention against a numpy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from memjax.ops import attention_read, masked_softmax
from tests import _numpy_refs as refs


def _np_attention(q, keys, values, mask=None):
  """float64 reference of softmax(q K^T / sqrt(d)) V with slot masks."""
  w = refs.softmax(refs.scaled_dot(q, keys), mask)
  return w @ np.float64(values), w


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


def _full_mask_slice(mask, axis):
  """``mask`` with its first slice along ``axis`` (all slots of one row) set to False."""
  mask = np.array(mask)
  np.moveaxis(mask, axis, -1)[(0,) * (mask.ndim - 1)] = False
  return mask


@pytest.mark.parametrize(
  "shape, mask_shape, axis",
  [
    ((3, 5), None, -1),
    ((4, 3), None, 0),
    ((3, 5), (3, 5), -1),
    ((3, 5), (5,), -1),  # one slot mask for every row
    ((5, 3), (5, 3), 0),  # slots along axis 0
    ((2, 4, 3), (2, 4, 3), 1),
    ((2, 4, 3), (4, 1), 1),  # broadcast over the first and last axes
    ((2, 3, 4), (2, 3, 4), -2),
  ],
)
def test_masked_softmax_matches_numpy(shape, mask_shape, axis):
  rng = np.random.default_rng(2)
  s = (3 * rng.standard_normal(shape)).astype(np.float32)
  mask = None
  if mask_shape is not None:
    mask = rng.random(mask_shape) > 0.4
    if mask_shape == shape:  # one row with no valid slot at all
      mask = _full_mask_slice(mask, axis)
  w = np.asarray(masked_softmax(jnp.asarray(s), mask, axis=axis))
  want = refs.softmax(s, mask, axis)
  assert w.shape == shape and w.dtype == np.float32
  np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-7)
  if mask is not None:
    assert np.all(w[~np.broadcast_to(mask, shape)] == 0)  # exactly 0, not just small


def test_masked_softmax_known_answer_along_axis_0():
  s = jnp.array([[0.0, np.log(3.0), 5.0], [0.0, 0.0, -5.0]])
  mask = jnp.array([[True, True, False], [True, True, False]])  # column 2: no valid slot
  w = masked_softmax(s, mask, axis=0)
  np.testing.assert_allclose(w, [[0.5, 0.75, 0.0], [0.5, 0.25, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_masked_softmax_row_without_valid_slot_is_exactly_zero(dtype):
  # The documented behaviour: all-zero weights, never NaN, whatever the scores.
  s = jnp.array([[1e30, -1e30, 0.0], [3.0, 1.0, 2.0]], jnp.float32).astype(dtype)
  mask = jnp.array([[False, False, False], [False, True, False]])
  w = masked_softmax(s, mask)
  assert w.dtype == dtype
  np.testing.assert_array_equal(np.asarray(w, np.float32), [[0, 0, 0], [0, 1, 0]])
  g = jax.grad(lambda s: masked_softmax(s, mask)[0].sum())(s)
  assert np.all(np.asarray(g, np.float32) == 0)


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
