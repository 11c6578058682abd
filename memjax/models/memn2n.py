"""End-To-End Memory Network (MemN2N) for question answering over a story.

A story of M sentences is embedded twice, into input memories ``m_i`` (matrix A)
and output memories ``c_i`` (matrix C); the question into ``u`` (matrix B). Each of
K hops reads the memory by attention and updates the controller state::

    p = softmax(u . m_i)          # over the non-empty sentences (masked)
    o = sum_i p_i c_i
    u = u + o                     # (layer-wise tying: u = H u + o)
    logits = W u_K                # after the last hop

The hops are an explicit loop over the carry ``u``; the attention of every hop is
returned ``[B, K, M]`` for inspection. Options follow the paper's Section 4:

* ``encoding='bow'`` (bag of words) or ``'pe'`` (position encoding, :func:`position_encoding`);
* ``temporal=True``: learned time embeddings ``T_A``/``T_C`` indexed by each sentence's age
  (0 = newest, as the reference code does), see :func:`sentence_ages`;
* random noise (RN): :func:`random_noise_ages` inserts ~10% empty memories by shifting ages;
* linear start (LS): ``linear=True`` (a static flag) removes the softmax of the hops;
* ``tying='adjacent'`` (``A^{k+1} = C^k``, ``B = A^1``, ``W^T = C^K``) or ``'layerwise'``
  (one A and one C for all hops, separate B and W, and the linear map H);
* ``relu=True``: ReLU on ``u`` after each hop (the paper's larger ``PE LS RN*`` model);
* every weight starts from N(0, 0.1); the null word (id 0) embeds to zero in every table.

References:
  Sukhbaatar, Szlam, Weston, Fergus 2015, "End-To-End Memory Networks", NIPS.
  arXiv:1503.08895.
"""

from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from memjax.ops import _checks
from memjax.ops.attention import attention_read
from memjax.ops.similarity import dot

Encoding = Literal["bow", "pe"]
Tying = Literal["adjacent", "layerwise"]


def _coordinates(embedding_size: int, parts: int) -> np.ndarray:
  """``k = 1..d`` repeated ``parts`` times: ``[parts * d]`` float32, a numpy constant.

  Not ``jnp.arange``: XLA's CPU backend then loads ``k`` as a vector instead of
  recomputing it from a flat index (a division by d) for every element of the
  ``[B, M, S, parts * d]`` products; the MemN2N training epoch runs ~20% faster.
  """
  return np.tile(np.arange(1, embedding_size + 1, dtype=np.float32), parts)


def _pe_weights(tokens: jax.Array, embedding_size: int, length: int, parts: int) -> jax.Array:
  """PE weights ``[..., S, parts * d]`` (the d weights repeated ``parts`` times).

  ``length`` 0 is the paper's encoding (J = each sentence's length), else the reference
  code's with a fixed J. Padding positions are not masked (see the public functions).
  """
  d = embedding_size
  lead = (1,) * (tokens.ndim - 1)
  k = _coordinates(d, parts)  # [parts * d]
  j = np.arange(1, tokens.shape[-1] + 1, dtype=np.float32)  # [S]
  if length > 0:  # position-only: one [S, parts * d] constant
    weights = 1.0 + 4.0 * (k - (d + 1) / 2) * (j[:, None] - (length + 1) / 2) / (d * length)
    weights = weights.astype(np.float32).reshape(lead + weights.shape)
    return jnp.broadcast_to(weights, tokens.shape + (k.size,))
  words = jnp.maximum(jnp.sum(tokens != 0, axis=-1, keepdims=True), 1).astype(jnp.float32)
  frac = (j.reshape(lead + j.shape) / words)[..., None]  # [..., S, 1]
  return (1.0 - frac) - (k / np.float32(d)).reshape(lead + (1, -1)) * (1.0 - 2.0 * frac)


def position_encoding(tokens: jax.Array, embedding_size: int) -> jax.Array:
  """The paper's position-encoding weights ``l_kj`` for each word of each sentence.

  ``l_kj = (1 - j/J) - (k/d) (1 - 2j/J)`` with word position ``j = 1..J``, embedding
  coordinate ``k = 1..d`` and ``J`` the number of (non-null) words of that sentence;
  padding positions (token 0) get weight 0.

  Args:
    tokens: [..., S] int word ids, left-aligned, 0 = padding.
    embedding_size: d.

  Returns:
    [..., S, d] float32 weights; a sentence embeds as ``sum_j l_j * embed(x_j)``.
  """
  _checks.check_min_rank("tokens", tokens, 1, "[..., S]")
  weights = _pe_weights(tokens, embedding_size, 0, 1)
  return jnp.where((tokens != 0)[..., None], weights, 0.0)


def reference_position_encoding(tokens: jax.Array, embedding_size: int, length: int) -> jax.Array:
  """The position encoding of the paper's reference code: a fixed sentence length J.

  ``l_kj = 1 + 4 (k - (d + 1) / 2) (j - (J + 1) / 2) / (d J)``: about twice the paper's
  ``l_kj`` with ``J`` the longest sentence instead of each sentence's own length.

  Args:
    tokens: [..., S] int word ids, 0 = padding; S <= length.
    embedding_size: d.
    length: J.

  Returns:
    [..., S, d] float32 weights (0 at padding).
  """
  _checks.check_min_rank("tokens", tokens, 1, "[..., S]")
  weights = _pe_weights(tokens, embedding_size, length, 1)
  return jnp.where((tokens != 0)[..., None], weights, 0.0)


def memory_mask(story: jax.Array) -> jax.Array:
  """``[..., M]`` bool: True where a memory row holds a sentence (any non-null word)."""
  return jnp.any(story != 0, axis=-1)


def sentence_ages(story: jax.Array) -> jax.Array:
  """The age of each memory row: 0 for the newest sentence, 1 for the one before, ...

  Rows are the story's sentences oldest first, left-aligned, with empty rows after
  them. Empty rows get age 0 (they are masked out of the attention anyway).

  Args:
    story: [..., M, S] int word ids.

  Returns:
    [..., M] int32 ages, the temporal-encoding index of each row.
  """
  _checks.check_min_rank("story", story, 2, "[..., M, S]")
  mask = memory_mask(story)
  count = jnp.sum(mask, axis=-1, keepdims=True)
  rows = jnp.arange(story.shape[-2]).reshape((1,) * (mask.ndim - 1) + (-1,))
  return jnp.where(mask, count - 1 - rows, 0).astype(jnp.int32)


def random_noise_draws(memory_rows: int, ratio: float = 0.1) -> int:
  """How many uniforms per example :func:`random_noise_ages_from_uniform` reads.

  One for the number of empty memories and one per empty memory that a story of
  ``memory_rows`` sentences can get (at most ``ceil(memory_rows * ratio) - 1``).
  """
  return max(1, math.ceil(memory_rows * ratio))


def random_noise_ages(
  rng: jax.Array, story: jax.Array, ratio: float = 0.1, num_times: int | None = None
) -> jax.Array:
  """Ages after inserting random empty memories among a story's sentences (RN).

  For a story of ``n`` sentences the reference code draws ``nblank`` uniformly from
  ``{0, .., ceil(n * ratio) - 1}`` empty memories, scatters them at random among the
  sentences and drops them again: an empty memory is never attended to, so its only
  effect is to shift the time index of every older sentence by one. This returns the
  shifted ages (a uniformly random increasing subset of ``0 .. n + nblank - 1``, newest
  first), capped at ``num_times - 1``. A pure function of ``rng``; use it at training time
  only. Draws ``[B, random_noise_draws(M, ratio)]`` uniforms and calls
  :func:`random_noise_ages_from_uniform` (which a training loop can feed with uniforms
  drawn for a whole epoch at once).

  Args:
    rng: a PRNG key.
    story: [B, M, S] int word ids.
    ratio: the fraction of empty memories to insert (the paper's 10%).
    num_times: the number of time embeddings (default M).

  Returns:
    [B, M] int32 ages (0 on empty rows).
  """
  _checks.check_rank("story", story, 3, "[B, M, S]")
  batch, slots = story.shape[:2]
  uniforms = jax.random.uniform(rng, (batch, random_noise_draws(slots, ratio)))
  return random_noise_ages_from_uniform(uniforms, story, ratio, num_times)


def random_noise_ages_from_uniform(
  uniforms: jax.Array, story: jax.Array, ratio: float = 0.1, num_times: int | None = None
) -> jax.Array:
  """:func:`random_noise_ages` given its random numbers: ``uniforms [B, D]`` in [0, 1).

  ``uniforms[:, 0]`` picks ``nblank``; the empty memories then go in one at a time, the
  t-th at a uniform gap among the ``n + t + 1`` of the sequence so far
  (``uniforms[:, 1 + t]``). Each arrangement of labelled blanks is equally likely, so the
  set of blank positions is a uniform subset; no sort is needed. ``D`` must be at least
  ``random_noise_draws(M, ratio)``; extra columns are ignored.

  Args:
    uniforms: [B, D] float uniforms in [0, 1).
    story: [B, M, S] int word ids.
    ratio: the fraction of empty memories to insert.
    num_times: the number of time embeddings (default M).

  Returns:
    [B, M] int32 ages (0 on empty rows).
  """
  _checks.check_rank("story", story, 3, "[B, M, S]")
  _checks.check_rank("uniforms", uniforms, 2, "[B, D]")
  batch, slots = story.shape[:2]
  draws = random_noise_draws(slots, ratio)
  if uniforms.shape[0] != batch or uniforms.shape[1] < draws:
    raise ValueError(
      f"uniforms must have shape [B, >= {draws}] with B = {batch} for story {story.shape} "
      f"and ratio {ratio}, got {uniforms.shape}"
    )
  num_times = num_times or slots
  mask = memory_mask(story)
  count = jnp.sum(mask, axis=-1).astype(jnp.int32)  # [B]
  max_blank = jnp.ceil(count * ratio).astype(jnp.int32)
  nblank = jnp.minimum(jnp.floor(uniforms[:, 0] * max_blank).astype(jnp.int32), max_blank - 1)
  position = jnp.broadcast_to(jnp.arange(slots, dtype=jnp.int32), (batch, slots))  # newest first
  for t in range(draws - 1):
    gaps = count + t + 1  # insert before index p in 0 .. n + t
    p = jnp.minimum(jnp.floor(uniforms[:, 1 + t] * gaps).astype(jnp.int32), gaps - 1)
    shift = (t < nblank)[:, None] & (position >= p[:, None])
    position = position + shift.astype(jnp.int32)
  # Row i (oldest first) of an n-sentence story is the (n - 1 - i)-th newest.
  index = jnp.clip(count[:, None] - 1 - jnp.arange(slots)[None], 0, slots - 1)
  ages = jnp.minimum(jnp.take_along_axis(position, index, axis=-1), num_times - 1)
  return jnp.where(mask, ages, 0).astype(jnp.int32)


def _embed(table: jax.Array, tokens: jax.Array, pe: jax.Array | None) -> jax.Array:
  """Sentence embeddings ``sum_j l_j * table[x_j]``; the null word (0) embeds to zero.

  The null word is read past the table's end (``mode='fill'``), so it costs the gather
  and its scatter-add gradient no memory traffic (about half a bAbI story's word slots
  are padding); row 0 of ``table`` is never read, and the weights ``pe [..., S, w]`` at
  padding positions do not matter (their products are 0 and their gradient rows are
  dropped). A word id outside ``[0, V)`` makes its sentence's embedding NaN instead of
  aliasing another word. ``table`` may hold several tables side by side (``[V, w]``).
  """
  vocab = table.shape[0]
  ids = jnp.where(tokens == 0, vocab, tokens)
  vectors = jnp.take(table, ids, axis=0, mode="fill", fill_value=0.0)  # [..., S, w]
  if pe is not None:
    vectors = vectors * pe
  out = jnp.sum(vectors, axis=-2)
  bad = jnp.any((tokens < 0) | (tokens >= vocab), axis=-1, keepdims=True)
  return jnp.where(bad, jnp.nan, out)


def _side_by_side(tables: list[jax.Array]) -> jax.Array:
  """``[R, d]`` tables as one ``[R, n d]`` array, materialised.

  One gather (and one scatter-add gradient) of rows ``n d`` wide costs XLA's CPU backend
  far less than ``n`` of width ``d`` (its scatter loop vectorises badly for d = 20 or 50).
  The barrier keeps XLA from fusing the concatenate into the gather, which would
  recompute it for every element read.
  """
  if len(tables) == 1:
    return tables[0]
  return jax.lax.optimization_barrier(jnp.concatenate(tables, axis=1))


def _null_zero(table: jax.Array) -> jax.Array:
  """The word table with the null word's row (id 0) held at zero (no gradient reaches it)."""
  return jnp.asarray(table).at[0].set(0.0)


def _soft_read(u, m, c, mask, num_empty):
  """Softmax read; ``num_empty`` (or None) zero-embedded empty slots join the softmax."""
  if num_empty is None:
    # An out-of-vocabulary word must show as NaN (see _embed), not be dropped as a
    # corrupted slot, so non-finite memory rows propagate.
    return attention_read(u, m, c, mask=mask, similarity="dot", nonfinite_keys="propagate")
  scores = jnp.where(mask, dot(u, m), -jnp.inf)
  # Each empty slot scores u . 0 = 0 and reads 0: a logit log(num_empty) stands for them all.
  empty = jnp.where(num_empty > 0, jnp.log(jnp.maximum(num_empty, 1).astype(u.dtype)), -jnp.inf)
  lse = jnp.logaddexp(jax.nn.logsumexp(scores), empty)
  p = jnp.where(mask, jnp.exp(scores - lse), 0.0)
  return p @ c, p


def _hop_read(u: jax.Array, m: jax.Array, c: jax.Array, mask: jax.Array, linear, num_empty=None):
  """One example's memory read: ``(o [d], p [M])``."""
  if isinstance(linear, bool) and not linear:
    return _soft_read(u, m, c, mask, num_empty)
  p_linear = jnp.where(mask, dot(u, m), 0.0)  # linear start: no softmax, empty rows weigh 0
  if isinstance(linear, bool):
    return p_linear @ c, p_linear
  _, p_soft = _soft_read(u, m, c, mask, num_empty)
  p = jnp.where(linear, p_linear, p_soft)  # a traced switch: one compiled program for both
  return p @ c, p


class MemN2N(nn.Module):
  """End-To-End Memory Network (Sukhbaatar et al. 2015).

  Attributes:
    vocab_size: V, the number of word ids (0 = the null/padding word).
    embedding_size: d (the paper: 20 per task, 50 joint).
    num_slots: the number of memory slots (one sentence each) and of time embeddings: the
      most memory rows M a story may have.
    num_hops: K, 1..3 in the paper (any K >= 1 works).
    encoding: ``'bow'`` or ``'pe'`` (position encoding, also for the question).
    temporal: learn time embeddings ``T_A``/``T_C`` indexed by sentence age (TE).
    tying: ``'adjacent'`` or ``'layerwise'`` (with the linear map H).
    relu: apply a ReLU to ``u`` after each hop.
    init_stddev: the std of the N(0, sigma) initialisation of every weight.
    empty_attention: the reference code's softmax over all ``num_slots`` slots: each
      empty slot (zero embedding) scores 0 and reads 0, so the hops can attend to nothing.
      False (default) masks empty slots out.
    pe_length: 0 = the paper's position encoding (J = each sentence's length); J > 0 =
      the reference code's variant with a fixed J (:func:`reference_position_encoding`).

  Example:
    >>> model = MemN2N(vocab_size=20, embedding_size=8, num_slots=5, num_hops=3)
    >>> story = jnp.ones((2, 5, 4), jnp.int32); query = jnp.ones((2, 4), jnp.int32)
    >>> params = model.init(jax.random.key(0), story, query)
    >>> logits, attention = model.apply(params, story, query)
    >>> logits.shape, attention.shape
    ((2, 20), (2, 3, 5))

  From NNX, through Flax's bridge (the parameters become ``nnx.Param`` state, trained
  with ``nnx.Optimizer`` like any NNX module):

    >>> from flax import nnx
    >>> net = nnx.bridge.ToNNX(model, rngs=nnx.Rngs(0))
    >>> net = nnx.bridge.lazy_init(net, story, query)
    >>> net(story, query)[0].shape
    (2, 20)
  """

  vocab_size: int
  embedding_size: int
  num_slots: int
  num_hops: int = 3
  encoding: Encoding = "pe"
  temporal: bool = True
  tying: Tying = "adjacent"
  relu: bool = False
  init_stddev: float = 0.1
  pe_length: int = 0
  empty_attention: bool = False

  def _tables(self):
    """Memory tables {name: (words, times)}, per-hop (A, C) names, B, the answer [d, V], H."""
    normal = nn.initializers.normal(self.init_stddev)

    def init(key, shape):
      return normal(key, shape, jnp.float32)

    vd = (self.vocab_size, self.embedding_size)
    td = (self.num_slots, self.embedding_size)
    hops = range(self.num_hops)
    if self.tying == "adjacent":
      # E_0..E_K: A^k = E_{k-1}, C^k = E_k, B = E_0, W^T = E_K (and the same for time).
      words = [self.param(f"embed_{k}", init, vd) for k in range(self.num_hops + 1)]
      times = (
        [self.param(f"time_{k}", init, td) for k in range(self.num_hops + 1)]
        if self.temporal
        else None
      )
      tables = {k: (words[k], times and times[k]) for k in range(self.num_hops + 1)}
      # _embed never reads row 0 (the null word); the answer's logit for it stays 0.
      return tables, [(k, k + 1) for k in hops], words[0], _null_zero(words[-1]).T, None
    if self.tying == "layerwise":
      a = self.param("embed_A", init, vd)
      c = self.param("embed_C", init, vd)
      ta = self.param("time_A", init, td) if self.temporal else None
      tc = self.param("time_C", init, td) if self.temporal else None
      b = self.param("embed_B", init, vd)
      w = self.param("answer_W", init, (self.embedding_size, self.vocab_size))
      h = self.param("H", init, (self.embedding_size, self.embedding_size))
      return {"A": (a, ta), "C": (c, tc)}, [("A", "C") for _ in hops], b, w, h
    raise ValueError(f"tying={self.tying!r} must be 'adjacent' or 'layerwise'")

  @nn.compact
  def __call__(
    self,
    story: jax.Array,
    query: jax.Array,
    ages: jax.Array | None = None,
    linear: bool | jax.Array = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Answers ``query`` from ``story``.

    Args:
      story: [B, M, S] int32 word ids, the last M sentences oldest first, left-aligned,
        empty rows (all 0) after them; M <= num_slots (a batch of short stories may
        be cut to fewer rows: the output is the same).
      query: [B, S] int32 word ids of the question.
      ages: optional [B, M] int32 time indices (default :func:`sentence_ages`; pass
        :func:`random_noise_ages` at training time for RN).
      linear: linear start: no softmax in the hops. A Python bool selects the program
        statically; a traced bool scalar switches inside one compiled program.

    Returns:
      ``(logits [B, V], attention [B, K, M])``: answer logits over the vocabulary and
      each hop's weights over the memory rows (0 on empty rows).

    Raises:
      ValueError: on a shape that does not match ``[B, M, S]`` / ``[B, S]``.
    """
    _checks.check_rank("story", story, 3, "[B, M, S]")
    _checks.check_rank("query", query, 2, "[B, S]")
    if story.shape[1] > self.num_slots:
      raise ValueError(
        f"story has {story.shape[1]} memory rows (shape {story.shape}) but the model's "
        f"num_slots is {self.num_slots}"
      )
    if query.shape != (story.shape[0], story.shape[2]):
      raise ValueError(
        f"query must have shape [B, S] = {(story.shape[0], story.shape[2])} to match "
        f"story {story.shape}, got {query.shape}"
      )
    if not 1 <= self.num_hops:
      raise ValueError(f"num_hops={self.num_hops} must be >= 1")
    if self.encoding not in ("bow", "pe"):
      raise ValueError(f"encoding={self.encoding!r} must be 'bow' or 'pe'")
    if self.pe_length < 0:
      raise ValueError(
        f"pe_length={self.pe_length} must be >= 0 (0: the paper's position encoding, J > 0: "
        "the reference code's with a fixed sentence length J)"
      )
    if ages is None:
      ages = sentence_ages(story)
    elif ages.shape != story.shape[:2]:
      raise ValueError(f"ages must have shape [B, M] = {story.shape[:2]}, got {ages.shape}")

    tables, per_hop, table_b, answer_w, h = self._tables()
    mask = memory_mask(story)  # [B, M]
    if not isinstance(linear, bool):
      linear = jnp.asarray(linear, bool)
      if linear.shape:
        raise ValueError(f"linear must be a bool scalar, got shape {linear.shape}")
    if self.empty_attention:
      num_empty = self.num_slots - jnp.sum(mask, axis=-1)  # [B] (rows cut off count too)
      read = jax.vmap(lambda u, m, c, mk, ne: _hop_read(u, m, c, mk, linear, ne))
    else:
      num_empty = None
      read = jax.vmap(lambda u, m, c, mk, ne: _hop_read(u, m, c, mk, linear), (0, 0, 0, 0, None))

    # Every memory table embeds the story once (adjacent: C^k = A^{k+1}), all in one gather.
    names = list(tables)
    pe_story = pe_query = None
    if self.encoding == "pe":  # weights at the width they multiply: [..., S, parts * d]
      pe_story = _pe_weights(story, self.embedding_size, self.pe_length, len(names))
      pe_query = _pe_weights(query, self.embedding_size, self.pe_length, 1)
    emb = _embed(_side_by_side([tables[n][0] for n in names]), story, pe_story)
    if self.temporal:
      emb = emb + jnp.take(_side_by_side([tables[n][1] for n in names]), ages, axis=0)
    memories = dict(zip(names, jnp.split(emb, len(names), axis=-1), strict=True))  # [B, M, d]

    u = _embed(table_b, query, pe_query)  # [B, d]
    attention = []
    for name_a, name_c in per_hop:  # the hops: a loop over the carry u
      o, p = read(u, memories[name_a], memories[name_c], mask, num_empty)
      u = (u @ h if h is not None else u) + o
      if self.relu:
        u = nn.relu(u)
      attention.append(p)
    logits = u @ answer_w
    return logits, jnp.stack(attention, axis=1)


__all__ = [
  "MemN2N",
  "position_encoding",
  "reference_position_encoding",
  "memory_mask",
  "sentence_ages",
  "random_noise_ages",
  "random_noise_ages_from_uniform",
  "random_noise_draws",
]
