"""Data parallelism with ``jax.make_mesh`` + ``NamedSharding`` + ``jit``.

The one place memjax decides how work spreads over devices: the batch axis is
sharded over a 1-D ``'data'`` mesh and parameters are replicated; ``jit``
inserts the gradient all-reduce. Time (scan) axes are never sharded.

Why not ``jax.pmap``: since JAX 0.8 ``pmap`` is in maintenance and is itself built on
``shard_map``; ``jit`` over ``NamedSharding`` arrays is what JAX recommends. One program
serves one device, many devices and many hosts alike (the compiler partitions it and
inserts the collectives), the arrays keep their global shapes (no leading device axis,
no ``device_put_replicated``), and the same code composes with model sharding later.

Many hosts: call :func:`initialize_distributed` first in every process; the mesh then
spans every process's devices, and each process feeds its share of a batch through
:func:`global_batch`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over the first ``num_devices`` devices.

  Args:
    num_devices: devices on the mesh; None or 0 = all of ``jax.devices()``.

  Returns:
    A ``jax.sharding.Mesh`` of shape ``(num_devices,)`` with the one axis ``'data'`` (Auto).
  """
  n = num_devices or jax.device_count()
  if not 1 <= n <= jax.device_count():
    raise ValueError(f"num_devices={n} must be in [1, {jax.device_count()}]")
  # Auto axes: plain ``jit`` propagates the batch sharding and inserts collectives.
  return jax.make_mesh((n,), (DATA_AXIS,), devices=jax.devices()[:n], axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh, batch_axis: int = 0, ndim: int = 1) -> NamedSharding:
  """The sharding of an ``ndim``-array split along ``batch_axis`` over the data axis.

  Args:
    mesh: a mesh from :func:`data_mesh`.
    batch_axis: the axis to split (the batch; never the axis a scan runs over).
    ndim: the rank of the arrays it will place.

  Returns:
    ``NamedSharding(mesh, P(None, .., 'data', .., None))``.
  """
  spec = [None] * ndim
  spec[batch_axis] = DATA_AXIS
  return NamedSharding(mesh, P(*spec))


def shard_batch(batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """Places every array of ``batch`` with its ``batch_axis`` split over the mesh.

  Args:
    batch: a pytree of arrays, each with the batch at ``batch_axis``.
    mesh: a mesh from :func:`data_mesh`.
    batch_axis: the batch axis of every leaf.

  Returns:
    The same tree of ``jax.Array`` s, each sharded by :func:`batch_sharding`.

  Raises:
    ValueError: when a batch size is not divisible by the number of devices.
  """

  def put(x):
    check_batch_divisible(
      x.shape[batch_axis], mesh, f"axis {batch_axis} of an array of shape {x.shape}"
    )
    return jax.device_put(x, batch_sharding(mesh, batch_axis, x.ndim))

  return jax.tree.map(put, batch)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str = "the batch size") -> None:
  """Raises a ValueError naming ``what`` when ``batch_size`` does not split over the mesh.

  Args:
    batch_size: the global batch size.
    mesh: a mesh from :func:`data_mesh`.
    what: how to name the batch size in the message (e.g. ``'config.batch_size'``).
  """
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(
      f"{what} is {batch_size}, which does not divide over the {n} devices of the data "
      f"mesh; use a "
      f"multiple of {n}, or fewer devices (e.g. config.num_devices=1)"
    )


def constrain_batch(batch: Any, mesh: Mesh) -> Any:
  """Inside ``jit``: every array of rank >= 1 split along axis 0 over the mesh.

  Scalars (a bucket index, a key) stay replicated. Use it on the batch of one step
  (inside a scan the scanned axis is gone, so axis 0 is the batch).

  Args:
    batch: a pytree of arrays, each of rank 0 or with the batch on axis 0.
    mesh: a mesh from :func:`data_mesh`.

  Returns:
    The same tree with sharding constraints.

  Raises:
    ValueError: at trace time, when an array's first axis does not divide over the mesh.
  """

  def constrain(x):
    if jnp.ndim(x) == 0 or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return x
    check_batch_divisible(x.shape[0], mesh, f"the batch axis of an array of shape {x.shape}")
    return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, 0, x.ndim))

  return jax.tree.map(constrain, batch)


def global_batch(local: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
  """This process's share of a batch -> global arrays split along ``batch_axis`` over the mesh.

  With one process this is :func:`shard_batch`. With several, every process passes its
  own rows (``global batch / process count``, the rows its devices hold: the mesh of
  :func:`data_mesh` orders devices by process, so process ``i`` has the ``i``-th block)
  and gets arrays of the global shape.

  Args:
    local: a pytree of host arrays, the batch on ``batch_axis``.
    mesh: a mesh from :func:`data_mesh` (over every process's devices).
    batch_axis: the batch axis of every leaf; 1 for the scanned inputs ``xs`` of
      :func:`memjax.train.make_train_steps` (``[steps, batch, ...]``: the steps axis is
      never split).

  Returns:
    The same tree of global ``jax.Array`` s, each sharded by :func:`batch_sharding`.

  Raises:
    ValueError: (one process) when the batch size does not divide over the mesh.
  """
  if jax.process_count() == 1:
    return shard_batch(local, mesh, batch_axis)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(batch_sharding(mesh, batch_axis, x.ndim), x),
    local,
  )


_ENV = {
  "coordinator_address": "MEMJAX_COORDINATOR_ADDRESS",
  "num_processes": "MEMJAX_NUM_PROCESSES",
  "process_id": "MEMJAX_PROCESS_ID",
}


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Joins a multi-process run (``jax.distributed.initialize``) when one is configured.

  Each argument falls back to ``$MEMJAX_COORDINATOR_ADDRESS``, ``$MEMJAX_NUM_PROCESSES``
  and ``$MEMJAX_PROCESS_ID``. With none of them set nothing happens (a single process;
  on a cluster JAX's own detection, e.g. SLURM, works through
  ``jax.distributed.initialize()`` called by the user). Call it before any other JAX use.

  Args:
    coordinator_address: ``host:port`` of process 0.
    num_processes: the number of processes.
    process_id: this process's index in ``[0, num_processes)``.

  Returns:
    True when this process joined a multi-process run.

  Raises:
    ValueError: when only some of the three are given.
  """
  given = {
    "coordinator_address": coordinator_address,
    "num_processes": num_processes,
    "process_id": process_id,
  }
  for name, var in _ENV.items():
    if given[name] is None and os.environ.get(var):
      given[name] = os.environ[var]
  if all(v is None for v in given.values()):
    return False
  missing = [f"{k} (${_ENV[k]})" for k, v in given.items() if v is None]
  if missing:
    raise ValueError(f"a multi-process run needs all of {list(_ENV)}; missing {missing}")
  jax.distributed.initialize(
    coordinator_address=str(given["coordinator_address"]),
    num_processes=int(given["num_processes"]),
    process_id=int(given["process_id"]),
  )
  return True


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of ``tree`` on all devices of the mesh (parameters, opt state).

  Args:
    tree: a pytree of arrays.
    mesh: a mesh from :func:`data_mesh`.

  Returns:
    The same tree, each leaf fully replicated (``NamedSharding(mesh, P())``).
  """
  return jax.device_put(tree, replicated(mesh))


__all__ = [
  "DATA_AXIS",
  "data_mesh",
  "batch_sharding",
  "shard_batch",
  "replicate",
  "replicated",
  "check_batch_divisible",
  "constrain_batch",
  "global_batch",
  "initialize_distributed",
]
