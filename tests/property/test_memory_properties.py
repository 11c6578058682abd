"""Property tests of the memory ops (hypothesis): retrieval, attention, the memory families
and their argument checks, against numpy references written from the documented rules.

Every case either returns what the numpy reference says (shapes, dtypes, values, the NaN
policy of ``memjax.ops.retrieval`` and ``memjax.ops.attention_read``) or raises a
TypeError / ValueError that names the argument; never another exception (a crash inside
XLA surfaces as one), never a hang (each case is timed). Shapes come from small sets so
that compiled programs are reused and the file runs in well under 40 s on one core; the
values (seeded numpy arrays), NaN / inf positions, masks, dtypes and sizes vary. The cases
tried are counted per property and printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memjax.memory import attention as attention_memory
from memjax.memory import gated, holographic, kv, matrix, ntm
from memjax.ops import argmax_read, attention_read, hrr, top_k_read, top_k_search


def _settings(n):
  return settings(
    max_examples=n,
    deadline=None,
    derandomize=True,  # the same cases on every run (and so the same run time)
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
  )


SECONDS_PER_CASE = 30.0  # a case over this is a hang (compiling one takes about a second)
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
SPECIALS = (np.nan, np.inf, -np.inf)


@pytest.fixture(scope="module", autouse=True)
def _print_counts():
  yield
  total = sum(c["cases"] for c in COUNTS.values())
  print(f"\nmemory-op properties: {total} cases in all")
  for name, counts in COUNTS.items():
    print(f"  {name}: {dict(counts)}")


def _uniform(draw, options):
  """One of ``options``, uniformly (``sampled_from`` favours the first ones, and every
  shape must be tried)."""
  return options[draw(st.integers(0, 2**32 - 1)) % len(options)]


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  assert time.perf_counter() - start < SECONDS_PER_CASE
  return out


# --------------------------------------------------------------------- numpy references


def _rounded(x, dtype):
  """``x`` as the dtype holds it, in float64 (what the library computes from)."""
  return np.asarray(np.asarray(x, np.float64).astype(DTYPES[dtype]), np.float64)


def _np_scores(q, keys, similarity):
  """``[..., K] x [N, K] -> [..., N]`` in float64, by the documented formulas."""
  q, keys = np.float64(q), np.float64(keys)
  with np.errstate(all="ignore"):
    qk = np.einsum("...k,nk->...n", q, keys)
    if similarity == "dot":
      return qk
    if similarity == "scaled_dot":
      return np.einsum("...k,nk->...n", q / math.sqrt(q.shape[-1]), keys)
    if similarity == "cosine":
      qn = q / (np.sqrt(np.sum(q * q, -1, keepdims=True)) + 1e-6)
      kn = keys / (np.sqrt(np.sum(keys * keys, -1, keepdims=True)) + 1e-6)
      return np.einsum("...k,nk->...n", qn, kn)
    assert similarity == "neg_sq_l2"  # 2 q.k - |q|^2 - |k|^2, clipped at 0 (NaN kept)
    d = 2 * qk - np.sum(q * q, -1, keepdims=True) - np.sum(keys * keys, -1)
    return np.where(d > 0, 0.0, d)


def _np_top_k(scores, k):
  """The retrieval policy: rank by the score with NaN as -inf, lower slot first on ties."""
  rank = np.where(np.isnan(scores), -np.inf, scores)
  idx = np.argsort(-rank, axis=-1, kind="stable")[..., :k]
  return np.take_along_axis(scores, idx, axis=-1), idx


def _np_attention(q, keys, values, mask, similarity):
  """The attention policy: slots with a non-finite key are empty; no valid slot reads
  zeros; valid slots but none usable read NaN; otherwise softmax over the usable slots."""
  n = keys.shape[0]
  key_ok = np.all(np.isfinite(keys), axis=-1)
  s = _np_scores(q, np.where(key_ok[:, None], keys, 0), similarity)
  valid = np.broadcast_to(np.ones(n, bool) if mask is None else mask, s.shape)
  usable = valid & key_ok
  w = np.zeros(s.shape)
  for idx in np.ndindex(s.shape[:-1]):
    if not valid[idx].any():
      continue
    if not usable[idx].any():
      w[idx] = np.nan
      continue
    with np.errstate(all="ignore"):
      e = np.exp(s[idx][usable[idx]] - np.max(s[idx][usable[idx]]))
      w[idx][usable[idx]] = e / e.sum()
  read = np.zeros(s.shape[:-1] + (values.shape[1],))
  for idx in np.ndindex(s.shape[:-1]):
    u = usable[idx]
    if u.any():  # only the usable slots' values are read
      read[idx] = w[idx][u] @ values[u]
    elif valid[idx].any():  # a broken memory reads NaN
      read[idx] = np.nan
  return read, w


def _np_bind(a, b):
  d = len(a)
  return np.array([sum(a[k] * b[(j - k) % d] for k in range(d)) for j in range(d)])


def _np_unbind(trace, key):
  d = len(key)
  return np.array([sum(key[m] * trace[(j + m) % d] for m in range(d)) for j in range(d)])


# ------------------------------------------------------------------- hard retrieval


@functools.partial(jax.jit, static_argnames=("k", "similarity", "block_size"))
def _top_k_read(q, keys, values, mask, k, similarity, block_size):
  return top_k_read(q, keys, values, k, similarity, mask=mask, block_size=block_size)


@functools.partial(jax.jit, static_argnames=("similarity",))
def _argmax_read(q, keys, values, mask, similarity):
  return argmax_read(q, keys, values, similarity, mask=mask)


# (N slots, key size K, query batch shape, k, key block size): few shapes, so that the
# compiled programs are reused; N = 300 takes the two-stage top-k, block size 4 the
# blocked search with a remainder block, batch (0,) no query at all.
_SHAPES = [
  (1, 1, (), 1, None),
  (5, 4, (3,), 2, None),
  (5, 4, (2, 2), 5, 4),
  (5, 1, (0,), 1, None),
  (7, 4, (3,), 3, 4),
  (300, 4, (3,), 2, None),
  (300, 4, (), 1, 128),
]


@st.composite
def _retrieval_cases(draw, similarities, integer):
  n, size, batch, k, block_size = _uniform(draw, _SHAPES)
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  if integer:  # small integers: every score is exact, so ties are exact too
    keys = rng.integers(-4, 5, (n, size)).astype(np.float64)
    q = rng.integers(-4, 5, batch + (size,)).astype(np.float64)
  else:
    keys, q = rng.standard_normal((n, size)), rng.standard_normal(batch + (size,))
  for _ in range(draw(st.integers(0, 3))):  # NaN / inf entries in the keys
    keys[draw(st.integers(0, n - 1)), draw(st.integers(0, size - 1))] = draw(
      st.sampled_from(SPECIALS)
    )
  if q.size and draw(st.integers(0, 5)) == 0:  # now and then in a query too
    q.reshape(-1, size)[0, draw(st.integers(0, size - 1))] = draw(st.sampled_from(SPECIALS))
  mask = None
  if draw(st.booleans()):
    mask = rng.random(n) < draw(st.sampled_from([0.0, 0.5, 0.9]))
  return dict(
    q=q,
    keys=keys,
    mask=mask,
    k=k,
    similarity=draw(st.sampled_from(similarities)),
    dtype=draw(st.sampled_from(["float32"] if not integer else list(DTYPES))),
    block_size=block_size,
  )


def _count_retrieval(counts, case, scores):
  counts["cases"] += 1
  counts[case["dtype"]] += 1
  counts["NaN score"] += bool(np.isnan(scores).any())
  counts["inf score"] += bool(np.isinf(scores[~np.isnan(scores)]).any())
  counts["masked"] += case["mask"] is not None
  counts["no query (batch 0)"] += case["q"].size == 0
  counts["two-stage (N=300)"] += case["keys"].shape[0] == 300


@_settings(30)
@given(_retrieval_cases(("dot", "neg_sq_l2"), integer=True))
def test_top_k_read_equals_numpy_exactly(case):
  """Integer data: exact scores, so indices (ties included), scores and values are exact."""
  dtype = case["dtype"]
  keys, q = _rounded(case["keys"], dtype), _rounded(case["q"], dtype)
  n, k = keys.shape[0], case["k"]
  values = _rounded(np.arange(n * 2).reshape(n, 2), dtype)
  args = [jnp.asarray(x, DTYPES[dtype]) for x in (q, keys, values)]
  mask = None if case["mask"] is None else jnp.asarray(case["mask"])
  got = _timed(
    _top_k_read, *args, mask, k=k, similarity=case["similarity"], block_size=case["block_size"]
  )
  scores = _np_scores(q, keys, case["similarity"])
  if case["mask"] is not None:
    scores = np.where(case["mask"], scores, -np.inf)
  want_s, want_i = _np_top_k(scores, k)
  assert got.indices.shape == q.shape[:-1] + (k,) and got.indices.dtype == jnp.int32
  assert got.scores.dtype == DTYPES[dtype] and got.values.dtype == DTYPES[dtype]
  np.testing.assert_array_equal(np.asarray(got.indices), want_i)
  want_s = np.asarray(want_s.astype(DTYPES[dtype]), np.float64)
  np.testing.assert_array_equal(np.asarray(got.scores, np.float64), want_s)
  np.testing.assert_array_equal(np.asarray(got.values, np.float64), values[want_i])
  if k == 1:
    top = _timed(_argmax_read, *args, mask, similarity=case["similarity"])
    np.testing.assert_array_equal(np.asarray(top.indices), want_i[..., 0])
    np.testing.assert_array_equal(np.asarray(top.values, np.float64), values[want_i[..., 0]])
  _count_retrieval(COUNTS["top-k exact (dot, L2)"], case, want_s)


@_settings(16)
@given(_retrieval_cases(("cosine", "dot", "neg_sq_l2"), integer=False))
def test_top_k_search_is_a_correct_top_k(case):
  """Real-valued data (float32): the chosen slots are a top-k of the numpy scores, in
  order, up to rounding; NaN scores only when fewer than k other slots exist."""
  q, keys, k = case["q"].astype(np.float32), case["keys"].astype(np.float32), case["k"]
  mask = None if case["mask"] is None else jnp.asarray(case["mask"])
  values = jnp.zeros((keys.shape[0], 1))
  got = _timed(
    _top_k_read,
    q,
    keys,
    values,
    mask,
    k=k,
    similarity=case["similarity"],
    block_size=case["block_size"],
  )
  scores = _np_scores(q, keys, case["similarity"])
  if case["mask"] is not None:
    scores = np.where(case["mask"], scores, -np.inf)
  idx, s = np.asarray(got.indices), np.asarray(got.scores, np.float64)
  rank = np.where(np.isnan(scores), -np.inf, scores)
  tol = 1e-4 * (1 + np.max(np.abs(np.where(np.isfinite(scores), scores, 0)), initial=0))
  for row in np.ndindex(scores.shape[:-1]):
    r, i = rank[row], idx[row]
    assert len(set(i.tolist())) == k and np.all((0 <= i) & (i < len(r)))
    want = scores[row][i]
    np.testing.assert_array_equal(np.isnan(s[row]), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(s[row][finite], want[finite], rtol=1e-4, atol=tol)
    np.testing.assert_array_equal(
      s[row][~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]
    )
    chosen, rest = r[i], np.delete(r, i)
    assert np.all(chosen[:-1] >= chosen[1:] - tol)  # best first
    if rest.size:
      assert chosen.min() >= rest.max() - tol  # nothing left out ranks higher
    if np.sum(r > -np.inf) >= k:  # enough valid non-NaN slots: no NaN or empty slot chosen
      assert np.all(chosen > -np.inf) and not np.isnan(s[row]).any()
  _count_retrieval(COUNTS["top-k set (cosine, dot, L2)"], case, scores)


# --------------------------------------------------------------------- soft attention


@functools.partial(jax.jit, static_argnames=("similarity",))
def _attention(q, keys, values, mask, similarity):
  return attention_read(q, keys, values, mask=mask, similarity=similarity)


# (N slots, query batch shape, similarity, mask kind): few shapes (compiled programs reused)
_ATTENTION_SHAPES = [
  (0, (2,), "scaled_dot", "none"),
  (1, (), "cosine", "slots"),
  (5, (2,), "scaled_dot", "none"),
  (5, (2,), "dot", "slots"),
  (5, (2,), "cosine", "per query"),
  (5, (), "scaled_dot", "per query"),
]
TOLERANCE = {"float32": (1e-5, 1e-5), "float16": (5e-3, 1e-2), "bfloat16": (3e-2, 8e-2)}


@_settings(40)
@given(st.data())
def test_attention_read_equals_numpy(data):
  draw = data.draw
  n, batch, similarity, mask = _uniform(draw, _ATTENTION_SHAPES)
  dtype = draw(st.sampled_from(list(DTYPES)))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  keys, values = rng.uniform(-2, 2, (n, 3)), rng.uniform(-3, 3, (n, 2))
  q = rng.uniform(-2, 2, batch + (3,))
  for _ in range(draw(st.integers(0, 3)) if n else 0):  # corrupt slots: key (and value)
    slot = draw(st.integers(0, n - 1))
    keys[slot, draw(st.integers(0, 2))] = draw(st.sampled_from(SPECIALS))
    if draw(st.booleans()):
      values[slot, draw(st.integers(0, 1))] = draw(st.sampled_from(SPECIALS))
  nan_query = q.size > 0 and draw(st.integers(0, 7)) == 0
  if nan_query:
    q.reshape(-1, 3)[0, 0] = np.nan
  mask = {
    "none": None,
    "slots": rng.random(n) < 0.7,
    "per query": rng.random(batch + (n,)) < 0.7,
  }[mask]
  keys, values, q = _rounded(keys, dtype), _rounded(values, dtype), _rounded(q, dtype)
  jmask = None if mask is None else jnp.asarray(mask)
  args = [jnp.asarray(x, DTYPES[dtype]) for x in (q, keys, values)]
  read, weights = _timed(_attention, *args, jmask, similarity=similarity)
  assert read.shape == batch + (2,) and weights.shape == batch + (n,)
  assert read.dtype == DTYPES[dtype]
  want_read, want_w = _np_attention(q, keys, values, mask, similarity)
  rtol, atol = TOLERANCE[dtype]
  np.testing.assert_allclose(np.asarray(weights, np.float64), want_w, rtol=rtol, atol=atol)
  np.testing.assert_allclose(np.asarray(read, np.float64), want_read, rtol=rtol, atol=atol * 6)
  counts = COUNTS["attention read"]
  counts["cases"] += 1
  counts[dtype] += 1
  counts["corrupted slot"] += bool(n and not np.isfinite(keys).all())
  counts["reads NaN"] += bool(np.isnan(want_read).any())
  counts["empty memory (N=0)"] += n == 0
  counts["NaN query"] += nan_query


@functools.partial(jax.jit, static_argnames=("similarity",))
def _attention_grads(q, keys, values, similarity):
  return jax.grad(
    lambda q, k, v: jnp.sum(attention_read(q, k, v, similarity=similarity)[0]), (0, 1, 2)
  )(q, keys, values)


@_settings(20)
@given(st.data())
def test_attention_gradients_stay_finite_with_corrupted_slots(data):
  draw = data.draw
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  keys = rng.standard_normal((5, 3)).astype(np.float32)
  values = rng.standard_normal((5, 2)).astype(np.float32)
  bad = sorted(set(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))))
  for slot in bad:
    keys[slot, draw(st.integers(0, 2))] = draw(st.sampled_from(SPECIALS))
    values[slot] = np.nan
  q = rng.standard_normal((3,)).astype(np.float32)
  similarity = draw(st.sampled_from(["scaled_dot", "cosine"]))
  gq, gk, gv = _timed(_attention_grads, q, keys, values, similarity=similarity)
  if len(bad) < 5:  # some slot usable: every gradient finite, none for corrupted slots
    assert np.isfinite(np.asarray(gq)).all()
    assert np.isfinite(np.asarray(gk)).all() and np.isfinite(np.asarray(gv)).all()
    assert np.all(np.asarray(gk)[bad] == 0) and np.all(np.asarray(gv)[bad] == 0)
  counts = COUNTS["attention gradients"]
  counts["cases"] += 1
  counts[f"{len(bad)} corrupted"] += 1


# -------------------------------------------------------------------- memory families


@functools.partial(jax.jit, static_argnames=("num_slots", "k"))
def _kv_run(keys, values, active, query, num_slots, k):
  state = kv.init_state(num_slots, keys.shape[1], values.shape[1])
  state = kv.write_batch(state, keys, values, mask=active, policy="ring")
  return state, kv.read(state, query, k=k, similarity="dot")


@_settings(20)
@given(st.data())
def test_kv_ring_writes_then_top_k_read(data):
  """M ring writes into N slots, then a top-k read: item i sits in slot i % N."""
  draw = data.draw
  n, m = draw(st.sampled_from([1, 3])), draw(st.integers(1, 5))
  k = draw(st.sampled_from(sorted({1, n})))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  keys = rng.integers(-3, 4, (5, 3)).astype(np.float32)  # the first m are written
  values = rng.integers(-3, 4, (5, 2)).astype(np.float32)
  for _ in range(draw(st.integers(0, 2))):
    keys[draw(st.integers(0, m - 1)), draw(st.integers(0, 2))] = np.nan
  query = rng.integers(-3, 4, (2, 3)).astype(np.float32)
  active = np.arange(5) < m
  state, hit = _timed(_kv_run, keys, values, active, query, num_slots=n, k=k)
  want_keys, want_values = np.zeros((n, 3)), np.zeros((n, 2))
  for i in range(m):
    want_keys[i % n], want_values[i % n] = keys[i], values[i]
  valid = np.arange(n) < min(m, n)
  np.testing.assert_array_equal(np.asarray(state.keys), want_keys)
  np.testing.assert_array_equal(np.asarray(state.values), want_values)
  np.testing.assert_array_equal(np.asarray(state.valid), valid)
  assert int(state.step) == m and state.keys.dtype == jnp.float32
  scores = np.where(valid, _np_scores(query, want_keys, "dot"), -np.inf)
  want_s, want_i = _np_top_k(scores, k)
  np.testing.assert_array_equal(np.asarray(hit.indices), want_i)
  np.testing.assert_array_equal(np.asarray(hit.scores), want_s)
  np.testing.assert_array_equal(np.asarray(hit.values), want_values[want_i])
  counts = COUNTS["kv store"]
  counts["cases"] += 1
  counts["NaN key stored"] += bool(np.isnan(want_keys).any())
  counts["evictions"] += m > n


def _where_active(active, new, old):
  return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)


@functools.partial(jax.jit, static_argnames=("num_slots",))
def _attention_memory_run(keys, values, active, query, num_slots):
  state = attention_memory.init_state(num_slots, keys.shape[1], values.shape[1])

  def step(s, x):
    return _where_active(x[2], attention_memory.write(s, x[0], x[1]), s), None

  state, _ = jax.lax.scan(step, state, (keys, values, active))
  return state, attention_memory.read(state, query)


@_settings(25)
@given(st.data())
def test_attention_memory_ring_writes_then_read(data):
  draw = data.draw
  n, m = draw(st.sampled_from([1, 3])), draw(st.integers(0, 4))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  keys, values = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))  # first m written
  if m and draw(st.booleans()):
    slot = draw(st.integers(0, m - 1))
    keys[slot, 0], values[slot, 1] = np.nan, np.nan
  keys, values = keys.astype(np.float32), values.astype(np.float32)
  query = rng.standard_normal((3,)).astype(np.float32)
  active = np.arange(4) < m
  state, (read, weights) = _timed(_attention_memory_run, keys, values, active, query, num_slots=n)
  want_keys, want_values = np.zeros((n, 3)), np.zeros((n, 2))
  for i in range(m):
    want_keys[i % n], want_values[i % n] = keys[i], values[i]
  valid = np.arange(n) < min(m, n)
  want_read, want_w = _np_attention(query, want_keys, want_values, valid, "scaled_dot")
  np.testing.assert_allclose(np.asarray(weights), want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-5)
  counts = COUNTS["attention memory"]
  counts["cases"] += 1
  counts["empty"] += m == 0
  counts["reads NaN"] += bool(np.isnan(want_read).any())
  counts["corrupted slot kept"] += bool(np.isnan(want_keys).any())


@jax.jit
def _matrix_run(vectors, addresses, strengths, query, sharpness):
  state = matrix.init_state(4, 3, init_value=0.1)
  state, _ = jax.lax.scan(
    lambda s, x: (matrix.write(s, x[0], x[1], x[2]), None), state, (vectors, addresses, strengths)
  )
  by_address = matrix.read_by_address(state, jnp.arange(4))
  return state, by_address, matrix.read_by_content(state, query, "cosine", sharpness)


@_settings(25)
@given(st.data())
def test_matrix_additive_writes_and_reads(data):
  draw = data.draw
  m = draw(st.integers(1, 4))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  vectors = rng.standard_normal((4, 3)).astype(np.float32)
  if draw(st.integers(0, 3)) == 0:
    vectors[draw(st.integers(0, m - 1)), draw(st.integers(0, 2))] = np.nan
  addresses = rng.integers(0, 4, 4).astype(np.int32)
  strengths = rng.uniform(0, 2, 4).astype(np.float32)
  vectors[m:], strengths[m:] = 0, 0  # 4 - m writes of nothing
  query = rng.standard_normal(3).astype(np.float32)
  sharpness = np.float32(draw(st.sampled_from([0.0, 1.0, 5.0])))
  state, rows, (read, w) = _timed(_matrix_run, vectors, addresses, strengths, query, sharpness)
  want = np.full((4, 3), 0.1)
  for v, a, s in zip(vectors, addresses, strengths, strict=True):
    want[a] += s * np.float64(v)
  np.testing.assert_allclose(np.asarray(state.memory), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rows), want, rtol=1e-5, atol=1e-6)
  ok = np.all(np.isfinite(want), -1)
  s = _np_scores(query, np.where(ok[:, None], want, 0), "cosine") * sharpness
  want_w = np.zeros(4)
  if ok.any():
    e = np.exp(s[ok] - s[ok].max())
    want_w[ok] = e / e.sum()
  else:
    want_w[:] = np.nan
  np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5, atol=1e-6)
  want_read = want_w[ok] @ want[ok] if ok.any() else np.full(3, np.nan)
  np.testing.assert_allclose(np.asarray(read), want_read, rtol=1e-5, atol=1e-5)
  counts = COUNTS["matrix memory"]
  counts["cases"] += 1
  counts["corrupted row"] += bool(not ok.all())


@jax.jit
def _hrr_run(keys, values, weights, probe):
  state = holographic.init_state(keys.shape[1])
  state, _ = jax.lax.scan(
    lambda s, x: (holographic.write(s, x[0], x[1], x[2]), None), state, (keys, values, weights)
  )
  return state, holographic.read(state, probe)


@_settings(20)
@given(st.data())
def test_holographic_writes_and_read(data):
  draw = data.draw
  d, m = draw(st.sampled_from([4, 8])), draw(st.integers(1, 3))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  keys = (rng.standard_normal((3, d)) / np.sqrt(d)).astype(np.float32)
  values = (rng.standard_normal((3, d)) / np.sqrt(d)).astype(np.float32)
  weights = rng.choice([0.0, 0.5, 1.0], 3).astype(np.float32)
  weights[m:] = 0  # 3 - m writes of nothing
  probe = keys[draw(st.integers(0, m - 1))]
  state, read = _timed(_hrr_run, keys, values, weights, probe)
  trace = sum(
    w * _np_bind(np.float64(k), np.float64(v))
    for k, v, w in zip(keys, values, weights, strict=True)
  )
  np.testing.assert_allclose(np.asarray(state.trace), trace, rtol=1e-4, atol=1e-5)
  assert int(state.count) == int(np.sum(weights != 0))
  np.testing.assert_allclose(
    np.asarray(read), _np_unbind(trace, np.float64(probe)), rtol=1e-4, atol=1e-5
  )
  COUNTS["holographic memory"]["cases"] += 1


# --------------------------------------------------------------------- argument checks

# (constructor, the size arguments it takes with their minimum, a valid call's kwargs)
_CONSTRUCTORS = {
  "kv.init_state": (
    kv.init_state,
    {"num_slots": 1, "key_size": 1, "value_size": 1},
    lambda s: s.keys.shape,
  ),
  "attention.init_state": (
    attention_memory.init_state,
    {"num_slots": 1, "key_size": 1, "value_size": 1},
    lambda s: s.keys.shape,
  ),
  "matrix.init_state": (
    matrix.init_state,
    {"num_slots": 1, "slot_size": 1},
    lambda s: s.memory.shape,
  ),
  "holographic.init_state": (holographic.init_state, {"dim": 1}, lambda s: s.trace.shape),
  "gated.init_state": (gated.init_state, {"num_slots": 1, "size": 1}, lambda s: s.slots.shape),
  "ntm.init_state": (
    ntm.init_state,
    {"num_slots": 1, "slot_size": 1, "num_read_heads": 0},
    lambda s: s.memory.shape,
  ),
}
_SIZE_VALUES = st.one_of(
  st.integers(-2, 5),
  st.integers(-2, 5).map(np.int64),
  st.integers(-2, 5).map(np.int32),
  st.integers(0, 5).map(np.uint8),
  st.booleans(),
  st.booleans().map(np.bool_),
  st.floats(-2, 5, allow_nan=False),
  st.integers(0, 5).map(np.float32),
  st.sampled_from(["3", None, (3,)]),
)


def _integral(value):
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@_settings(100)
@given(st.sampled_from(sorted(_CONSTRUCTORS)), st.data())
def test_sizes_take_any_integer_and_name_the_argument_otherwise(name, data):
  fn, sizes, shape_of = _CONSTRUCTORS[name]
  arg = data.draw(st.sampled_from(sorted(sizes)))
  value = data.draw(_SIZE_VALUES)
  kwargs = {a: 2 for a in sizes} | {arg: value}
  counts = COUNTS["size arguments"]
  counts["cases"] += 1
  if _integral(value) and value >= sizes[arg]:
    state = fn(**kwargs)
    assert all(type(d) is int for d in shape_of(state))
    counts["accepted " + type(value).__name__] += 1
  elif _integral(value):
    with pytest.raises(ValueError, match=arg):
      fn(**kwargs)
    counts["ValueError (too small)"] += 1
  else:
    with pytest.raises(TypeError, match=arg):
      fn(**kwargs)
    counts["TypeError (" + type(value).__name__ + ")"] += 1


@_settings(60)
@given(st.data())
def test_k_checks_and_empty_memories(data):
  draw = data.draw
  n = draw(st.sampled_from([0, 1, 3]))
  keys = np.ones((n, 2), np.float32)
  q = np.ones((2,), np.float32)
  k = draw(st.one_of(st.integers(-1, 5), st.integers(-1, 5).map(np.int64), st.floats(0, 3)))
  counts = COUNTS["k and empty memories"]
  counts["cases"] += 1
  if not _integral(k):
    with pytest.raises(TypeError, match="k must be a Python int or a NumPy integer"):
      top_k_search(q, keys, k)
    counts["TypeError"] += 1
  elif n == 0:
    with pytest.raises(ValueError, match=f"k={k}: the memory has no slots"):
      top_k_search(q, keys, k)
    counts["no slots"] += 1
  elif not 1 <= k <= n:
    with pytest.raises(ValueError, match=rf"k={k} must be in \[1, {n}\] \(the memory has {n}"):
      top_k_search(q, keys, k)
    counts["k out of range"] += 1
  else:
    s, i = _search(q, keys, k=int(k))
    assert s.shape == i.shape == (k,)
    counts["ok"] += 1


_search = jax.jit(top_k_search, static_argnames=("k",))


@pytest.mark.parametrize("batch", [(), (2,)])
def test_empty_memory_attention_reads_zeros(batch):
  """No slot at all (N = 0): attention reads zeros with empty weights, never NaN."""
  read, w = attention_read(np.ones(batch + (2,), np.float32), np.ones((0, 2)), np.ones((0, 3)))
  assert read.shape == batch + (3,) and w.shape == batch + (0,)
  np.testing.assert_array_equal(np.asarray(read), 0)
  COUNTS["k and empty memories"]["cases"] += 1


_LIST_READS = {
  "top_k_search": lambda q: top_k_search(q, np.eye(3, dtype=np.float32), 2),
  "attention_read": lambda q: attention_read(q, np.eye(3, dtype=np.float32), np.ones((3, 2))),
  "kv.read": lambda q: kv.read(
    kv.write(kv.init_state(3, 3, 2), [1.0, 0.0, 0.0], [1.0, 2.0]), q, k=2
  ),
  "attention.read": lambda q: attention_memory.read(
    attention_memory.write(attention_memory.init_state(3, 3, 2), [1.0, 0.0, 0.0], [1.0, 2.0]), q
  ),
  "matrix.read_by_content": lambda q: matrix.read_by_content(
    matrix.init_state(4, 3, init_value=0.1), q
  ),
  "holographic.read": lambda q: holographic.read(
    holographic.write(holographic.init_state(3), [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]), q
  ),
  "hrr.bind": lambda q: hrr.bind(q, [0.0, 1.0, 0.0]),
}


@_settings(14)
@given(
  st.sampled_from(sorted(_LIST_READS)),
  st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=3, max_size=3),
  st.booleans(),
)
def test_python_lists_are_queries_like_arrays(name, values, as_ints):
  """A list of floats reads like the float32 array; a list of ints (an integer array) is
  refused with a TypeError naming the argument."""
  read = _LIST_READS[name]
  counts = COUNTS["Python lists"]
  counts["cases"] += 1
  if as_ints:
    with pytest.raises(TypeError, match="floating dtype"):
      read([int(v) for v in values])
    counts["int list refused"] += 1
    return
  got, want = read(list(values)), read(np.asarray(values, np.float32))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, want)
  counts["float list"] += 1


@_settings(30)
@given(
  st.sampled_from(["int32", "int8", "uint8", "bool"]),
  st.sampled_from(["query", "keys", "values"]),
)
def test_integer_dtypes_are_refused_by_name(dtype, which):
  arrays = {
    "query": np.ones((2, 3), np.float32),
    "keys": np.ones((4, 3), np.float32),
    "values": np.ones((4, 2), np.float32),
  }
  arrays[which] = arrays[which].astype(dtype)
  with pytest.raises(TypeError, match=f"{which} must have a floating dtype"):
    attention_read(arrays["query"], arrays["keys"], arrays["values"])
  if which != "values":
    with pytest.raises(TypeError, match=f"{which} must have a floating dtype"):
      top_k_search(arrays["query"], arrays["keys"], 2)
  COUNTS["integer dtypes"]["cases"] += 1
