"""Tests for memjax.ops.retrieval: exact / blocked / approximate top-k, reads, sharding."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from memjax.ops import (
  Retrieval,
  approx_top_k_search,
  argmax_read,
  top_k_read,
  top_k_scores,
  top_k_search,
)
from tests import _numpy_refs as refs


def _np_top_k(scores, k):
  """Reference: numpy stable argsort, lower index first among equal scores."""
  idx = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
  return np.take_along_axis(scores, idx, axis=-1), idx


def _np_scores(q, keys, mask=None):
  s = np.einsum("...k,nk->...n", np.float64(q), np.float64(keys))
  if mask is not None:
    s = np.where(mask, s, -np.inf)
  return s


def _data(nq, n, size, seed=0, ties=False):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((nq, size)).astype(np.float32)
  keys = rng.standard_normal((n, size)).astype(np.float32)
  if ties:  # small integers: many exactly equal scores (exact in float32)
    q, keys = np.round(q), np.round(keys * 0.7)
  return q, keys


def _assert_same_top_k(got, q, keys, k, mask=None):
  want_s, want_i = _np_top_k(_np_scores(q, keys, mask), k)
  np.testing.assert_array_equal(np.asarray(got[1]), want_i)
  np.testing.assert_allclose(np.asarray(got[0], np.float64), want_s, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- exact top-k


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(
  "n, k, block_size, query_block_size, chunk_size",
  [
    (300, 5, None, None, 16),  # library defaults (one block)
    (300, 5, 64, 2, 16),  # several key and query blocks, 300 % 64 != 0
    (1000, 7, 128, 3, 8),  # two-stage inside every block, remainder block of 104
    (1000, 7, 1000, 16, 1),  # plain top-k
    (517, 20, 50, 4, 4),  # k close to the block size
    (40, 40, 16, 1, 16),  # k = N, blocks smaller than k
    # Two-stage top-k (>= 4k chunks per block), with and without a remainder block:
    (4096, 8, None, None, 16),
    (3000, 10, 1024, 5, 8),
    (2500, 6, 2500, 7, 32),
  ],
)
def test_exact_top_k_matches_numpy_stable_argsort(
  n, k, block_size, query_block_size, chunk_size, ties
):
  q, keys = _data(9, n, 6, seed=n, ties=ties)
  got = top_k_search(
    q,
    keys,
    k,
    block_size=block_size,
    query_block_size=query_block_size,
    chunk_size=chunk_size,
  )
  assert got[0].shape == (9, k) and got[1].dtype == jnp.int32
  _assert_same_top_k(got, q, keys, k)


def test_ties_lower_index_first_known_answer():
  keys = jnp.array([[1.0], [3.0], [3.0], [0.0], [3.0], [1.0]])
  s, i = top_k_search(jnp.array([1.0]), keys, 5, block_size=2, chunk_size=1)
  np.testing.assert_array_equal(np.asarray(i), [1, 2, 4, 0, 5])
  np.testing.assert_array_equal(np.asarray(s), [3.0, 3.0, 3.0, 1.0, 1.0])


@pytest.mark.parametrize("bs, qb, c", [(4096, 8, 16), (1000, 3, 32), (4096, 8, 1)])
def test_ties_across_chunks_and_blocks(bs, qb, c):
  # All scores equal: the answer is slots 0..k-1 whatever the blocking.
  keys = jnp.ones((4096, 4))
  _, i = top_k_search(jnp.ones((3, 4)), keys, 10, block_size=bs, query_block_size=qb, chunk_size=c)
  np.testing.assert_array_equal(np.asarray(i), np.tile(np.arange(10), (3, 1)))


@functools.cache
def _unblocked_33_by_5000():
  q, keys = _data(33, 5000, 8, seed=3)
  return q, keys, top_k_search(q, keys, 16, block_size=5000, query_block_size=33, chunk_size=1)


@pytest.mark.parametrize("bs, qb, c", [(512, 8, 16), (999, 5, 8), (4096, 33, 32)])
def test_blocked_equals_unblocked(bs, qb, c):
  q, keys, one = _unblocked_33_by_5000()
  got = top_k_search(q, keys, 16, block_size=bs, query_block_size=qb, chunk_size=c)
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(one[1]))
  # Scores may differ in the last bit: other block shapes sum the dot in another order.
  np.testing.assert_allclose(np.asarray(got[0]), np.asarray(one[0]), rtol=1e-6)


@pytest.mark.parametrize("similarity", ["scaled_dot", "cosine", "neg_sq_l2"])
def test_other_similarities(similarity):
  q, keys = _data(5, 700, 4, seed=5)
  got = top_k_search(q, keys, 6, similarity=similarity, block_size=128, query_block_size=2)
  scores = refs.SIMILARITIES[similarity](q, keys)
  want_s, want_i = _np_top_k(scores, 6)
  np.testing.assert_array_equal(np.asarray(got[1]), want_i)
  np.testing.assert_allclose(np.asarray(got[0]), want_s, rtol=1e-5, atol=1e-5)


def test_mask():
  q, keys = _data(6, 900, 5, seed=7)
  mask = np.random.default_rng(0).random(900) > 0.5
  got = top_k_search(q, keys, 8, mask=mask, block_size=256, query_block_size=4)
  _assert_same_top_k(got, q, keys, 8, mask)
  assert not np.any(np.isin(np.asarray(got[1]), np.flatnonzero(~mask)))


def test_fewer_valid_slots_than_k():
  q, keys = _data(2, 200, 3, seed=8)
  mask = np.zeros(200, bool)
  mask[[150, 7, 60]] = True
  s, i = top_k_search(q, keys, 5, mask=mask, block_size=64)
  s, i = np.asarray(s), np.asarray(i)
  assert np.all(np.isfinite(s[:, :3])) and np.all(s[:, 3:] == -np.inf)
  assert np.all(np.sort(i[:, :3], axis=1) == [7, 60, 150])
  np.testing.assert_array_equal(i[:, 3:], [[0, 1], [0, 1]])  # -inf ties: lowest slots


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_batch_shapes(batch):
  rng = np.random.default_rng(9)
  q = rng.standard_normal((*batch, 4)).astype(np.float32)
  keys = rng.standard_normal((300, 4)).astype(np.float32)
  s, i = top_k_search(q, keys, 3, block_size=100)
  assert s.shape == (*batch, 3) and i.shape == (*batch, 3)
  want_s, want_i = _np_top_k(_np_scores(q, keys), 3)
  np.testing.assert_array_equal(np.asarray(i), want_i)


def test_bfloat16_keys_equal_float32_search_of_rounded_keys():
  q, keys = _data(16, 3000, 32, seed=10)
  kb = jnp.asarray(keys, jnp.bfloat16)
  s, i = top_k_search(q, kb, 10, block_size=1024, query_block_size=8)
  assert s.dtype == jnp.float32  # result_type(float32 query, bfloat16 keys)
  _assert_same_top_k((s, i), q, np.asarray(kb, np.float32), 10)
  # Both bf16: scored in float32, returned as bf16.
  s2, i2 = top_k_search(jnp.asarray(q, jnp.bfloat16), kb, 10, block_size=1024)
  assert s2.dtype == jnp.bfloat16
  qr = np.asarray(jnp.asarray(q, jnp.bfloat16), np.float32)
  np.testing.assert_array_equal(
    np.asarray(i2), _np_top_k(_np_scores(qr, np.asarray(kb, np.float32)), 10)[1]
  )


@pytest.mark.parametrize("masked", [False, True])
def test_top_k_scores_matches_numpy(masked):
  rng = np.random.default_rng(11)
  scores = np.round(rng.standard_normal((2, 3, 1000)).astype(np.float32) * 3)  # many ties
  mask = rng.random((2, 3, 1000)) > 0.3 if masked else None
  s, i = top_k_scores(jnp.asarray(scores), 12, mask)
  want_s, want_i = _np_top_k(np.where(mask, scores, -np.inf) if masked else scores, 12)
  np.testing.assert_array_equal(np.asarray(i), want_i)
  np.testing.assert_array_equal(np.asarray(s), want_s)


def test_blocked_search_never_materialises_all_scores():
  q = jax.ShapeDtypeStruct((512, 16), jnp.float32)
  keys = jax.ShapeDtypeStruct((65536, 16), jnp.float32)
  full = 512 * 65536 * 4  # bytes of a [Q, N] float32 score matrix (128 MiB)
  search = jax.jit(lambda q, k: top_k_search(q, k, 8, block_size=4096, query_block_size=128))
  stats = search.lower(q, keys).compile().memory_analysis()
  assert stats is not None  # XLA:CPU (forced by tests/conftest.py) reports it
  assert stats.temp_size_in_bytes < full / 8


# ------------------------------------------------------------ reads and grads


def test_top_k_read_and_argmax_read():
  q, keys = _data(4, 500, 5, seed=12)
  values = np.random.default_rng(1).standard_normal((500, 3)).astype(np.float32)
  mask = np.random.default_rng(2).random(500) > 0.2
  r = top_k_read(q, keys, values, 4, mask=mask, block_size=128)
  assert isinstance(r, Retrieval)
  want_s, want_i = _np_top_k(_np_scores(q, keys, mask), 4)
  np.testing.assert_array_equal(np.asarray(r.indices), want_i)
  np.testing.assert_allclose(np.asarray(r.values), values[want_i], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(r.scores), want_s, rtol=1e-5)
  a = argmax_read(q, keys, values, mask=mask)
  np.testing.assert_array_equal(np.asarray(a.indices), want_i[:, 0])
  np.testing.assert_allclose(np.asarray(a.values), values[want_i[:, 0]], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(a.scores), want_s[:, 0], rtol=1e-5)


@pytest.mark.parametrize("approximate", [False, True])
def test_scalar_values_read_the_best_slots(approximate):
  # values [N] (one scalar per slot): top_k_read gives [Q, k], argmax_read [Q].
  q, keys = _data(4, 500, 5, seed=12)
  values = np.random.default_rng(1).standard_normal(500).astype(np.float32)
  want_s, want_i = _np_top_k(_np_scores(q, keys), 4)
  r = top_k_read(q, keys, values, 4, approximate=approximate, block_size=128)
  assert r.values.shape == (4, 4)
  np.testing.assert_array_equal(np.asarray(r.indices), want_i)
  np.testing.assert_array_equal(np.asarray(r.values), values[want_i])
  np.testing.assert_allclose(np.asarray(r.scores), want_s, rtol=1e-5)
  a = argmax_read(q, keys, values)
  assert a.values.shape == (4,)
  np.testing.assert_array_equal(np.asarray(a.indices), want_i[:, 0])
  np.testing.assert_array_equal(np.asarray(a.values), values[want_i[:, 0]])


def test_argmax_read_ties_go_to_lowest_index():
  keys = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  values = jnp.arange(4.0)[:, None]
  a = argmax_read(jnp.array([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0]]), keys, values)
  np.testing.assert_array_equal(np.asarray(a.indices), [1, 0, 0])
  np.testing.assert_array_equal(np.asarray(a.values[:, 0]), [1.0, 0.0, 0.0])


def test_check_grads_through_scores_and_values_of_top_k_read():
  q, keys = _data(3, 40, 4, seed=13)  # random data: the top-k is stable under small steps
  values = np.random.default_rng(3).standard_normal((40, 2)).astype(np.float32)

  @jax.jit
  def f(q, keys, values):
    r = top_k_read(q, keys, values, 3, block_size=16)
    return r.scores.sum(-1) + (r.values * jnp.array([[[1.0, -2.0]]])).sum((-1, -2))

  check_grads(f, (q, keys, values), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)
  # The value gradient is exactly the count of times each slot was read.
  g = jax.grad(lambda v: f(q, keys, v).sum())(values)
  counts = np.bincount(_np_top_k(_np_scores(q, keys), 3)[1].ravel(), minlength=40)
  np.testing.assert_allclose(np.asarray(g), counts[:, None] * np.array([1.0, -2.0]), atol=1e-6)


# --------------------------------------------------------------- approximate


@pytest.mark.parametrize("target", [0.5, 0.95])
def test_approx_top_k_is_exact_on_cpu_and_meets_recall_elsewhere(target):
  q, keys = _data(32, 4096, 16, seed=14)
  s, i = approx_top_k_search(q, keys, 10, recall_target=target)
  truth = _np_top_k(_np_scores(q, keys), 10)[1]
  if jax.default_backend() == "cpu":  # XLA's CPU fallback is an exact top-k
    np.testing.assert_array_equal(np.asarray(i), truth)
  else:  # the partial-reduce algorithm keeps the expected recall
    hits = sum(len(set(a) & set(b)) for a, b in zip(np.asarray(i), truth, strict=True))
    assert hits / truth.size >= target
  # Returned scores are the true scores of the returned slots, best first.
  np.testing.assert_allclose(
    np.asarray(s), np.take_along_axis(_np_scores(q, keys), np.asarray(i), 1), rtol=1e-5
  )
  assert np.all(np.diff(np.asarray(s), axis=-1) <= 0)


def test_approx_top_k_read_and_mask():
  q, keys = _data(4, 256, 8, seed=15)
  mask = np.arange(256) % 2 == 0
  r = top_k_read(q, keys, keys, 5, mask=mask, approximate=True, recall_target=0.9)
  assert np.all(np.asarray(r.indices) % 2 == 0)
  np.testing.assert_allclose(np.asarray(r.values), keys[np.asarray(r.indices)])
  if jax.default_backend() == "cpu":
    _assert_same_top_k((r.scores, r.indices), q, keys, 5, mask)


# ------------------------------------------------------------ jit and devices


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_matches_no_jit(self):
    q, keys = _data(5, 600, 4, seed=16, ties=True)
    mask = np.random.default_rng(4).random(600) > 0.1
    search = self.variant(
      lambda q, k, m: top_k_search(q, k, 9, mask=m, block_size=128, query_block_size=2)
    )
    _assert_same_top_k(search(q, keys, mask), q, keys, 9, mask)

  @chex.variants(with_jit=True, without_jit=True)
  def test_argmax_read_jit_matches_no_jit(self):
    q, keys = _data(3, 50, 4, seed=17)
    a = self.variant(argmax_read)(q, keys, keys)
    np.testing.assert_array_equal(np.asarray(a.indices), np.argmax(q @ keys.T, axis=-1))


@pytest.mark.parametrize("axis_type", [jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto])
def test_queries_sharded_over_8_devices_equal_unsharded(axis_type):
  # tests/conftest.py forces the CPU platform with 8 fake devices.
  assert jax.default_backend() == "cpu" and len(jax.devices()) == 8
  q, keys = _data(64, 2000, 8, seed=18)
  mesh = jax.make_mesh((8,), ("batch",), axis_types=(axis_type,))
  q_sharded = jax.device_put(q, NamedSharding(mesh, P("batch", None)))
  keys_repl = jax.device_put(keys, NamedSharding(mesh, P()))
  search = jax.jit(lambda q, k: top_k_search(q, k, 12, block_size=512, query_block_size=4))
  s, i = search(q_sharded, keys_repl)
  want = top_k_search(q, keys, 12, block_size=512, query_block_size=4)
  np.testing.assert_array_equal(np.asarray(i), np.asarray(want[1]))
  np.testing.assert_array_equal(np.asarray(s), np.asarray(want[0]))
  _assert_same_top_k((s, i), q, keys, 12)


# ----------------------------------------------------------------- bad inputs


def _search_args(**kw):
  q, keys = _data(2, 10, 3)
  return dict(query=q, keys=keys, k=2) | kw


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(query=np.ones((2, 4), np.float32)), ValueError, "query has feature size 4"),
    (dict(k=11), ValueError, r"k=11 must be in \[1, 10\]"),
    (dict(k=0), ValueError, "k=0"),
    (dict(k=2.0), TypeError, "k must be a Python int"),
    (dict(keys=np.ones((10,), np.float32)), ValueError, "keys must have rank 2"),
    (dict(keys=np.ones((1, 10, 3), np.float32)), ValueError, "keys must have rank 2"),
    (dict(query=np.ones((2, 3), np.int32)), TypeError, "query must have a floating"),
    (dict(mask=np.ones((10,), np.int32)), TypeError, "mask must be boolean"),
    (dict(mask=np.ones((9,), bool)), ValueError, "mask must have shape"),
    (dict(mask=np.ones((2, 10), bool)), ValueError, "mask must have rank 1"),
    (dict(block_size=0), ValueError, "block_size must be a positive int"),
    (dict(query_block_size=-1), ValueError, "query_block_size must be a positive int"),
    (dict(chunk_size=0), ValueError, "chunk_size must be a positive int"),
    (dict(similarity="euclid"), ValueError, "similarity='euclid'"),
  ],
)
def test_search_bad_inputs_name_the_argument(kwargs, error, match):
  with pytest.raises(error, match=match):
    top_k_search(**_search_args(**kwargs))


@pytest.mark.parametrize(
  "fn, kwargs, error, match",
  [
    (top_k_read, dict(values=np.ones((9, 2), np.float32)), ValueError, "values has 9 slots"),
    (argmax_read, dict(values=np.ones((9, 2), np.float32)), ValueError, "values has 9 slots"),
    (top_k_read, dict(k=11), ValueError, "k=11"),
    (approx_top_k_search, dict(k=11), ValueError, "k=11"),
    (approx_top_k_search, dict(query=np.ones((2, 3), np.int32)), TypeError, "query must"),
    (approx_top_k_search, dict(recall_target=1.5), ValueError, r"recall_target=1.5 must be in"),
    (approx_top_k_search, dict(recall_target=0.0), ValueError, r"recall_target=0.0 must be in"),
    (top_k_read, dict(values=np.ones((9,), np.float32)), ValueError, "values has 9 slots"),
    (top_k_scores, dict(scores=np.ones((2, 5), np.int32)), TypeError, "scores must"),
    (top_k_scores, dict(k=6), ValueError, "k=6"),
    (top_k_scores, dict(mask=np.ones((2, 4), bool)), ValueError, "mask must have shape"),
  ],
)
def test_read_bad_inputs_name_the_argument(fn, kwargs, error, match):
  q, keys = _data(2, 10, 3)
  values = np.ones((10, 2), np.float32)
  if fn is top_k_scores:
    args = dict(scores=np.ones((2, 5), np.float32), k=2) | kwargs
  elif fn is argmax_read:
    args = dict(query=q, keys=keys, values=values) | kwargs
  elif fn is approx_top_k_search:
    args = dict(query=q, keys=keys, k=2) | kwargs
  else:
    args = dict(query=q, keys=keys, values=values, k=2) | kwargs
  with pytest.raises(error, match=match):
    fn(**args)
