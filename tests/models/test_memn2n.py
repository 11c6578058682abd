"""Tests for memjax.models.memn2n: known answers, a numpy reference, LS, RN, tying, training."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.babi import train as babi_train
from experiments.babi.configs import default as babi_default
from memjax.data.babi import synthetic
from memjax.models import memn2n
from memjax.models.memn2n import MemN2N


def _toy_batch(seed=0, batch=3, slots=5, words=4, vocab=12):
  """Random stories with a varying number of sentences (>= 1) and of words per sentence."""
  rng = np.random.default_rng(seed)
  story = np.zeros((batch, slots, words), np.int32)
  for b in range(batch):
    for i in range(rng.integers(1, slots + 1)):
      n = rng.integers(1, words + 1)
      story[b, i, :n] = rng.integers(1, vocab, n)
  query = np.zeros((batch, words), np.int32)
  query[:, :2] = rng.integers(1, vocab, (batch, 2))
  return jnp.asarray(story), jnp.asarray(query)


def _init(model, *args):
  return jax.jit(model.init)(jax.random.key(0), *args)


def _random_params(model, story, query, scale=0.3, seed=0, dtype=np.float32):
  """N(0, scale) parameters of ``model``'s shapes (no init compiled): peaked attention."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), story, query)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, scale, s.shape).astype(dtype)), shapes)


# ---------------------------------------------------------------- independent numpy reference


def _np_pe(tokens, d, pe_length=0):
  """l_kj of each word: the paper's (J = the sentence's words) or, with ``pe_length`` J > 0,
  the reference Matlab code's ``1 + 4 (k - (d+1)/2) (j - (J+1)/2) / (d J)``."""
  out = np.zeros(tokens.shape + (d,))
  for idx in np.ndindex(tokens.shape[:-1]):
    length = max(int(np.sum(tokens[idx] != 0)), 1)
    for j in range(tokens.shape[-1]):
      if tokens[idx][j] == 0:
        continue
      for k in range(d):
        jj, kk = j + 1, k + 1
        if pe_length > 0:
          big_j = pe_length
          out[idx + (j, k)] = 1 + 4 * (kk - (d + 1) / 2) * (jj - (big_j + 1) / 2) / (d * big_j)
        else:
          out[idx + (j, k)] = (1 - jj / length) - (kk / d) * (1 - 2 * jj / length)
  return out


def _np_forward(
  params,
  story,
  query,
  *,
  hops,
  encoding,
  temporal,
  tying,
  linear,
  relu=False,
  empty=False,
  pe_length=0,
  num_slots=None,
):
  """Loop-by-loop MemN2N forward in numpy, straight from the paper's equations.

  ``empty``: the other ``num_slots - n`` memory slots (default: the story's rows) are empty.
  """
  p = {k: np.array(v, np.float64) for k, v in params["params"].items()}
  for k in p:
    if k.startswith("embed"):
      p[k][0] = 0.0
  story, query = np.asarray(story), np.asarray(query)
  d = next(v for k, v in p.items() if k.startswith("embed")).shape[1]
  if tying == "adjacent":
    a = [p[f"embed_{k}"] for k in range(hops)]
    c = [p[f"embed_{k + 1}"] for k in range(hops)]
    ta = [p.get(f"time_{k}") for k in range(hops)]
    tc = [p.get(f"time_{k + 1}") for k in range(hops)]
    b, w, h = p["embed_0"], p[f"embed_{hops}"].T, np.eye(d)
  else:
    a, c = [p["embed_A"]] * hops, [p["embed_C"]] * hops
    ta, tc = [p.get("time_A")] * hops, [p.get("time_C")] * hops
    b, w, h = p["embed_B"], p["answer_W"], p["H"]

  def embed(table, tokens):
    lw = _np_pe(tokens, d, pe_length) if encoding == "pe" else (tokens != 0)[..., None] * np.ones(d)
    return np.sum(table[tokens] * lw, axis=-2)

  logits, attention = [], []
  for e in range(story.shape[0]):
    valid = [i for i in range(story.shape[1]) if np.any(story[e, i] != 0)]
    n = len(valid)
    u = embed(b, query[e])
    att = np.zeros((hops, story.shape[1]))
    for k in range(hops):
      m = np.stack([embed(a[k], story[e, i]) for i in valid])
      cc = np.stack([embed(c[k], story[e, i]) for i in valid])
      if temporal:  # age: 0 for the newest sentence
        m = m + np.stack([ta[k][n - 1 - i] for i in range(n)])
        cc = cc + np.stack([tc[k][n - 1 - i] for i in range(n)])
      scores = m @ u
      if linear:
        prob = scores
      elif empty:  # the other memory slots are empty: zero vectors, score 0, read 0
        zeros = np.zeros((num_slots or story.shape[1]) - n)
        allp = np.exp(np.concatenate([scores, zeros]) - max(scores.max(), 0))
        prob = (allp / allp.sum())[:n]
      else:
        prob = np.exp(scores - scores.max())
        prob = prob / prob.sum()
      att[k, valid] = prob
      u = u @ h + prob @ cc
      if relu:
        u = np.maximum(u, 0)
    logits.append(u @ w)
    attention.append(att)
  return np.stack(logits), np.stack(attention)


@pytest.mark.parametrize(
  "hops,encoding,temporal,tying,linear,relu,pe_length",
  [
    (1, "bow", False, "adjacent", False, False, 0),
    (2, "pe", True, "adjacent", False, False, 0),
    (3, "pe", True, "adjacent", True, False, 0),
    (3, "pe", True, "layerwise", False, False, 0),
    (2, "bow", True, "layerwise", True, False, 0),
    (3, "pe", True, "adjacent", False, True, 0),
    # The reference code's PE (J = the longest sentence: here the 4 word slots, or longer).
    (3, "pe", True, "adjacent", False, False, 4),
    (2, "pe", True, "layerwise", True, False, 7),
  ],
)
def test_matches_numpy_reference(hops, encoding, temporal, tying, linear, relu, pe_length):
  story, query = _toy_batch()
  model = MemN2N(
    vocab_size=12,
    embedding_size=6,
    num_slots=5,
    num_hops=hops,
    encoding=encoding,
    temporal=temporal,
    tying=tying,
    relu=relu,
    pe_length=pe_length,
  )
  params = model.init(jax.random.key(1), story, query)
  logits, attention = model.apply(params, story, query, linear=linear)
  ref_logits, ref_attention = _np_forward(
    params,
    story,
    query,
    hops=hops,
    encoding=encoding,
    temporal=temporal,
    tying=tying,
    linear=linear,
    relu=relu,
    pe_length=pe_length,
  )
  np.testing.assert_allclose(attention, ref_attention, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)


def test_default_babi_model_matches_numpy_reference():
  """The README's bAbI model (configs/default.py): PE with the reference code's J from
  ``pe_length=-1`` (the data's longest sentence), 3 hops, TE, empty attention over 50 slots."""
  config = babi_default.get_config()
  story, query = _toy_batch(seed=2)
  model = babi_train.make_model(config, vocab_size=12, sentence_size=story.shape[-1])
  assert model.pe_length == story.shape[-1] and model.empty_attention
  params = _random_params(model, story, query)  # peaked attention: the J matters
  logits, attention = jax.jit(model.apply)(params, story, query)
  ref_logits, ref_attention = _np_forward(
    params,
    story,
    query,
    hops=3,
    encoding="pe",
    temporal=True,
    tying="adjacent",
    linear=False,
    empty=True,
    pe_length=story.shape[-1],
    num_slots=config.data.memory_size,
  )
  np.testing.assert_allclose(attention, ref_attention, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- known answers and invariants


@pytest.mark.parametrize("linear", [False, True])
def test_empty_attention_matches_numpy_reference(linear):
  story, query = _toy_batch(seed=7)
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=3, empty_attention=True)
  params = _init(model, story, query)
  logits, attention = jax.jit(model.apply, static_argnames="linear")(
    params, story, query, linear=linear
  )
  ref_logits, ref_attention = _np_forward(
    params,
    story,
    query,
    hops=3,
    encoding="pe",
    temporal=True,
    tying="adjacent",
    linear=linear,
    empty=True,
  )
  np.testing.assert_allclose(attention, ref_attention, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
  # The empty slots count even when the story is cut to fewer rows (length buckets).
  cut = story.at[:, 3:].set(0)
  full = jax.jit(model.apply)(params, cut, query)
  short = jax.jit(model.apply)(params, cut[:, :3], query)
  np.testing.assert_allclose(short[0], full[0], rtol=1e-5, atol=1e-6)


def test_position_encoding_known_answer():
  # J = 2 words, d = 2: j=1 -> (1 - 1/2) - (k/2)(1 - 1) = 0.5; j=2 -> 0 - (k/2)(1 - 2) = k/2.
  pe = memn2n.position_encoding(jnp.array([[5, 7, 0]]), 2)
  np.testing.assert_allclose(pe[0], [[0.5, 0.5], [0.5, 1.0], [0.0, 0.0]], atol=1e-7)
  # J = 4, d = 4, j = 1, k = 4: (1 - 1/4) - 1 * (1 - 2/4) = 0.25.
  pe = memn2n.position_encoding(jnp.array([1, 2, 3, 4]), 4)
  assert pe.shape == (4, 4)
  np.testing.assert_allclose(pe[0, 3], 0.25, atol=1e-7)
  np.testing.assert_allclose(pe, _np_pe(np.array([1, 2, 3, 4]), 4), atol=1e-6)


def test_reference_position_encoding_known_answer():
  # J = 4, d = 2: l_kj = 1 + 4 (k - 1.5)(j - 2.5) / 8; k=1, j=1 -> 1 + 4(-0.5)(-1.5)/8 = 1.375.
  pe = memn2n.reference_position_encoding(jnp.array([[3, 4, 0]]), 2, 4)
  np.testing.assert_allclose(pe[0], [[1.375, 0.625], [1.125, 0.875], [0.0, 0.0]], atol=1e-6)
  tokens = np.array([[3, 4, 0, 0, 0], [1, 2, 3, 4, 5]])
  np.testing.assert_allclose(
    memn2n.reference_position_encoding(jnp.asarray(tokens), 6, 7), _np_pe(tokens, 6, 7), atol=1e-6
  )


def test_negative_pe_length_is_refused():
  # -1 is a config value (experiments.babi resolves it to the longest sentence), not a J.
  story, query = _toy_batch()
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, pe_length=-1)
  with pytest.raises(ValueError, match="pe_length=-1 must be >= 0"):
    model.init(jax.random.key(0), story, query)


def test_sentence_ages_newest_is_zero():
  story = jnp.zeros((2, 4, 2), jnp.int32).at[0, :3, 0].set(1).at[1, :1, 0].set(3)
  np.testing.assert_array_equal(memn2n.sentence_ages(story), [[2, 1, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(memn2n.memory_mask(story), [[1, 1, 1, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("hops", [1, 2, 3])
def test_shapes_and_masked_attention(tying, hops):
  story, query = _toy_batch(batch=4)
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=hops, tying=tying)
  params = model.init(jax.random.key(0), story, query)
  logits, attention = model.apply(params, story, query)
  assert logits.shape == (4, 12) and attention.shape == (4, hops, 5)
  mask = np.asarray(memn2n.memory_mask(story))
  att = np.asarray(attention)
  assert np.all(att[~np.broadcast_to(mask[:, None], att.shape)] == 0)
  np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)


def test_empty_rows_and_null_word_do_not_matter():
  story, query = _toy_batch(seed=3)
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=3)
  params = _init(model, story, query)
  apply = jax.jit(model.apply)
  logits, _ = apply(params, story, query)
  # Changing the null word's rows of every table changes nothing: they are held at zero.
  bumped = jax.tree.map(lambda x: x, params)
  bumped["params"] = {
    k: (v.at[0].add(5.0) if k.startswith("embed") else v) for k, v in params["params"].items()
  }
  np.testing.assert_allclose(apply(bumped, story, query)[0], logits, rtol=1e-6)
  # The gradient never reaches the null rows.
  grads = jax.jit(jax.grad(lambda p: model.apply(p, story, query)[0].sum()))(params)
  for k, v in grads["params"].items():
    if k.startswith("embed"):
      assert np.all(np.asarray(v[0]) == 0), k
  # A growing memory with extra empty rows (and the temporal table grown) answers the same
  # without TE (BoW has no position dependence on empty rows).
  model_bow = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, temporal=False)
  model_big = MemN2N(vocab_size=12, embedding_size=6, num_slots=8, temporal=False)
  p_bow = _init(model_bow, story, query)
  big_story = jnp.concatenate([story, jnp.zeros((3, 3, 4), jnp.int32)], axis=1)
  np.testing.assert_allclose(
    jax.jit(model_big.apply)(p_bow, big_story, query)[0],
    jax.jit(model_bow.apply)(p_bow, story, query)[0],
    rtol=1e-5,
  )


def test_fewer_rows_same_answer():
  """A batch of short stories cut to fewer memory rows answers the same (length buckets)."""
  story, query = _toy_batch(seed=5, slots=8)
  story = story.at[:, 4:].set(0)
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=8, num_hops=3)
  params = model.init(jax.random.key(0), story, query)
  full = model.apply(params, story, query)
  cut = model.apply(params, story[:, :4], query)
  np.testing.assert_allclose(cut[0], full[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cut[1], full[1][:, :, :4], rtol=1e-5, atol=1e-6)


def test_linear_start_switch():
  story, query = _toy_batch(seed=4)
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=2)
  params = model.init(jax.random.key(0), story, query)
  soft_logits, soft_att = model.apply(params, story, query)
  lin_logits, lin_att = model.apply(params, story, query, linear=True)
  # LS weights are the raw scores: they need not sum to one; the softmax ones do.
  assert not np.allclose(np.asarray(lin_att).sum(-1), 1.0)
  assert not np.allclose(lin_logits, soft_logits)
  # Hop 1's softmax weights are the softmax of the LS hop-1 scores over the valid rows.
  mask = np.asarray(memn2n.memory_mask(story))
  scores = np.where(mask, np.asarray(lin_att[:, 0]), -np.inf)
  expect = np.exp(scores - scores.max(-1, keepdims=True))
  expect /= expect.sum(-1, keepdims=True)
  np.testing.assert_allclose(soft_att[:, 0], expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("empty_attention", [False, True])
def test_traced_linear_start_matches_the_python_bool(empty_attention):
  """The training loop passes LS as a traced bool (one program for both phases)."""
  story, query = _toy_batch(seed=6)
  model = MemN2N(
    vocab_size=12, embedding_size=6, num_slots=5, num_hops=2, empty_attention=empty_attention
  )
  params = _random_params(model, story, query, seed=1)

  def loss(p, linear):
    logits, attention = model.apply(p, story, query, linear=linear)
    return jnp.sum(jax.nn.log_softmax(logits)[:, 3]), (logits, attention)

  traced = jax.jit(jax.value_and_grad(loss, has_aux=True))
  static = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
  for linear in (False, True):
    (_, out), grads = traced(params, jnp.asarray(linear))
    (_, want), want_grads = static(params, linear)
    chex.assert_trees_all_close(out, want, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads, want_grads, rtol=1e-5, atol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert traced._cache_size() == 1  # one compiled program served both phases
  with pytest.raises(ValueError, match=r"linear must be a bool scalar, got shape \(3,\)"):
    jax.eval_shape(lambda p: model.apply(p, story, query, linear=jnp.zeros(3, bool)), params)


def test_tying_parameters():
  story, query = _toy_batch()
  adj = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=3).init(
    jax.random.key(0), story, query
  )["params"]
  assert sorted(adj) == sorted([f"embed_{k}" for k in range(4)] + [f"time_{k}" for k in range(4)])
  lw = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=3, tying="layerwise").init(
    jax.random.key(0), story, query
  )["params"]
  assert sorted(lw) == ["H", "answer_W", "embed_A", "embed_B", "embed_C", "time_A", "time_C"]
  assert lw["H"].shape == (6, 6) and lw["answer_W"].shape == (6, 12)
  # Paper initialisation N(0, 0.1).
  big = _init(
    MemN2N(vocab_size=400, embedding_size=50, num_slots=50),
    jnp.zeros((1, 50, 3), jnp.int32),
    jnp.zeros((1, 3), jnp.int32),
  )
  np.testing.assert_allclose(np.std(big["params"]["embed_1"]), 0.1, rtol=0.05)
  np.testing.assert_allclose(np.mean(big["params"]["embed_1"]), 0.0, atol=0.005)


def test_random_noise_ages():
  slots = 60
  story = np.zeros((64, slots, 2), np.int32)
  counts = np.random.default_rng(0).integers(1, 51, 64)
  counts[0], counts[1] = 40, 5
  for b, n in enumerate(counts):
    story[b, :n, 0] = 1
  story = jnp.asarray(story)
  base = np.asarray(memn2n.sentence_ages(story))
  noise = jax.jit(memn2n.random_noise_ages, static_argnums=(2, 3))
  gaps = 0
  for seed in range(3):
    ages = np.asarray(noise(jax.random.key(seed), story, 0.1, None))
    for b, n in enumerate(counts):
      a = ages[b, :n]
      assert np.all(np.diff(a) < 0), (b, a)  # older sentences stay older
      nblank_max = int(np.ceil(n * 0.1)) - 1
      assert a[0] <= n - 1 + nblank_max and a[-1] <= nblank_max  # at most nblank inserted
      assert np.all(ages[b, n:] == 0)
      gaps += int(a[0] - (n - 1))
    # 5 sentences: ceil(0.5) - 1 = 0 blanks, so no change.
    np.testing.assert_array_equal(ages[1], base[1])
  assert gaps > 0  # some blanks were inserted
  a0 = noise(jax.random.key(0), story, 0.1, None)
  a1 = noise(jax.random.key(1), story, 0.1, None)
  assert not np.array_equal(a0, a1)
  # Capped at the number of time embeddings.
  capped = noise(jax.random.key(0), story, 0.1, 45)
  assert int(capped.max()) <= 44


def test_random_noise_blanks_are_uniform_subsets():
  # 25 sentences, ratio 0.1: nblank is uniform on {0, 1, 2}; given nblank = 2 the two
  # blanks are a uniform pair of the 27 positions (each position blank w.p. 2/27).
  n, batch = 25, 6000
  story = jnp.zeros((batch, 30, 2), jnp.int32).at[:, :n, 0].set(1)
  u = np.random.default_rng(0).random((batch, memn2n.random_noise_draws(30, 0.1)), np.float32)
  noise = jax.jit(memn2n.random_noise_ages_from_uniform, static_argnums=(2, 3))
  ages = np.asarray(noise(jnp.asarray(u), story, 0.1, None))[:, :n]
  nblank = np.floor(u[:, 0] * 3).astype(int)
  np.testing.assert_allclose(np.bincount(nblank, minlength=3) / batch, [1 / 3] * 3, atol=0.03)
  assert np.all(ages[:, -1] <= nblank) and np.all(ages[:, 0] <= n - 1 + nblank)
  two = ages[nblank == 2]
  blank = np.ones((len(two), n + 2), bool)
  np.put_along_axis(blank, two, False, axis=1)
  assert np.all(blank.sum(1) == 2)
  expected = len(two) * 2 / (n + 2)
  counts = blank.sum(0)
  assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts
  adjacent = np.mean(np.any(blank[:, 1:] & blank[:, :-1], axis=1))
  np.testing.assert_allclose(adjacent, (n + 1) / ((n + 2) * (n + 1) / 2), atol=0.025)


def test_random_noise_from_uniform_checks_and_known_answer():
  story = jnp.zeros((1, 30, 2), jnp.int32).at[:, :25, 0].set(1)
  with pytest.raises(ValueError, match="uniforms"):
    memn2n.random_noise_ages_from_uniform(jnp.zeros((1, 2)), story, 0.1)
  assert memn2n.random_noise_draws(30, 0.1) == 3
  # nblank = floor(0.99 * 3) = 2; the first blank goes before index 0 (newest-first), the
  # second at the end of the 26-long sequence: every sentence gets one year older.
  u = jnp.asarray([[0.99, 0.0, 0.999]])
  ages = memn2n.random_noise_ages_from_uniform(u, story, 0.1)
  np.testing.assert_array_equal(ages[0, :25], np.arange(25, 0, -1))
  np.testing.assert_array_equal(ages[0, 25:], 0)


def test_out_of_range_word_ids_give_nan():
  story, query = _toy_batch()
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5)
  params = model.init(jax.random.key(0), story, query)
  logits, _ = model.apply(params, story, query)
  assert np.all(np.isfinite(logits))
  bad = story.at[0, 0, 0].set(12)  # == vocab_size: not a word id
  logits, _ = model.apply(params, bad, query)
  assert np.all(np.isnan(logits[0])) and np.all(np.isfinite(logits[1:]))


def test_errors_name_the_argument():
  story, query = _toy_batch()
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5)
  params = model.init(jax.random.key(0), story, query)
  with pytest.raises(ValueError, match="story"):
    model.apply(params, story[0], query)
  with pytest.raises(ValueError, match="query"):
    model.apply(params, story, query[:, :2])
  with pytest.raises(ValueError, match="num_slots"):
    model.apply(params, jnp.concatenate([story, story], axis=1), query)
  with pytest.raises(ValueError, match="ages"):
    model.apply(params, story, query, ages=jnp.zeros((3, 4), jnp.int32))
  with pytest.raises(ValueError, match="tying"):
    MemN2N(vocab_size=12, embedding_size=6, num_slots=5, tying="x").init(
      jax.random.key(0), story, query
    )


class JitTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_matches_no_jit(self):
    story, query = _toy_batch()
    model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=3)
    params = model.init(jax.random.key(0), story, query)
    ref = model.apply(params, story, query)
    out = self.variant(lambda p, s, q: model.apply(p, s, q))(params, story, query)
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "kwargs, linear",
  [
    ({"empty_attention": True, "pe_length": 4}, False),  # the default bAbI model's options
    ({"tying": "layerwise"}, True),  # LW, in the linear-start phase
  ],
)
def test_gradients_checked_in_float64(kwargs, linear):
  story, query = _toy_batch()
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=5, num_hops=2, **kwargs)

  def loss(p):
    logits, _ = model.apply(p, story, query, linear=linear)
    return jnp.sum(jax.nn.log_softmax(logits)[:, 3])

  with jax.enable_x64(True):  # the model computes in its parameters' dtype
    params64 = _random_params(model, story, query, dtype=np.float64)
    assert jax.jit(loss)(params64).dtype == jnp.float64
    # Central differences with eps 1e-5: truncation ~1e-10, rounding ~1e-11.
    jax.test_util.check_grads(
      jax.jit(loss), (params64,), order=1, modes=["rev"], eps=1e-5, atol=1e-7, rtol=1e-7
    )


def test_learns_generated_task_1():
  """A short run of the paper's recipe (SGD 0.01, summed loss, clip 40) solves task 1."""
  data = synthetic.load_arrays(num_train=1000, num_test=500, memory_size=10, seed=0)
  model = MemN2N(vocab_size=len(data.vocab), embedding_size=20, num_slots=10, num_hops=1)
  train = {k: jnp.asarray(v) for k, v in data.train.items()}
  params = model.init(jax.random.key(0), train["story"][:2], train["query"][:2])
  opt = optax.chain(optax.clip_by_global_norm(40.0), optax.sgd(0.01))
  opt_state = opt.init(params)

  @jax.jit
  def epoch(params, opt_state, rng):
    n = train["answer"].shape[0] // 32 * 32
    order = jax.random.permutation(rng, train["answer"].shape[0])[:n].reshape(-1, 32)

    def step(carry, idx):
      params, opt_state = carry

      def loss(p):
        logits, _ = model.apply(p, train["story"][idx], train["query"][idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, train["answer"][idx]).sum()

      grads = jax.grad(loss)(params)
      updates, opt_state = opt.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt_state), order)[0]

  for e in range(15):
    params, opt_state = epoch(params, opt_state, jax.random.key(e))
  logits, attention = model.apply(
    params, jnp.asarray(data.test["story"]), jnp.asarray(data.test["query"])
  )
  accuracy = float(np.mean(np.argmax(logits, -1) == data.test["answer"]))
  assert accuracy > 0.95, accuracy
  # The hop attends to the supporting sentence.
  support = data.test["supporting"][:, 0]
  hits = np.mean(np.argmax(attention[:, 0], -1) == support)
  assert hits > 0.9, hits
