"""One process of a data-parallel run, started by test_distributed.py.

    python _distributed_worker.py OUT_NPZ PROCESS_ID NUM_PROCESSES [PORT]

With ``NUM_PROCESSES > 1`` the process joins a ``jax.distributed`` run whose coordinator
(process 0) listens on ``127.0.0.1:PORT``; with 1 it is the single-process reference.
Each process sees ``--xla_force_host_platform_device_count`` CPU devices (set by the
test in ``XLA_FLAGS``); the data mesh spans every process's devices.

A linear regression is trained twice with the same global computation however many
processes share it:

* ``generated``: each step draws its global batch from the step's key inside the step
  (nothing fed from the host; the batch is split over the mesh by ``constrain_batch``).
* ``fed``: the global batches ``[steps, batch, ...]`` come from a fixed numpy seed; each
  process feeds only its own rows of every batch through ``global_batch(...,
  batch_axis=1)``.

Process 0 writes the final parameters and the per-step losses of both to ``OUT_NPZ``
and prints ``done``.
"""

import sys

from memjax import train

OUT, PROCESS_ID, NUM_PROCESSES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if NUM_PROCESSES > 1:  # before any other JAX use
  assert train.initialize_distributed(f"127.0.0.1:{sys.argv[4]}", NUM_PROCESSES, PROCESS_ID)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

STEPS = 5
BATCH = 16  # global rows per step
W_TRUE = np.array([1.0, -2.0, 0.5], np.float32)


def loss_fn(params, batch, key, context):
  del key, context
  err = batch["x"] @ params["w"] + params["b"] - batch["y"]
  return jnp.mean(err**2), {"abs_err": jnp.mean(jnp.abs(err))}


def generate(x, key, context):
  del x, context
  inputs = jax.random.normal(key, (BATCH, 3))
  return {"x": inputs, "y": inputs @ W_TRUE + 0.3}


def host_batches():
  """The global batches, identical in every process: x [STEPS, BATCH, 3], y [STEPS, BATCH]."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(STEPS, BATCH, 3)).astype(np.float32)
  return {"x": x, "y": (x @ W_TRUE - 0.7).astype(np.float32)}


def init_state(optimizer, mesh):
  params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
  return train.replicate(train.TrainState.create(params, optimizer, jax.random.key(0)), mesh)


def to_host(tree):
  """Every leaf of a replicated tree as numpy (each process holds a whole copy)."""
  return jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), tree)


def main():
  assert jax.process_count() == NUM_PROCESSES and jax.process_index() == PROCESS_ID
  mesh = train.data_mesh()
  assert mesh.size == jax.device_count() == NUM_PROCESSES * jax.local_device_count()
  optimizer = optax.adam(0.05)
  out = {}

  steps = train.make_train_steps(loss_fn, optimizer, num_steps=STEPS, batch_fn=generate, mesh=mesh)
  state, metrics = steps(init_state(optimizer, mesh))
  out.update({f"generated/{k}": v for k, v in to_host({**state.params, **metrics}).items()})

  # This process's rows of every global batch: the mesh orders devices by process.
  rows = BATCH // NUM_PROCESSES
  local = jax.tree.map(lambda a: a[:, PROCESS_ID * rows : (PROCESS_ID + 1) * rows], host_batches())
  xs = train.global_batch(local, mesh, batch_axis=1)
  assert xs["x"].shape == (STEPS, BATCH, 3) and xs["y"].shape == (STEPS, BATCH)
  assert {s.data.shape for s in xs["x"].addressable_shards} == {(STEPS, BATCH // mesh.size, 3)}
  steps = train.make_train_steps(loss_fn, optimizer, mesh=mesh)
  state, metrics = steps(init_state(optimizer, mesh), xs)
  out.update({f"fed/{k}": v for k, v in to_host({**state.params, **metrics}).items()})

  if PROCESS_ID == 0:
    np.savez(OUT, **out)
  print("done", flush=True)


if __name__ == "__main__":
  main()
