"""A tiny study on memjax.train.fit, run as a subprocess by test_loop.py.

    python _tiny_fit.py WORKDIR [--kill-at=R] [--sleep=S] [--checkpoint-every=C]

Linear regression on batches generated inside the step from the step's key; the study
state (``extra``) keeps the best parameters on a validation loss. ``--kill-at=R``
SIGKILLs the process when round R starts (R rounds done; right after the checkpoint of
round R when one is due, so the kill may land during its write). At the end it writes
``final.npz`` (every leaf of the final state) and prints ``done``.
"""

import argparse
import os
import signal
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from memjax import train

NUM_ROUNDS = 8
STEPS_PER_ROUND = 3
W_TRUE = np.array([1.0, -2.0, 0.5], np.float32)


class Best(NamedTuple):
  params: Any
  val_loss: jax.Array  # [] float32
  rows: jax.Array  # [] int32 rows seen by the hook (lost if a resume dropped the study state)


def batch_fn(x, key, context):
  del x, context
  inputs = jax.random.normal(key, (8, 3))
  return {"x": inputs, "y": inputs @ W_TRUE + 0.1}


def loss_fn(params, batch, key, context):
  del key, context
  err = batch["x"] @ params["w"] + params["b"] - batch["y"]
  return jnp.mean(err**2), {"abs_err": jnp.mean(jnp.abs(err))}


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--kill-at", type=int, default=-1)
  parser.add_argument("--sleep", type=float, default=0.0)
  parser.add_argument("--checkpoint-every", type=int, default=2)
  args = parser.parse_args(argv)

  optimizer = optax.adam(0.05)
  steps = train.make_train_steps(loss_fn, optimizer, num_steps=STEPS_PER_ROUND, batch_fn=batch_fn)
  val = batch_fn(None, jax.random.key(99), None)

  def init():
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    best = Best(jax.tree.map(jnp.copy, params), jnp.asarray(jnp.inf, jnp.float32), jnp.int32(0))
    return train.TrainState.create(params, optimizer, jax.random.key(0), best)

  def train_fn(state, round_index):
    if round_index == args.kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(args.sleep)
    return steps(state)

  def evaluate(state):
    return {"val_loss": loss_fn(state.params, val, None, None)[0]}

  def keep_best(state, row):
    best = state.extra._replace(rows=state.extra.rows + 1)
    if row["val_loss"] < float(best.val_loss):
      best = Best(jax.tree.map(jnp.copy, state.params), jnp.float32(row["val_loss"]), best.rows)
    return state._replace(extra=best), False

  result = train.fit(
    init,
    train_fn,
    workdir=args.workdir,
    num_rounds=NUM_ROUNDS,
    eval_fn=evaluate,
    hooks=[keep_best],
    checkpoint_every=args.checkpoint_every,
    steps_per_round=STEPS_PER_ROUND,
    progress=False,
  )
  leaves = jax.tree.leaves(jax.device_get(result.state))
  np.savez(os.path.join(args.workdir, "final.npz"), *leaves)
  print("done", result.rounds, flush=True)


if __name__ == "__main__":
  sys.exit(main())
