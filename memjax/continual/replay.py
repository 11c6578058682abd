"""A replay buffer as pure jittable state: FIFO and reservoir insertion, uniform and
class- or task-balanced sampling.

The buffer is a :class:`ReplayState` (the items, a pytree whose leaves have the slot on
axis 0, and a counter) and pure functions over it, so it lives in a ``lax.scan`` carry, a
``TrainState`` or an Orbax checkpoint like any other array state:

    state = init_state(capacity, example)              # N empty slots shaped like example
    state = add_fifo(state, items)                     # items: leaves [B, ...]
    state = add_reservoir(state, items, key)           # uniform sample of all items seen
    batch = sample(state, key, batch_size)             # uniform over the stored items
    batch = sample_balanced(state, key, batch_size, groups=state.items["label"],
                            num_groups=10)             # each class (or task) equally often

Slots fill in order 0, 1, ..., N - 1 under both policies, so slot ``i`` holds an item
exactly when ``i < size(state)``. FIFO then overwrites the oldest item; reservoir
insertion (Vitter's algorithm R) keeps every item seen so far with the same probability
``N / n`` after ``n`` items. A batch is inserted with the semantics of adding its items
one after another (a later item that lands on the slot of an earlier one of the same batch
wins).

Sampling is with replacement (as flashbax's). Sampling an empty buffer returns slot 0's
zero-filled item: check ``size(state) > 0`` (e.g. weight the replay loss by it).

The counter is int32: a buffer accepts at most 2**31 - 1 insertions.

References:
  Vitter 1985, "Random sampling with a reservoir" (algorithm R).
  Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning" (reservoir
  replay for continual learning).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

POLICIES = ("fifo", "reservoir")


class ReplayState(NamedTuple):
  """A fixed-capacity buffer of items.

  Attributes:
    items: a pytree; each leaf ``[N, ...]`` (N = capacity, slot on axis 0).
    seen: [] int32 items offered so far (every one, kept or not).
  """

  items: Any
  seen: jax.Array


def _leading(items: Any, what: str) -> int:
  leaves = jax.tree.leaves(items)
  if not leaves:
    raise ValueError(f"{what} holds no array")
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    shapes = jax.tree.map(jnp.shape, items)
    raise ValueError(f"every leaf of {what} needs the same leading axis; got shapes {shapes}")
  return sizes.pop()


def init_state(capacity: int, example: Any) -> ReplayState:
  """An empty buffer of ``capacity`` slots, each shaped like ``example``.

  Args:
    capacity: N, the number of slots.
    example: ONE item (no batch axis): a pytree of arrays or ``jax.ShapeDtypeStruct`` s.

  Returns:
    A :class:`ReplayState` with zero-filled items and ``seen = 0``.

  Raises:
    ValueError: a non-positive capacity.
  """
  if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
    raise ValueError(f"capacity must be a positive int, got {capacity!r}")
  items = jax.tree.map(lambda x: jnp.zeros((int(capacity), *jnp.shape(x)), x.dtype), example)
  if not jax.tree.leaves(items):
    raise ValueError("example holds no array")
  return ReplayState(items, jnp.zeros((), jnp.int32))


def capacity(state: ReplayState) -> int:
  """N, the number of slots (static)."""
  return _leading(state.items, "state.items")


def size(state: ReplayState) -> jax.Array:
  """[] int32 items stored: ``min(seen, N)``."""
  return jnp.minimum(state.seen, capacity(state))


def valid(state: ReplayState) -> jax.Array:
  """[N] bool: the slots that hold an item."""
  return jnp.arange(capacity(state)) < size(state)


def _check_items(state: ReplayState, items: Any) -> int:
  chex.assert_trees_all_equal_structs(state.items, items)
  b = _leading(items, "items")
  for stored, new in zip(jax.tree.leaves(state.items), jax.tree.leaves(items), strict=True):
    if stored.shape[1:] != new.shape[1:] or stored.dtype != new.dtype:
      raise ValueError(
        f"items of shape {new.shape[1:]} and dtype {new.dtype} do not fit slots of shape "
        f"{stored.shape[1:]} and dtype {stored.dtype}"
      )
  return b


def _write(state_items: Any, items: Any, slots: jax.Array, unique: bool) -> Any:
  """``state_items[slots[i]] = items[i]``; slots equal to N are dropped."""

  def put(stored, new):
    return stored.at[slots].set(new, mode="drop", unique_indices=unique)

  return jax.tree.map(put, state_items, items)


def add_fifo(state: ReplayState, items: Any, valid: jax.Array | None = None) -> ReplayState:
  """Adds a batch first in, first out: the oldest items are overwritten when full.

  Args:
    state: the buffer.
    items: a pytree like ``state.items`` whose leaves are ``[B, ...]``. With more than N
      items only the last N are kept (as adding them one by one would).
    valid: [B] bool, the items to add (a padded batch); default all. The others are
      skipped and not counted.

  Returns:
    The buffer with the i-th added item in slot ``(seen + i) % N``.

  Raises:
    ValueError: items whose structure, trailing shapes or dtypes differ from the slots'.
  """
  b, n = _check_items(state, items), capacity(state)
  if valid is not None:
    chex.assert_shape(valid, (b,))
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1  # position among the added items
    total = rank[-1] + 1
    keep = valid & (rank >= total - n)  # not overwritten later in this batch
    slots = jnp.where(keep, (state.seen + rank) % n, n)
    return ReplayState(_write(state.items, items, slots, unique=False), state.seen + total)
  seen = state.seen
  if b > n:  # the first b - n would be overwritten within this very batch
    items = jax.tree.map(lambda x: x[b - n :], items)
    seen, b = seen + (b - n), n
  slots = (seen + jnp.arange(b, dtype=jnp.int32)) % n
  return ReplayState(_write(state.items, items, slots, unique=True), seen + b)


def add_reservoir(
  state: ReplayState, items: Any, key: jax.Array, valid: jax.Array | None = None
) -> ReplayState:
  """Adds a batch by reservoir sampling (algorithm R).

  The item numbered ``t`` (0-based, over every item ever offered) goes to slot ``t`` while
  ``t < N``; after that to slot ``j ~ U{0..t}`` when ``j < N``, else it is dropped. After
  ``n`` items each of them is stored with probability ``min(1, N / n)``.

  Args:
    state: the buffer.
    items: a pytree like ``state.items`` whose leaves are ``[B, ...]``.
    key: a PRNG key.
    valid: [B] bool, the items offered (a padded batch); default all. The others are
      skipped and not counted.

  Returns:
    The buffer (``seen`` advanced by the items offered).

  Raises:
    ValueError: items whose structure, trailing shapes or dtypes differ from the slots'.
  """
  b, n = _check_items(state, items), capacity(state)
  order = jnp.arange(b, dtype=jnp.int32)
  if valid is None:
    rank, total = order, b
  else:
    chex.assert_shape(valid, (b,))
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1
    total = rank[-1] + 1
  t = state.seen + rank
  draw = jax.random.randint(key, (b,), 0, jnp.maximum(t, 0) + 1, dtype=jnp.int32)
  slots = jnp.where(t < n, t, draw)  # >= N: dropped
  if valid is not None:
    slots = jnp.where(valid, slots, n)
  # Several items of this batch may draw the same slot: the last one wins, as it would
  # when added one at a time. Each slot keeps the highest batch position aimed at it.
  last = jnp.full((n,), -1, jnp.int32).at[slots].max(order, mode="drop")
  wins = last[jnp.minimum(slots, n - 1)] == order
  slots = jnp.where((slots < n) & wins, slots, n)
  return ReplayState(_write(state.items, items, slots, unique=False), state.seen + total)


def add(
  state: ReplayState,
  items: Any,
  key: jax.Array | None = None,
  valid: jax.Array | None = None,
  *,
  policy: str = "fifo",
) -> ReplayState:
  """:func:`add_fifo` or :func:`add_reservoir` by name (``key`` needed for reservoir)."""
  if policy == "fifo":
    return add_fifo(state, items, valid)
  if policy == "reservoir":
    if key is None:
      raise ValueError("policy='reservoir' needs a PRNG key")
    return add_reservoir(state, items, key, valid)
  raise ValueError(f"policy={policy!r} must be one of {POLICIES}")


def fifo_order(state: ReplayState) -> jax.Array:
  """[N] int32 slots from the oldest item to the newest under FIFO insertion (while not
  full, the first ``size`` entries are the stored slots)."""
  n = capacity(state)
  start = jnp.where(state.seen >= n, state.seen % n, 0)
  return (start + jnp.arange(n, dtype=jnp.int32)) % n


def gather(state: ReplayState, indices: jax.Array) -> Any:
  """The items in ``indices`` ([S] int32 slots): leaves ``[S, ...]``."""
  return jax.tree.map(lambda x: x[indices], state.items)


def sample_indices(state: ReplayState, key: jax.Array, batch_size: int) -> jax.Array:
  """[S] int32 slots drawn uniformly, with replacement, from the stored items."""
  return jax.random.randint(key, (batch_size,), 0, jnp.maximum(size(state), 1), jnp.int32)


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
  """S items drawn uniformly with replacement from the stored ones (leaves ``[S, ...]``)."""
  return gather(state, sample_indices(state, key, batch_size))


def balanced_indices(
  state: ReplayState, key: jax.Array, batch_size: int, groups: jax.Array, num_groups: int
) -> jax.Array:
  """[S] int32 slots drawn so that every group present is equally likely.

  Each draw picks a group uniformly among the groups that hold a stored item, then an
  item of that group uniformly (with replacement): slot ``i`` of group ``g`` has
  probability ``1 / (G_present * count_g)``. A group is a class (class-balanced replay)
  or a task (task-balanced). The draw inverts the cumulative sum of these weights, so
  the probabilities are exact up to float32 rounding of that sum (O(N + S log N) work).

  Args:
    state: the buffer.
    key: a PRNG key.
    batch_size: S.
    groups: [N] int the group of each slot (e.g. ``state.items['label']``); slots that
      hold no item, and values outside ``[0, num_groups)``, are never drawn.
    num_groups: G (static).

  Returns:
    [S] int32 slot indices (slot 0 when the buffer holds no item of any group).

  Raises:
    ValueError: ``groups`` not an integer array of shape [N].
  """
  n = capacity(state)
  chex.assert_shape(groups, (n,))
  if not jnp.issubdtype(groups.dtype, jnp.integer):
    raise ValueError(f"groups must be integers, got {groups.dtype}")
  g = int(num_groups)
  groups = groups.astype(jnp.int32)
  ok = valid(state) & (groups >= 0) & (groups < g)
  bucket = jnp.where(ok, groups, g)  # G = no group
  counts = jnp.zeros((g + 1,), jnp.float32).at[bucket].add(1.0)
  weights = jnp.where(ok, 1.0 / jnp.maximum(counts[bucket], 1.0), 0.0)  # each group sums to 1
  cumulative = jnp.cumsum(weights)
  u = jax.random.uniform(key, (batch_size,), jnp.float32) * cumulative[-1]
  index = jnp.searchsorted(cumulative, u, side="right").astype(jnp.int32)
  # u may round up to the total: the last slot that holds a drawable item.
  last = jnp.max(jnp.where(ok, jnp.arange(n, dtype=jnp.int32), 0))
  return jnp.minimum(index, last)


def sample_balanced(
  state: ReplayState, key: jax.Array, batch_size: int, groups: jax.Array, num_groups: int
) -> Any:
  """S items drawn with every group equally likely (see :func:`balanced_indices`)."""
  return gather(state, balanced_indices(state, key, batch_size, groups, num_groups))


class ReplayBuffer(NamedTuple):
  """A buffer's functions with its settings bound (as flashbax's buffers, or Optax's
  ``GradientTransformation``): ``init(example)``, ``add(state, items, key)``,
  ``sample(state, key)``."""

  init: Callable[[Any], ReplayState]
  add: Callable[..., ReplayState]
  sample: Callable[[ReplayState, jax.Array], Any]


def make_buffer(capacity: int, sample_batch_size: int, policy: str = "fifo") -> ReplayBuffer:
  """A :class:`ReplayBuffer` of ``capacity`` slots with uniform sampling.

  Args:
    capacity: N.
    sample_batch_size: S, the items one ``sample`` call returns.
    policy: ``'fifo'`` or ``'reservoir'`` (whose ``add`` needs a key).

  Example:
    >>> buffer = make_buffer(100, 8, policy="reservoir")
    >>> state = buffer.init({"x": jnp.zeros(3), "y": jnp.zeros((), jnp.int32)})
    >>> state = buffer.add(state, {"x": jnp.ones((5, 3)), "y": jnp.arange(5)}, jax.random.key(0))
    >>> buffer.sample(state, jax.random.key(1))["x"].shape
    (8, 3)
  """
  if policy not in POLICIES:
    raise ValueError(f"policy={policy!r} must be one of {POLICIES}")

  def add_fn(state, items, key=None):
    return add(state, items, key, policy=policy)

  return ReplayBuffer(
    init=lambda example: init_state(capacity, example),
    add=add_fn,
    sample=lambda state, key: sample(state, key, sample_batch_size),
  )


__all__ = [
  "POLICIES",
  "ReplayState",
  "ReplayBuffer",
  "init_state",
  "capacity",
  "size",
  "valid",
  "add_fifo",
  "add_reservoir",
  "add",
  "fifo_order",
  "gather",
  "sample_indices",
  "sample",
  "balanced_indices",
  "sample_balanced",
  "make_buffer",
]
