"""Fact memory: a key-value store that integrates new facts with the old ones.

A fact is a (key, value) pair with a time, a confidence in [0, 1] and an owner (an int
id, e.g. the user it is about; ``-1`` = none). :func:`integrate` writes one fact:

1. It looks for a *match*: the active slot whose key is most similar to the new key
   (cosine), if that similarity is ``>= threshold``.
2. No match: the fact takes a new slot, version 0, active: the lowest empty slot, else
   the oldest superseded version (``'versions'``), else the slot the eviction policy of
   :mod:`memjax.memory.kv` picks.
3. A match with the same value (every entry within ``value_tol``): a confirmation. The
   slot keeps its value; its time becomes the later of the two, its confidence the
   higher, its owner the new one.
4. A match with a different value: a *conflict*, resolved by ``policy``:

   - ``'newest'``: the later fact wins (``time >= old time``; a fact that arrives late
     with an earlier time does not replace a newer one). The winner's value, time,
     confidence and owner are kept in the slot.
   - ``'confident'``: the more confident fact wins; equal confidences go to the later.
   - ``'versions'``: nothing is overwritten. The old slot becomes inactive (a past
     version) and the new fact takes a new slot with ``version = old version + 1``.
     Reads see the active (latest) version unless asked for the history.
   - ``'merge'``: confidence-weighted average in place, ``v = (c_old v_old + c_new
     v_new) / (c_old + c_new)`` (equal weights when both are 0), the later time, the
     higher confidence, the new owner.
   - ``'gate'``: a learned gate (:class:`ConflictGate`) reads both facts and the time
     since the old one and returns ``g`` in (0, 1); ``v = g v_new + (1 - g) v_old``,
     ``c = g c_new + (1 - g) c_old``, the later time, the owner of the larger weight.
     Differentiable in the gate's parameters and both values.
   - ``'keep'``: the old fact stays (the no-update baseline).

:func:`decay` forgets with time (a confidence half-life, a maximum age, a minimum number
of reads) and :func:`delete_key` / :func:`delete_owner` remove facts. Removed slots are
zeroed: their key, value and metadata bytes are gone from the arrays, not only masked.

Every function is pure and jittable over a :class:`FactState` (a NamedTuple of arrays);
``integrate_batch`` is a ``lax.scan`` over :func:`integrate`.

Example:
  >>> state = init_state(num_slots=4, key_size=2, value_size=2)
  >>> mary_city = jnp.array([1.0, 0.0])
  >>> state = integrate(state, mary_city, jnp.array([1.0, 0.0]), time=1.0)   # Paris
  >>> state = integrate(state, mary_city, jnp.array([0.0, 1.0]), time=5.0)   # Rome
  >>> read(state, mary_city).values[0].tolist()   # newest wins (the default)
  [0.0, 1.0]

References:
  Kaiser et al. 2017, "Learning to Remember Rare Events" (key-value memory, in-place
  updates of matching keys). Zhong et al. 2024, "MemoryBank" (memory of dialogues with
  forgetting by the Ebbinghaus curve). Packer et al. 2023, "MemGPT" (explicit,
  editable long-term memory).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from memjax.memory import kv
from memjax.ops import _checks
from memjax.ops.retrieval import Retrieval, top_k_read
from memjax.ops.similarity import cosine

ConflictPolicy = Literal["newest", "confident", "versions", "merge", "gate", "keep"]
CONFLICT_POLICIES = ("newest", "confident", "versions", "merge", "gate", "keep")
NO_OWNER = -1


class FactState(NamedTuple):
  """A fact memory (one example; ``jax.vmap`` for a batch of memories)."""

  kv: kv.KVState  # keys [N, K], values [N, V], written / last_read / hits / valid [N], step []
  timestamp: jax.Array  # [N] float32 time of the fact (0 when empty)
  confidence: jax.Array  # [N] float32 confidence in [0, 1] (0 when empty)
  owner: jax.Array  # [N] int32 owner id, -1 = none / empty
  version: jax.Array  # [N] int32 0 for a first fact, +1 per superseded version ('versions')
  active: jax.Array  # [N] bool, the slot is the current version of its fact (False when empty)
  clock: jax.Array  # [] float32 time of the last half-life decay (0 at the start)


def init_state(
  num_slots: int, key_size: int, value_size: int, dtype: Any = jnp.float32
) -> FactState:
  """An empty fact memory.

  Args:
    num_slots: N, the capacity.
    key_size: K.
    value_size: V.
    dtype: floating dtype of the keys and values (times and confidences are float32).

  Returns:
    A :class:`FactState` with no valid slot.
  """
  store = kv.init_state(num_slots, key_size, value_size, dtype)
  n = store.keys.shape[0]
  return FactState(
    kv=store,
    timestamp=jnp.zeros((n,), jnp.float32),
    confidence=jnp.zeros((n,), jnp.float32),
    owner=jnp.full((n,), NO_OWNER, jnp.int32),
    version=jnp.zeros((n,), jnp.int32),
    active=jnp.zeros((n,), bool),
    clock=jnp.zeros((), jnp.float32),
  )


def _check_state(state: FactState, where: str) -> None:
  if not isinstance(state, FactState):
    raise TypeError(f"{where}: state must be a FactState, got {type(state).__name__}")
  _checks.check_rank(f"{where}: state.kv.keys", state.kv.keys, 2, "[N, K] (jax.vmap a batch)")


def _check_policy(policy: str, where: str) -> None:
  if policy not in CONFLICT_POLICIES:
    raise ValueError(f"{where}: policy={policy!r} is not one of {CONFLICT_POLICIES}")


def _check_vector(where: str, name: str, x: Any, size: int, what: str, rank: int = 1):
  x = _checks.as_array(name, x)
  _checks.check_floating(f"{where}: {name}", x)
  if x.ndim != rank or x.shape[-1] != size:
    want = f"({size},)" if rank == 1 else f"(M, {size})"
    raise ValueError(
      f"{where}: {name} has shape {x.shape}, expected {want}: the store's {what} are {size} wide"
    )
  return x


def _check_scalar(where: str, name: str, x: Any, dtype: Any, shape: tuple[int, ...] = ()):
  x = _checks.as_array(name, x)
  if x.shape != shape:
    raise ValueError(f"{where}: {name} must have shape {shape}, got {x.shape}")
  return x.astype(dtype)


def _active_scores(state: FactState, key: jax.Array) -> jax.Array:
  """Cosine of ``key`` with every active key; -inf for inactive, empty or NaN slots."""
  scores = cosine(key.astype(state.kv.keys.dtype), state.kv.keys).astype(jnp.float32)
  live = state.kv.valid & state.active & ~jnp.isnan(scores)
  return jnp.where(live, scores, -jnp.inf)


def find_match(
  state: FactState, key: jax.Array, threshold: float = 0.95
) -> tuple[jax.Array, jax.Array]:
  """The active slot holding ``key``: the most similar active key, if similar enough.

  Args:
    state: the memory.
    key: [K] floating key.
    threshold: the least cosine similarity of a match.

  Returns:
    ``(slot [] int32, found [] bool)``; ``slot`` is meaningless when not found.
  """
  _check_state(state, "find_match")
  key = _check_vector("find_match", "key", key, state.kv.keys.shape[1], "keys")
  scores = _active_scores(state, key)
  slot = jnp.argmax(scores).astype(jnp.int32)
  return slot, scores[slot] >= threshold


class ConflictGate(nn.Module):
  """A learned conflict resolution: ``g = sigmoid(MLP([v_old, v_new, dt, c_old, c_new]))``.

  ``g`` is the weight of the new fact. ``dt = time - old time`` is scaled by
  ``time_scale`` before it enters the network.

  Attributes:
    hidden_size: width of the hidden layer.
    time_scale: ``dt`` is divided by this (the typical time between facts).

  Example:
    >>> gate = ConflictGate(hidden_size=8)
    >>> v = jnp.ones(3)
    >>> params = gate.init(jax.random.key(0), v, v, 2.0, 0.9, 0.5)["params"]
    >>> gate.apply({"params": params}, v, v, 2.0, 0.9, 0.5).shape
    ()
  """

  hidden_size: int = 16
  time_scale: float = 10.0

  @nn.compact
  def __call__(
    self,
    old_value: jax.Array,
    new_value: jax.Array,
    dt: jax.Array,
    old_confidence: jax.Array,
    new_confidence: jax.Array,
  ) -> jax.Array:
    """Returns ``g`` [] in (0, 1), the weight of the new fact.

    Args:
      old_value: [V].
      new_value: [V].
      dt: [] time since the old fact.
      old_confidence: [] in [0, 1].
      new_confidence: [] in [0, 1].
    """
    scalars = jnp.stack(
      [
        jnp.asarray(dt, jnp.float32) / self.time_scale,
        jnp.asarray(old_confidence, jnp.float32),
        jnp.asarray(new_confidence, jnp.float32),
      ]
    )
    x = jnp.concatenate([old_value.astype(jnp.float32), new_value.astype(jnp.float32), scalars])
    h = nn.tanh(nn.Dense(self.hidden_size, name="hidden")(x))
    return nn.sigmoid(nn.Dense(1, name="out")(h)[0])


def integrate(
  state: FactState,
  key: jax.Array,
  value: jax.Array,
  time: jax.typing.ArrayLike,
  confidence: jax.typing.ArrayLike = 1.0,
  owner: jax.typing.ArrayLike = NO_OWNER,
  policy: ConflictPolicy = "newest",
  *,
  threshold: float = 0.95,
  value_tol: float = 1e-5,
  gate: ConflictGate | None = None,
  gate_params: Any = None,
  eviction: kv.Policy = "ring",
) -> FactState:
  """Writes one fact, resolving a conflict with the fact already held by ``policy``.

  See the module docstring for the rules.

  Args:
    state: the memory.
    key: [K] floating key (e.g. an embedding of (subject, relation)).
    value: [V] floating value (e.g. an embedding of the object).
    time: [] the fact's time (any increasing clock: a turn, seconds).
    confidence: [] in [0, 1].
    owner: [] int owner id (``-1`` = none).
    policy: ``'newest'``, ``'confident'``, ``'versions'``, ``'merge'``, ``'gate'`` or
      ``'keep'``.
    threshold: the least cosine similarity between keys for the same fact.
    value_tol: values whose entries all differ by at most this are the same value.
    gate: the :class:`ConflictGate` of ``policy='gate'`` (default ``ConflictGate()``).
    gate_params: its parameters (required for ``'gate'``).
    eviction: the :mod:`memjax.memory.kv` eviction policy for a new slot when the memory
      is full (``'ring'``, ``'lru'``, ``'least_used'``).

  Returns:
    The new state, with the same structure, shapes and dtypes; ``kv.step`` advances by 1.

  Raises:
    ValueError / TypeError: an unknown policy, a key or value of the wrong size or dtype,
      ``'gate'`` without ``gate_params``.
  """
  _check_state(state, "integrate")
  _check_policy(policy, "integrate")
  n, key_size = state.kv.keys.shape
  key = _check_vector("integrate", "key", key, key_size, "keys")
  value = _check_vector("integrate", "value", value, state.kv.values.shape[1], "values")
  time = _check_scalar("integrate", "time", time, jnp.float32)
  confidence = _check_scalar("integrate", "confidence", confidence, jnp.float32)
  owner = _check_scalar("integrate", "owner", owner, jnp.int32)
  if policy == "gate" and gate_params is None:
    raise ValueError("integrate: policy='gate' needs gate_params (ConflictGate parameters)")
  dtype = state.kv.values.dtype
  key, value = key.astype(state.kv.keys.dtype), value.astype(dtype)

  best, match = find_match(state, key, threshold)
  old_v, old_t, old_c = state.kv.values[best], state.timestamp[best], state.confidence[best]
  same = jnp.all(jnp.abs(value - old_v) <= value_tol)
  conflict = match & ~same

  # What the matched slot becomes (value, time, confidence, owner) on a conflict.
  later = jnp.maximum(time, old_t)
  if policy in ("newest", "confident"):
    if policy == "newest":
      wins = time >= old_t
    else:
      wins = (confidence > old_c) | ((confidence == old_c) & (time >= old_t))
    new_v = jnp.where(wins, value, old_v)
    new_t = jnp.where(wins, time, old_t)
    new_c = jnp.where(wins, confidence, old_c)
    new_o = jnp.where(wins, owner, state.owner[best])
  elif policy == "merge":
    total = old_c + confidence
    w = jnp.where(total > 0, confidence / jnp.where(total > 0, total, 1.0), 0.5)
    new_v = (w * value.astype(jnp.float32) + (1 - w) * old_v.astype(jnp.float32)).astype(dtype)
    new_t, new_c, new_o = later, jnp.maximum(old_c, confidence), owner
  elif policy == "gate":
    gate = gate if gate is not None else ConflictGate()
    g = gate.apply({"params": gate_params}, old_v, value, time - old_t, old_c, confidence)
    new_v = (g * value.astype(jnp.float32) + (1 - g) * old_v.astype(jnp.float32)).astype(dtype)
    new_t, new_c = later, g * confidence + (1 - g) * old_c
    new_o = jnp.where(g >= 0.5, owner, state.owner[best])
  else:  # 'keep' and 'versions' leave the old slot's fact as it is
    new_v, new_t, new_c, new_o = old_v, old_t, old_c, state.owner[best]

  # A confirmation (same value) refreshes time and confidence, whatever the policy.
  upd_v = jnp.where(same, old_v, new_v)
  upd_t = jnp.where(same, later, new_t)
  upd_c = jnp.where(same, jnp.maximum(old_c, confidence), new_c)
  upd_o = jnp.where(same, owner, new_o)

  # A new slot: an empty one, else the oldest superseded version, else the policy's victim.
  superseded = state.kv.valid & ~state.active
  if policy == "versions":  # the version this fact supersedes counts as superseded already
    superseded = superseded.at[best].set(superseded[best] | conflict)
  big = jnp.iinfo(jnp.int32).max
  oldest_superseded = jnp.argmin(jnp.where(superseded, state.kv.written, big)).astype(jnp.int32)
  full = jnp.all(state.kv.valid)
  fresh = jnp.where(
    full & jnp.any(superseded), oldest_superseded, kv.eviction_slot(state.kv, eviction)
  )
  if policy == "versions":
    takes_new_slot = ~match | conflict
  else:
    takes_new_slot = ~match
  # In place: the matched slot; otherwise a fresh slot holding the new fact as given.
  slot = jnp.where(takes_new_slot, fresh, best)
  put_v = jnp.where(takes_new_slot, value, upd_v)
  put_t = jnp.where(takes_new_slot, time, upd_t)
  put_c = jnp.where(takes_new_slot, confidence, upd_c)
  put_o = jnp.where(takes_new_slot, owner, upd_o)
  put_version = jnp.where(match & takes_new_slot, state.version[best] + 1, 0)
  put_version = jnp.where(takes_new_slot, put_version, state.version[best])

  store = state.kv
  new_kv = kv.KVState(
    keys=store.keys.at[slot].set(jnp.where(takes_new_slot, key, store.keys[best])),
    values=store.values.at[slot].set(put_v),
    written=store.written.at[slot].set(store.step),
    last_read=store.last_read.at[slot].set(jnp.where(takes_new_slot, -1, store.last_read[slot])),
    hits=store.hits.at[slot].set(jnp.where(takes_new_slot, 0, store.hits[slot])),
    valid=store.valid.at[slot].set(True),
    step=store.step + 1,
  )
  active = state.active
  if policy == "versions":
    # The superseded version stays, inactive (unless the new slot evicted it).
    active = active.at[best].set(active[best] & ~conflict)
  active = active.at[slot].set(True)
  return FactState(
    kv=new_kv,
    timestamp=state.timestamp.at[slot].set(put_t),
    confidence=state.confidence.at[slot].set(put_c.astype(jnp.float32)),
    owner=state.owner.at[slot].set(put_o),
    version=state.version.at[slot].set(put_version),
    active=active,
    clock=state.clock,
  )


def integrate_batch(
  state: FactState,
  keys: jax.Array,
  values: jax.Array,
  times: jax.typing.ArrayLike,
  confidences: jax.typing.ArrayLike | None = None,
  owners: jax.typing.ArrayLike | None = None,
  policy: ConflictPolicy = "newest",
  *,
  mask: jax.Array | None = None,
  **kwargs: Any,
) -> FactState:
  """Integrates M facts in order (a ``lax.scan`` of :func:`integrate`).

  Args:
    state: the memory.
    keys: [M, K].
    values: [M, V].
    times: [M].
    confidences: [M] (default all 1).
    owners: [M] int (default all -1).
    policy: see :func:`integrate`.
    mask: optional [M] bool; facts with False are skipped.
    **kwargs: ``threshold``, ``value_tol``, ``gate``, ``gate_params``, ``eviction``.

  Returns:
    The state after the M facts, as M calls of :func:`integrate` in index order.
  """
  _check_state(state, "integrate_batch")
  _check_policy(policy, "integrate_batch")
  keys = _check_vector("integrate_batch", "keys", keys, state.kv.keys.shape[1], "keys", 2)
  m = keys.shape[0]
  values = _check_vector("integrate_batch", "values", values, state.kv.values.shape[1], "values", 2)
  if values.shape[0] != m:
    raise ValueError(f"integrate_batch: values has {values.shape[0]} facts but keys has {m}")
  times = _check_scalar("integrate_batch", "times", times, jnp.float32, (m,))
  confidences = jnp.ones((m,), jnp.float32) if confidences is None else confidences
  confidences = _check_scalar("integrate_batch", "confidences", confidences, jnp.float32, (m,))
  owners = jnp.full((m,), NO_OWNER, jnp.int32) if owners is None else owners
  owners = _check_scalar("integrate_batch", "owners", owners, jnp.int32, (m,))
  mask = jnp.ones((m,), bool) if mask is None else mask
  mask = _check_scalar("integrate_batch", "mask", mask, bool, (m,))

  def body(s, fact):
    k, v, t, c, o, on = fact
    new = integrate(s, k, v, t, c, o, policy, **kwargs)
    return jax.tree.map(lambda a, b: jnp.where(on, a, b), new, s), None

  state, _ = jax.lax.scan(body, state, (keys, values, times, confidences, owners, mask))
  return state


def read(
  state: FactState, query: jax.Array, k: int = 1, include_inactive: bool = False
) -> Retrieval:
  """Top-k cosine read of the active facts (every version with ``include_inactive``).

  Args:
    state: the memory.
    query: [..., K] floating queries.
    k: slots per query, ``1 <= k <= N``.
    include_inactive: also read superseded versions.

  Returns:
    :class:`memjax.ops.Retrieval` (``values [..., k, V]``, ``indices``, ``scores``); a
    missing fact reads an empty slot with score ``-inf``.
  """
  _check_state(state, "read")
  mask = state.kv.valid if include_inactive else state.kv.valid & state.active
  k = _checks.check_k(k, state.kv.keys.shape[0])
  return top_k_read(query, state.kv.keys, state.kv.values, k, "cosine", mask=mask)


def lookup(
  state: FactState, query: jax.Array, threshold: float = 0.95
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The active fact stored under ``query``, if any.

  Args:
    state: the memory.
    query: [..., K] floating keys.
    threshold: the least cosine similarity of a hit.

  Returns:
    ``(values [..., V], slots [...] int32, found [...] bool)``; ``values`` are zeros
    where nothing is found.
  """
  out = read(state, query, 1)
  found = out.scores[..., 0] >= threshold
  values = jnp.where(found[..., None], out.values[..., 0, :], 0)
  return values, out.indices[..., 0], found


def read_and_touch(state: FactState, query: jax.Array, k: int = 1) -> tuple[FactState, Retrieval]:
  """:func:`read` that also counts the use of the retrieved slots (``hits``,
  ``last_read``; see :func:`memjax.memory.kv.read_and_touch`)."""
  out = read(state, query, k)
  idx = out.indices.reshape(-1)
  used = (state.kv.valid & state.active)[idx]
  store = state.kv
  hits = store.hits.at[idx].add(used.astype(jnp.int32))
  last_read = store.last_read.at[idx].max(jnp.where(used, store.step, -1))
  store = store._replace(hits=hits, last_read=last_read, step=store.step + 1)
  return state._replace(kv=store), out


def delete_slots(state: FactState, slots: jax.Array) -> FactState:
  """Empties the slots where ``slots`` is True: every array entry of theirs is zeroed.

  Keys and values become 0, ``written = last_read = owner = -1``, ``hits = version =
  0``, time and confidence 0, not valid, not active: nothing of the removed facts stays
  in the arrays (a saved state holds no trace of them).

  Args:
    state: the memory.
    slots: [N] bool.

  Returns:
    The new state (same structure, shapes and dtypes; ``kv.step`` and ``clock`` kept).
  """
  _check_state(state, "delete_slots")
  n = state.kv.keys.shape[0]
  slots = _checks.as_array("slots", slots)
  if slots.dtype != jnp.bool_ or slots.shape != (n,):
    raise ValueError(
      f"delete_slots: slots must be bool of shape ({n},), got {slots.dtype}{slots.shape}"
    )
  keep = ~slots
  return FactState(
    kv=kv.reset(state.kv, slots),
    timestamp=jnp.where(keep, state.timestamp, 0),
    confidence=jnp.where(keep, state.confidence, 0),
    owner=jnp.where(keep, state.owner, NO_OWNER),
    version=jnp.where(keep, state.version, 0),
    active=state.active & keep,
    clock=state.clock,
  )


def delete_key(state: FactState, key: jax.Array, threshold: float = 0.95) -> FactState:
  """Deletes every version of the fact stored under ``key`` (all valid slots whose key
  has cosine similarity ``>= threshold`` with it), zeroing their arrays.

  Args:
    state: the memory.
    key: [K] floating key.
    threshold: the least cosine similarity of a slot to delete.

  Returns:
    The new state.
  """
  _check_state(state, "delete_key")
  key = _check_vector("delete_key", "key", key, state.kv.keys.shape[1], "keys")
  scores = cosine(key.astype(state.kv.keys.dtype), state.kv.keys)
  return delete_slots(state, state.kv.valid & (scores >= threshold))


def delete_owner(state: FactState, owner: jax.typing.ArrayLike) -> FactState:
  """Deletes every fact (every version) of ``owner``, zeroing their arrays.

  Args:
    state: the memory.
    owner: [] int owner id.

  Returns:
    The new state; no slot holds ``owner`` any more.
  """
  _check_state(state, "delete_owner")
  owner = _check_scalar("delete_owner", "owner", owner, jnp.int32)
  return delete_slots(state, state.kv.valid & (state.owner == owner))


def decay(
  state: FactState,
  now: jax.typing.ArrayLike,
  *,
  half_life: float | None = None,
  min_confidence: float = 0.0,
  max_age: float | None = None,
  min_hits: int | None = None,
  min_age: float = 0.0,
) -> FactState:
  """Forgets with time.

  - ``half_life``: every confidence is multiplied by ``0.5 ** (elapsed / half_life)``,
    ``elapsed = now - max(fact time, clock)`` (``clock``, the time of the previous decay,
    becomes ``now``: decaying twice to the same ``now`` decays once). Then facts whose
    confidence is below ``min_confidence`` are deleted.
  - ``max_age``: facts with ``now - time > max_age`` are deleted.
  - ``min_hits``: facts at least ``min_age`` old that were read (:func:`read_and_touch`)
    fewer than ``min_hits`` times are deleted.

  Deleted slots are zeroed (:func:`delete_slots`).

  Args:
    state: the memory.
    now: [] the current time.
    half_life: confidence half-life, or None.
    min_confidence: facts whose (decayed) confidence is below this are deleted.
    max_age: the oldest a fact may be, or None.
    min_hits: the fewest reads an old enough fact needs to stay, or None.
    min_age: the age from which ``min_hits`` applies.

  Returns:
    The new state.
  """
  _check_state(state, "decay")
  now = _check_scalar("decay", "now", now, jnp.float32)
  if half_life is not None and not half_life > 0:
    raise ValueError(f"decay: half_life={half_life} must be > 0")
  confidence, clock = state.confidence, state.clock
  if half_life is not None:
    elapsed = jnp.maximum(now - jnp.maximum(state.timestamp, state.clock), 0.0)
    confidence = jnp.where(state.kv.valid, confidence * 0.5 ** (elapsed / half_life), 0.0)
    clock = jnp.maximum(now, state.clock)
  drop = state.kv.valid & (confidence < min_confidence)
  if max_age is not None:
    drop |= state.kv.valid & (now - state.timestamp > max_age)
  if min_hits is not None:
    drop |= state.kv.valid & (now - state.timestamp >= min_age) & (state.kv.hits < min_hits)
  return delete_slots(state._replace(confidence=confidence.astype(jnp.float32), clock=clock), drop)


def num_facts(state: FactState, include_inactive: bool = False) -> jax.Array:
  """[] int32 number of held facts (active ones, or every version)."""
  live = state.kv.valid if include_inactive else state.kv.valid & state.active
  return jnp.sum(live).astype(jnp.int32)


__all__ = [
  "CONFLICT_POLICIES",
  "NO_OWNER",
  "ConflictGate",
  "ConflictPolicy",
  "FactState",
  "decay",
  "delete_key",
  "delete_owner",
  "delete_slots",
  "find_match",
  "init_state",
  "integrate",
  "integrate_batch",
  "lookup",
  "num_facts",
  "read",
  "read_and_touch",
]
