"""Replay buffer speed: memjax.continual.replay against flashbax, in the same run.

    python benchmarks/replay.py            # one JSON line per figure
    python benchmarks/replay.py --small    # a seconds-long smoke run

Figures (each buffer's loop is one jitted ``lax.scan`` of ``--steps`` steps; the rounds
interleave the buffers so machine load hits all alike; the median round is reported):

  fused_steps_per_s   one step = add a batch of ``--add_batch`` items, then sample
                      ``--sample_batch`` items (their sum goes into the carry, so nothing
                      is dead code), the buffer at ``--capacity`` slots, wrapping around;
  add_items_per_s     adds only (items written per second);
  sample_items_per_s  samples only, from a full buffer (items gathered per second).

An item is ``{"x": float32[--item_dim], "y": int32}`` (a digit image and its label). The
peer is flashbax (the JAX replay-buffer library) at its best setting for each figure: its
item buffer (``make_item_buffer(add_batches=True)``: one time axis, single items sampled)
and its flat buffer (``make_flat_buffer(add_batch_size=B)``: a [B, N / B] layout, which
samples transition pairs) are both measured, and ``ratio_to_flashbax`` divides memjax's
figure by the faster of the two. memjax's FIFO buffer is the like-for-like method (flashbax
is FIFO); memjax's reservoir insertion and class-balanced sampling are reported beside it.

Reported figures for flashbax on this class of machine: about 45k fused steps/s, 12.9M items/s
added, 1.7M items/s sampled (settings not given); ours are measured beside flashbax here.

Measured 2026-12-03, 2-core Xeon shared with other jobs (load average 3-3.6), defaults
(N = 10,000, 64 floats + a label per item, batches of 64, 2,000 steps, 7 rounds), three
runs of ``python benchmarks/replay.py`` (flashbax 0.1.3, jax 0.10.2):

  figure                 memjax FIFO     flashbax (best)       ratio
  fused steps/s          44.9k-46.5k     43.3k-45.4k (item)    1.02-1.05
  add items/s            16.5M-18.0M     13.9M-14.7M           1.18-1.25
  sample items/s         4.0M-4.7M       2.6M-2.9M             1.50-1.64

Reservoir insertion (a random slot per item, a scatter-max resolving collisions) fuses at
~30k steps/s and adds 4.5M items/s; class-balanced sampling (a cumulative sum over the N
slots per draw) fuses at ~11k steps/s, but samples 4.3M items/s from a fixed buffer (the
sum is computed once). A ``lax.cond`` between a block copy and the scatter for FIFO adds
was tried and is slower (the cond copies the buffer).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_REMOVED = _common.prepare_blas_env()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from memjax.continual import replay  # noqa: E402

NUM_CLASSES = 10


def _example(dim: int):
  return {"x": jnp.zeros((dim,), jnp.float32), "y": jnp.zeros((), jnp.int32)}


def _batches(steps: int, batch: int, dim: int):
  """[steps, batch] items, scanned as the adds' inputs."""
  x = jax.random.normal(jax.random.key(0), (steps, batch, dim), jnp.float32)
  y = jax.random.randint(jax.random.key(1), (steps, batch), 0, NUM_CLASSES, jnp.int32)
  return {"x": x, "y": y}


class _Buffer:
  """One buffer's init / add / sample, the same signatures for every library."""

  def __init__(self, name, init, add, sample):
    self.name, self.init, self.add, self.sample = name, init, add, sample


def _memjax_buffers(capacity: int, sample_batch: int) -> list[_Buffer]:
  init = lambda example: replay.init_state(capacity, example)

  def balanced(state, key):
    return replay.sample_balanced(state, key, sample_batch, state.items["y"], NUM_CLASSES)

  return [
    _Buffer(
      "memjax_fifo",
      init,
      lambda s, items, key: replay.add_fifo(s, items),
      lambda s, key: replay.sample(s, key, sample_batch),
    ),
    _Buffer(
      "memjax_reservoir",
      init,
      replay.add_reservoir,
      lambda s, key: replay.sample(s, key, sample_batch),
    ),
    _Buffer(
      "memjax_fifo_balanced",
      init,
      lambda s, items, key: replay.add_fifo(s, items),
      balanced,
    ),
  ]


def _flashbax_buffers(capacity: int, add_batch: int, sample_batch: int) -> list[_Buffer]:
  import warnings  # noqa: PLC0415

  import flashbax as fbx  # noqa: PLC0415

  item = fbx.make_item_buffer(
    max_length=capacity, min_length=1, sample_batch_size=sample_batch, add_batches=True
  )
  with warnings.catch_warnings():  # its note that min_length is raised to 2 for pairs
    warnings.simplefilter("ignore", UserWarning)
    flat = fbx.make_flat_buffer(
      max_length=capacity, min_length=2, sample_batch_size=sample_batch, add_batch_size=add_batch
    )
  return [
    _Buffer(
      "flashbax_item",
      item.init,
      lambda s, items, key: item.add(s, items),
      lambda s, key: item.sample(s, key).experience,
    ),
    _Buffer(
      "flashbax_flat",
      flat.init,
      lambda s, items, key: flat.add(s, items),
      lambda s, key: flat.sample(s, key).experience.first,
    ),
  ]


def _programs(buf: _Buffer, example, warm_items):
  """(fused, add_only, sample_only, initial state, full state): jitted scans."""

  def total(items):
    return sum(jnp.sum(v.astype(jnp.float32)) for v in jax.tree.leaves(items))

  @jax.jit
  def fused(state, xs, key):
    def step(carry, x):
      state, acc, i = carry
      k_add, k_sample = jax.random.split(jax.random.fold_in(key, i))
      state = buf.add(state, x, k_add)
      return (state, acc + total(buf.sample(state, k_sample)), i + 1), None

    (state, acc, _), _ = jax.lax.scan(step, (state, jnp.zeros(()), 0), xs)
    return state, acc

  @jax.jit
  def add_only(state, xs, key):
    def step(carry, x):
      state, i = carry
      return (buf.add(state, x, jax.random.fold_in(key, i)), i + 1), None

    return jax.lax.scan(step, (state, 0), xs)[0][0]

  @functools.partial(jax.jit, static_argnums=(2,))
  def sample_only(state, key, steps):
    def step(acc, i):
      return acc + total(buf.sample(state, jax.random.fold_in(key, i))), None

    return jax.lax.scan(step, jnp.zeros(()), jnp.arange(steps))[0]

  empty = buf.init(example)
  full = jax.block_until_ready(add_only(empty, warm_items, jax.random.key(2)))
  return fused, add_only, sample_only, empty, full


def _seconds(fn) -> float:
  return _common.timed(lambda: jax.block_until_ready(fn()))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--capacity", type=int, default=10_000, help="slots N")
  parser.add_argument("--item_dim", type=int, default=64, help="floats per item")
  parser.add_argument("--add_batch", type=int, default=64, help="items per add")
  parser.add_argument("--sample_batch", type=int, default=64, help="items per sample")
  parser.add_argument("--steps", type=int, default=2000, help="scanned steps per timing")
  parser.add_argument("--rounds", type=int, default=7, help="timings per figure (median)")
  parser.add_argument("--small", action="store_true", help="a smoke run: tiny sizes")
  args = parser.parse_args()
  if args.small:
    args.capacity, args.steps, args.rounds = 512, 50, 2
  _common.emit({"figure": "environment", **_common.environment(_REMOVED)})
  settings = {
    "capacity": args.capacity,
    "item_dim": args.item_dim,
    "add_batch": args.add_batch,
    "sample_batch": args.sample_batch,
    "steps": args.steps,
    "rounds": args.rounds,
  }
  example = _example(args.item_dim)
  xs = _batches(args.steps, args.add_batch, args.item_dim)
  warm_steps = -(-args.capacity // args.add_batch) + 1  # wraps around: the buffer is full
  warm = _batches(warm_steps, args.add_batch, args.item_dim)
  try:
    peers = _flashbax_buffers(args.capacity, args.add_batch, args.sample_batch)
  except ImportError:
    peers = []
    _common.emit({"figure": "skipped", "method": "flashbax", "why": "flashbax not installed"})
  buffers = _memjax_buffers(args.capacity, args.sample_batch) + peers
  programs, first_call = {}, {}
  for buf in buffers:
    start = time.perf_counter()
    fused, add_only, sample_only, empty, full = _programs(buf, example, warm)
    jax.block_until_ready(fused(empty, xs, jax.random.key(3)))
    jax.block_until_ready(add_only(full, xs, jax.random.key(3)))
    jax.block_until_ready(sample_only(full, jax.random.key(4), args.steps))
    programs[buf.name] = (fused, add_only, sample_only, empty, full)
    first_call[buf.name] = round(time.perf_counter() - start, 2)

  seconds = {(b.name, f): [] for b in buffers for f in ("fused", "add", "sample")}
  load_before = _common.load()
  for r in range(args.rounds):
    for buf in buffers:  # the buffers take turns within each round
      fused, add_only, sample_only, empty, full = programs[buf.name]
      key = jax.random.key(10 + r)
      calls = {
        "fused": functools.partial(fused, empty, xs, key),
        "add": functools.partial(add_only, full, xs, key),
        "sample": functools.partial(sample_only, full, key, args.steps),
      }
      for what, call in calls.items():
        seconds[buf.name, what].append(_seconds(call))
  load_after = _common.load()

  per_item = {"fused": 1, "add": args.add_batch, "sample": args.sample_batch}
  names = {"fused": "fused_steps_per_s", "add": "add_items_per_s", "sample": "sample_items_per_s"}
  for what, figure in names.items():
    rates = {
      b.name: per_item[what] * args.steps / statistics.median(seconds[b.name, what])
      for b in buffers
    }
    peer = max((n for n in rates if n.startswith("flashbax")), key=rates.get, default=None)
    for buf in buffers:
      rate = rates[buf.name]
      _common.emit(
        {
          "figure": figure,
          "method": buf.name,
          "per_s": round(rate, 1),
          **_common.summarize(seconds[buf.name, what]),
          "peer": peer,
          "ratio_to_flashbax": round(rate / rates[peer], 3) if peer else None,
          "first_call_s": first_call[buf.name],
          **settings,
          "load_before": load_before,
          "load_after": load_after,
        }
      )


if __name__ == "__main__":
  main()
