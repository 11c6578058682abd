"""Restarts as a vmapped axis in one program vs one after another, on CPU.

    python benchmarks/restarts.py                 # NTM copy (batch 1) and MemN2N (per task)
    python benchmarks/restarts.py --quick         # seconds-long smoke run

``memjax.train.runs`` trains a study's restarts (or seeds) one after another. They could
instead run as a leading axis of one compiled program (``jax.vmap`` over stacked train
states: one compile, wider arrays). This measures both on the two studies' settings and
prints one JSON line per figure: optimizer steps per second summed over the R restarts,
and the ratio vmapped / sequential.

* NTM copy, the paper's batch 1 (``experiments/algorithmic/configs/copy_ntm.py``: LSTM
  controller 100, memory 128 x 20, RMSProp, lengths 1-20). Sequentially the study cuts each
  batch to one of 4 static lengths (``lax.switch``); under ``vmap`` a switch whose branch
  differs between restarts runs every branch, so the vmapped program pads to T = 41
  (``buckets=1``; the switch is measured too).
* MemN2N per task (``experiments/babi/configs/per_task.py``: d = 20, 3 hops, PE, memory 50,
  batch 32, one length bucket), one epoch of generated task-1-like data per dispatch.

Measured 2026-12-03 (2 cores, AVX-512; ``python benchmarks/restarts.py``): see the README's
"Restarts in one program" for the figures and the decision.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_REMOVED = _common.prepare_blas_env()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from memjax import train  # noqa: E402
from memjax.data import algorithmic  # noqa: E402
from memjax.data.babi import length_buckets, synthetic  # noqa: E402
from memjax.models import memn2n  # noqa: E402
from memjax.models.ntm import ntm_model  # noqa: E402
from memjax.train import recipes  # noqa: E402


def _stack(states):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def _time(fn, repeats: int) -> float:
  """The best wall time of ``repeats`` calls (each waits for its result)."""
  return min(_common.timed(lambda: jax.block_until_ready(fn())) for _ in range(repeats))


# ----------------------------------------------------------------------------- NTM


def bench_ntm(restarts: int, steps_per_call: int, repeats: int, small: bool) -> None:
  task = algorithmic.make_task("copy", num_bits=8, min_length=1, max_length=20)
  size = dict(num_slots=16, slot_size=8, controller_size=16) if small else {}
  model = ntm_model(task.output_size, controller="lstm", **size)
  optimizer = optax.chain(
    optax.clip_by_global_norm(10.0), optax.rmsprop(1e-4, decay=0.95, momentum=0.9, eps=1e-8)
  )

  def init(seed):
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, jnp.zeros((1, 3, task.input_size)))["params"]
    return train.TrainState.create(params, optimizer, data_key)

  states = [init(s) for s in range(restarts)]
  figures = {}
  for mode, buckets in (("sequential", 4), ("vmapped", 1), ("vmapped", 4)):
    steps = recipes.sequence_train_steps(
      model, optimizer, task.train_batch, 1, steps_per_call, buckets, donate=False
    )
    if mode == "sequential":
      fn = lambda steps=steps: [steps(s)[0] for s in states]
    else:
      vstep = jax.vmap(steps)  # vmap of the jitted step: still one compiled program
      stacked = _stack(states)
      fn = lambda vstep=vstep, stacked=stacked: vstep(stacked)[0]
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    seconds = _time(fn, repeats)
    rate = restarts * steps_per_call / seconds
    figures[mode, buckets] = rate
    _common.emit(
      {
        "figure": "restart_steps_per_s",
        "study": "ntm_copy_batch1",
        "mode": mode,
        "length_buckets": buckets,
        "restarts": restarts,
        "steps_per_s": round(rate, 1),
        "first_call_s": round(compile_s, 2),
        "ratio_to_sequential": round(rate / figures.get(("sequential", 4), rate), 3),
      }
    )


# ----------------------------------------------------------------------------- MemN2N


def bench_memn2n(restarts: int, repeats: int, num_train: int) -> None:
  data = synthetic.load_arrays(num_train=num_train, num_test=10, memory_size=50, seed=0)
  (bucket,) = length_buckets(data.train, (), 50)
  model = memn2n.MemN2N(
    vocab_size=len(data.vocab), embedding_size=20, num_slots=50, num_hops=3, encoding="pe"
  )
  optimizer = optax.chain(
    train.clip.clip_each_by_norm(40.0), optax.inject_hyperparams(optax.sgd)(learning_rate=0.005)
  )
  train_epoch = recipes.memn2n_train_epoch(
    model, optimizer, batch_size=32, random_noise=0.1, num_buckets=1, donate=False
  )
  n = bucket["answer"].shape[0]

  def init(seed):
    rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(init_rng, bucket["story"][:1], bucket["query"][:1])
    return train.TrainState.create(params, optimizer, rng)

  states = [init(s) for s in range(restarts)]
  one = lambda s: train_epoch(s, [bucket], False)[0]
  many = jax.vmap(one)  # each restart its own data order (its own key)
  stacked = _stack(states)
  figures = {}
  for mode, fn in (
    ("sequential", lambda: [one(s) for s in states]),
    ("vmapped", lambda: many(stacked)),
  ):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    seconds = _time(fn, repeats)
    rate = restarts * n / seconds
    figures[mode] = rate
    _common.emit(
      {
        "figure": "restart_examples_per_s",
        "study": "memn2n_per_task",
        "mode": mode,
        "restarts": restarts,
        "examples_per_s": round(rate, 1),
        "first_call_s": round(compile_s, 2),
        "ratio_to_sequential": round(rate / figures["sequential"], 3),
      }
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--restarts", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
  args = parser.parse_args()
  _common.emit({"figure": "environment", **_common.environment(_REMOVED)})
  bench_ntm(args.restarts, 10 if args.quick else 100, args.repeats, small=args.quick)
  bench_memn2n(args.restarts, args.repeats, 64 if args.quick else 900)


if __name__ == "__main__":
  main()
