"""NaN in memories: the documented policy of the retrieval and attention reads.

- Top-k / argmax (``memjax.ops.retrieval``): a NaN score ranks as -inf (after every other
  score, tied with masked slots, lower slot first) and is returned as NaN.
- Soft attention (``memjax.ops.attention_read``): a slot whose key is not finite is read
  as an empty slot (weight 0, value not read, finite gradients elsewhere); if every valid
  slot is corrupted the read is NaN; ``nonfinite_keys='propagate'`` keeps IEEE NaN.

References are numpy, written from the policy's definition.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.memory import attention as attention_memory
from memjax.memory import kv, matrix
from memjax.ops import (
  approx_top_k_search,
  argmax_read,
  attention_read,
  hrr,
  top_k_read,
  top_k_scores,
  top_k_search,
)

# ------------------------------------------------------------------ numpy references


def _np_scores(q, keys, similarity):
  q, keys = np.float64(q), np.float64(keys)
  if similarity == "dot":
    return q @ keys.T
  if similarity == "cosine":
    qn = q / (np.linalg.norm(q, axis=-1, keepdims=True) + 1e-6)
    kn = keys / (np.linalg.norm(keys, axis=-1, keepdims=True) + 1e-6)
    return qn @ kn.T
  assert similarity == "neg_sq_l2"
  return -np.sum((q[:, None, :] - keys[None]) ** 2, axis=-1)


def _np_top_k_nan_last(scores, k, mask=None):
  """The policy: rank by the score with NaN (and masked slots) as -inf, stable."""
  s = np.array(scores, np.float64)
  if mask is not None:
    s = np.where(mask, s, -np.inf)
  rank = np.where(np.isnan(s), -np.inf, s)
  idx = np.argsort(-rank, axis=-1, kind="stable")[..., :k]
  return np.take_along_axis(s, idx, axis=-1), idx


def _np_softmax_read(q, keys, values, valid):
  """softmax(q.k / sqrt(K)) over the valid slots only; no valid slot reads zeros."""
  q, keys, values = np.float64(q), np.float64(keys), np.float64(values)
  s = keys[valid] @ q / np.sqrt(q.shape[-1])
  w = np.zeros(len(keys))
  if valid.any():
    e = np.exp(s - s.max())
    w[valid] = e / e.sum()
  return w @ np.where(valid[:, None], values, 0), w


def _corrupt(keys, rows, value=np.nan):
  keys = np.array(keys)
  keys[rows, rows[0] % keys.shape[1]] = value  # one bad entry per corrupted row
  return keys


# ------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("similarity", ["dot", "cosine", "neg_sq_l2"])
@pytest.mark.parametrize(
  "n, k, block_size",
  [(7, 3, None), (300, 4, None), (300, 4, 64), (1000, 2, 256), (4133, 5, None)],
)
def test_top_k_ranks_nan_scores_last(similarity, n, k, block_size):
  rng = np.random.default_rng(n + k)
  # Integers keep dot scores exact (the reference's order is the library's, ties included).
  keys = rng.integers(-4, 5, (n, 6)).astype(np.float32)
  q = rng.integers(-4, 5, (3, 6)).astype(np.float32)
  bad = np.sort(rng.choice(n, size=max(1, n // 5), replace=False))
  bad[0] = 0  # the first slot: without the policy it wins every query
  keys = _corrupt(keys, bad)
  scores, idx = top_k_search(q, keys, k, similarity=similarity, block_size=block_size)
  want_s, want_i = _np_top_k_nan_last(_np_scores(q, keys, similarity), k)
  assert not np.isin(np.asarray(idx), bad).any()
  if similarity == "dot":
    np.testing.assert_array_equal(np.asarray(idx), want_i)
  # (cosine / L2 scores are rounded in float32; the chosen scores must be the best ones)
  np.testing.assert_allclose(np.asarray(scores, np.float64), want_s, rtol=1e-5, atol=1e-4)


def test_nan_slots_come_after_finite_slots_and_keep_their_nan_score():
  keys = np.array([[np.nan, 0], [1, 0], [np.nan, 1], [0, 1], [2, 2]], np.float32)
  mask = np.array([True, True, True, True, False])  # slot 4 (the best) is empty
  q = np.array([1.0, 0.5], np.float32)
  scores, idx = top_k_search(q, keys, 5, mask=mask)
  # finite 1 and 3, then the -inf / NaN slots 0, 2, 4 by slot index
  np.testing.assert_array_equal(np.asarray(idx), [1, 3, 0, 2, 4])
  s = np.asarray(scores)
  np.testing.assert_allclose(s[:2], [1.0, 0.5])
  assert np.isnan(s[2]) and np.isnan(s[3]) and s[4] == -np.inf


def test_all_nan_query_returns_the_first_slots_with_nan_scores():
  keys = np.eye(4, dtype=np.float32)
  q = np.array([np.nan, 0, 0, 0], np.float32)
  scores, idx = top_k_search(q, keys, 3)
  np.testing.assert_array_equal(np.asarray(idx), [0, 1, 2])
  assert np.isnan(np.asarray(scores)).all()
  r = argmax_read(q, keys, keys)
  assert int(r.indices) == 0 and np.isnan(float(r.scores))


def test_argmax_and_top_k_read_never_pick_a_nan_slot():
  keys = np.array([[np.nan, np.nan], [1, 0], [0, 1]], np.float32)
  values = np.arange(6.0, dtype=np.float32).reshape(3, 2)
  q = np.array([[1.0, 0.2], [0.1, 1.0]], np.float32)
  r = argmax_read(q, keys, values)
  np.testing.assert_array_equal(np.asarray(r.indices), [1, 2])
  np.testing.assert_array_equal(np.asarray(r.values), values[[1, 2]])
  r = top_k_read(q, keys, values, k=2)
  np.testing.assert_array_equal(np.asarray(r.indices), [[1, 2], [2, 1]])
  # the HRR cleanup (an argmax over a codebook) inherits it
  c = hrr.cleanup(q, keys)
  np.testing.assert_array_equal(np.asarray(c.indices), [1, 2])


def test_top_k_scores_and_approx_search_rank_nan_last():
  rng = np.random.default_rng(0)
  s = rng.standard_normal((4, 50)).astype(np.float32)
  s[:, ::7] = np.nan
  got_s, got_i = top_k_scores(s, 6)
  want_s, want_i = _np_top_k_nan_last(s, 6)
  np.testing.assert_array_equal(np.asarray(got_i), want_i)
  np.testing.assert_allclose(np.asarray(got_s), want_s, rtol=1e-6)
  keys = _corrupt(rng.standard_normal((64, 8)).astype(np.float32), np.arange(0, 64, 3))
  q = rng.standard_normal((2, 8)).astype(np.float32)
  _, idx = approx_top_k_search(q, keys, 4, recall_target=1.0)
  _, want = _np_top_k_nan_last(_np_scores(q, keys, "dot"), 4)
  np.testing.assert_array_equal(np.asarray(idx), want)  # exact on CPU


def test_jit_and_gradient_through_scores_stay_finite():
  keys = jnp.asarray([[np.nan, 0], [1, 0], [0, 1]], jnp.float32)
  values = jnp.eye(3, 2)

  def loss(q):
    return jnp.sum(jax.jit(lambda q: top_k_read(q, keys, values, k=2))(q).scores)

  g = jax.grad(loss)(jnp.asarray([1.0, 2.0]))
  np.testing.assert_allclose(np.asarray(g), [1.0, 1.0])  # d/dq of q.k1 + q.k2


# --------------------------------------------------------------------- attention


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("value_too", [False, True])
def test_attention_excludes_slots_with_nonfinite_keys(bad_value, value_too):
  rng = np.random.default_rng(1)
  keys = rng.standard_normal((6, 4)).astype(np.float32)
  values = rng.standard_normal((6, 3)).astype(np.float32)
  q = rng.standard_normal((2, 4)).astype(np.float32)
  bad = np.array([1, 4])
  keys = _corrupt(keys, bad, bad_value)
  if value_too:
    values[bad] = np.nan
  read, w = attention_read(q, keys, values)
  valid = np.ones(6, bool)
  valid[bad] = False
  for i in range(2):
    want_read, want_w = _np_softmax_read(q[i], keys, values, valid)
    np.testing.assert_allclose(np.asarray(w[i]), want_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(read[i]), want_read, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(w)[:, bad] == 0)


def test_attention_gradients_are_finite_and_ignore_the_corrupted_slot():
  rng = np.random.default_rng(2)
  keys = rng.standard_normal((5, 4)).astype(np.float32)
  values = rng.standard_normal((5, 3)).astype(np.float32)
  q = rng.standard_normal((4,)).astype(np.float32)
  bad_keys, bad_values = keys.copy(), values.copy()
  bad_keys[2, 1], bad_values[2] = np.nan, np.nan

  def loss(q, k, v, mask=None):
    read, _ = attention_read(q, k, v, mask=mask)
    return jnp.sum(read * jnp.arange(1.0, 4.0))

  grads = jax.grad(loss, argnums=(0, 1, 2))(q, bad_keys, bad_values)
  valid = np.arange(5) != 2
  want = jax.grad(loss, argnums=(0, 1, 2))(q, keys, values, valid)  # slot 2 masked instead
  for g, w in zip(grads, want, strict=True):
    assert np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(grads[1])[2] == 0) and np.all(np.asarray(grads[2])[2] == 0)


def test_attention_with_every_valid_slot_corrupted_reads_nan_not_zeros():
  keys = np.array([[np.nan, 0], [1, np.inf], [1, 1]], np.float32)
  values = np.ones((3, 2), np.float32)
  mask = np.array([True, True, False])
  read, w = attention_read(np.ones(2, np.float32), keys, values, mask=mask)
  assert np.isnan(np.asarray(read)).all() and np.isnan(np.asarray(w)).all()
  # ... while a memory with no valid slot (or no slot at all) reads zeros
  read, w = attention_read(np.ones(2, np.float32), keys, values, mask=np.zeros(3, bool))
  np.testing.assert_array_equal(np.asarray(read), 0)
  read, w = attention_read(np.ones(2, np.float32), keys[:0], values[:0])
  assert read.shape == (2,) and w.shape == (0,)
  np.testing.assert_array_equal(np.asarray(read), 0)


def test_attention_nan_query_and_propagate_policy_keep_nan():
  keys = np.array([[np.nan, 0], [1, 0], [0, 1]], np.float32)
  values = np.eye(3, 2, dtype=np.float32)
  read, _ = attention_read(np.array([np.nan, 1], np.float32), keys, values)
  assert np.isnan(np.asarray(read)).all()  # the caller's NaN is not hidden
  read, _ = attention_read(np.ones(2, np.float32), keys, values, nonfinite_keys="propagate")
  assert np.isnan(np.asarray(read)).all()
  with pytest.raises(ValueError, match="nonfinite_keys='drop'"):
    attention_read(np.ones(2, np.float32), keys, values, nonfinite_keys="drop")


def test_attention_per_query_mask_and_jit():
  rng = np.random.default_rng(3)
  keys = rng.standard_normal((5, 4)).astype(np.float32)
  values = rng.standard_normal((5, 2)).astype(np.float32)
  q = rng.standard_normal((3, 4)).astype(np.float32)
  keys[0, 0] = np.nan
  mask = rng.random((3, 5)) < 0.7
  mask[:, 1] = True
  read, w = jax.jit(attention_read)(q, keys, values, mask)
  for i in range(3):
    valid = mask[i] & (np.arange(5) != 0)
    want_read, want_w = _np_softmax_read(q[i], keys, values, valid)
    np.testing.assert_allclose(np.asarray(w[i]), want_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(read[i]), want_read, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- the memories


def test_memories_survive_one_corrupted_write():
  nan_key = jnp.asarray([np.nan, 0.0, 0.0])
  keys = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0]])
  vals = jnp.asarray([[1.0, 0], [0, 1.0]])
  # attention memory: the corrupted slot reads as empty
  state = attention_memory.init_state(4, 3, 2)
  state = attention_memory.write(state, nan_key, jnp.asarray([np.nan, np.nan]))
  for key, val in zip(keys, vals, strict=True):
    state = attention_memory.write(state, key, val)
  read, w = attention_memory.read(state, jnp.asarray([3.0, 0, 0]))
  want_read, want_w = _np_softmax_read(
    np.array([3.0, 0, 0]),
    np.asarray(state.keys),
    np.asarray(state.values),
    np.array([False, True, True, False]),
  )
  np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5)
  # kv store: the NaN slot never wins a read, and in-place updates still find their slot
  store = kv.init_state(4, 3, 2)
  store = kv.write(store, nan_key, jnp.asarray([5.0, 5.0]))
  store = kv.write_batch(store, keys, vals)
  hit = kv.read(store, jnp.asarray([1.0, 0.1, 0]), k=3)
  np.testing.assert_array_equal(np.asarray(hit.indices), [1, 2, 0])
  assert np.isnan(float(hit.scores[2]))
  out, weights = kv.weighted_top_k(hit)
  assert float(weights[2]) == 0 and np.isfinite(np.asarray(out)).all()
  updated = kv.write(
    store, jnp.asarray([1.0, 0.01, 0]), jnp.asarray([9.0, 9.0]), update_threshold=0.9
  )
  np.testing.assert_array_equal(np.asarray(updated.values[1]), [9.0, 9.0])  # in place
  assert not bool(updated.valid[3])
  # kv: a NaN value in a retrieved NaN-key slot does not poison the weighted read
  store = kv.write(kv.init_state(2, 3, 2), nan_key, jnp.asarray([np.nan, np.nan]))
  store = kv.write(store, keys[0], vals[0])
  out, _ = kv.weighted_top_k(kv.read(store, keys[0], k=2))
  np.testing.assert_allclose(np.asarray(out), [1.0, 0.0])
  # matrix memory: a corrupted row is skipped by the content read
  mem = matrix.MatrixState(
    jnp.asarray([[np.nan, 1.0], [1.0, 0], [0, 1.0]]), jnp.zeros((), jnp.int32)
  )
  read, w = matrix.read_by_content(mem, jnp.asarray([1.0, 0]))
  assert float(w[0]) == 0 and np.isfinite(np.asarray(read)).all()
