"""N-way K-shot episodes from character images, sampled on device: ``sample_episodes``.

A pure JAX function (jit-able, usable inside ``lax.scan`` and ``vmap``). As in MAML
(Finn et al. 2017, after Santoro et al. 2016), each of a task's N classes is a character
at a rotation by a multiple of 90 degrees: the N characters of a task are distinct (drawn
without replacement, so the classes are too), each gets its own random rotation, and the
K support and Q query examples of a class are K + Q different drawings of it. Labels are
0..N-1 in the random order the characters were drawn; support and query examples are
each shuffled (``shuffle=True``), so neither position nor label tells the class.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Episodes", "rotate_indices", "sample_episodes"]


class Episodes(NamedTuple):
  """A batch of T tasks, N ways, K shots, Q queries, S x S images."""

  support_x: jax.Array  # [T, N*K, S, S, 1] float32
  support_y: jax.Array  # [T, N*K] int32 in 0..N-1
  query_x: jax.Array  # [T, N*Q, S, S, 1] float32
  query_y: jax.Array  # [T, N*Q] int32 in 0..N-1


def rotate_indices(k: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
  """``(rows, cols)`` int32 [..., S, S] such that ``image[rows, cols]`` equals
  ``np.rot90(image, k)`` (counter-clockwise by k * 90 degrees) for each k in ``k [...]``."""
  r = jnp.arange(size, dtype=jnp.int32)[:, None]
  c = jnp.arange(size, dtype=jnp.int32)[None, :]
  last = size - 1
  # rot90(a, k)[r, c] = a[r, c], a[c, last - r], a[last - r, last - c], a[last - c, r].
  rows = jnp.stack(jnp.broadcast_arrays(r, c, last - r, last - c))
  cols = jnp.stack(jnp.broadcast_arrays(c, last - r, last - c, r))
  k = jnp.asarray(k, jnp.int32) % 4
  return rows[k], cols[k]


def _check(images, num_tasks, num_ways, num_shots, num_queries) -> None:
  for name, value in (
    ("num_tasks", num_tasks),
    ("num_ways", num_ways),
    ("num_shots", num_shots),
    ("num_queries", num_queries),
  ):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be a positive int (static), got {value!r}")
  if images.ndim != 4 or images.shape[2] != images.shape[3]:
    raise ValueError(
      f"images must be [characters, drawers, S, S] (square), got shape {images.shape}"
    )
  num_chars, num_drawers = images.shape[:2]
  if num_ways > num_chars:
    raise ValueError(f"num_ways={num_ways} needs that many characters; images hold {num_chars}")
  if num_shots + num_queries > num_drawers:
    raise ValueError(
      f"num_shots + num_queries = {num_shots + num_queries} needs that many drawings per "
      f"character; images hold {num_drawers}"
    )


def _one_task(key, images, num_ways, num_shots, num_queries, rotate, shuffle) -> Episodes:
  num_chars, num_drawers, size = images.shape[:3]
  per_class = num_shots + num_queries
  # All of a task's randomness from one draw of 32-bit words (one threefry call, which
  # keeps the compile short); a permutation is the argsort of fresh words (ties, rare at
  # 32 bits, still give a permutation), a rotation a word mod 4 (exactly uniform).
  sizes = (
    num_chars,
    num_ways * num_drawers,
    num_ways,
    num_ways * num_shots,
    num_ways * num_queries,
  )
  words = jnp.split(jax.random.bits(key, (sum(sizes),), jnp.uint32), np.cumsum(sizes)[:-1])
  w_char, w_draw, w_rot, w_sup, w_qry = words

  def order(w):
    return jnp.argsort(w, axis=-1).astype(jnp.int32)

  chars = order(w_char)[:num_ways]  # distinct characters in random order: label = position
  drawers = order(w_draw.reshape(num_ways, num_drawers))[:, :per_class]  # distinct per class
  rots = (w_rot % 4).astype(jnp.int32) if rotate else jnp.zeros((num_ways,), jnp.int32)
  rows, cols = rotate_indices(rots, size)  # [N, S, S]
  x = images[
    chars[:, None, None, None], drawers[:, :, None, None], rows[:, None], cols[:, None]
  ].astype(jnp.float32)  # [N, K+Q, S, S], one gather
  y = jnp.broadcast_to(jnp.arange(num_ways, dtype=jnp.int32)[:, None], (num_ways, per_class))

  def flat(part_x, part_y, n, w):
    part_x = part_x.reshape(num_ways * n, size, size, 1)
    part_y = part_y.reshape(num_ways * n)
    if shuffle:
      perm = order(w)
      part_x, part_y = part_x[perm], part_y[perm]
    return part_x, part_y

  sx, sy = flat(x[:, :num_shots], y[:, :num_shots], num_shots, w_sup)
  qx, qy = flat(x[:, num_shots:], y[:, num_shots:], num_queries, w_qry)
  return Episodes(sx, sy, qx, qy)


@functools.partial(
  jax.jit,
  static_argnames=("num_tasks", "num_ways", "num_shots", "num_queries", "rotate", "shuffle"),
)
def sample_episodes(
  key: jax.Array,
  images: jax.Array,
  *,
  num_tasks: int,
  num_ways: int,
  num_shots: int,
  num_queries: int,
  rotate: bool = True,
  shuffle: bool = True,
) -> Episodes:
  """Samples ``num_tasks`` N-way K-shot tasks from character images (pure JAX, jitted
  with the counts and flags static; callable inside ``jit``, ``lax.scan`` and ``vmap``).

  Args:
    key: a PRNG key.
    images: [C, D, S, S] (``OmniglotArrays.images``: C characters, D = 20 drawings each),
      any real dtype; cast to float32 unchanged.
    num_tasks: T, tasks per batch (static).
    num_ways: N, classes per task (static, at most C).
    num_shots: K, support examples per class (static).
    num_queries: Q, query examples per class (static; K + Q at most D).
    rotate: classes are (character, rotation by 0, 90, 180 or 270 degrees), the rotation
      drawn per class (``np.rot90`` direction); False: unrotated characters.
    shuffle: shuffle the support and the query examples; False: class-major order
      (class 0's K examples first, ...).

  Returns:
    Episodes with ``support_x [T, N*K, S, S, 1]`` float32, ``support_y [T, N*K]`` int32,
    ``query_x [T, N*Q, S, S, 1]``, ``query_y [T, N*Q]``; labels 0..N-1.

  Raises:
    ValueError: a bad shape or count (checked at trace time).

  Example::

    episodes = sample_episodes(key, images, num_tasks=32, num_ways=5, num_shots=1,
                               num_queries=15)
  """
  images = jnp.asarray(images)
  _check(images, num_tasks, num_ways, num_shots, num_queries)

  def one(k):
    return _one_task(k, images, num_ways, num_shots, num_queries, rotate, shuffle)

  return jax.vmap(one)(jax.random.split(key, num_tasks))
