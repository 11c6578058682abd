"""Data parallelism with ``jax.make_mesh`` + ``NamedSharding`` + ``jit``.

The one place memjax decides how work spreads over devices: the batch axis is
sharded over a 1-D ``'data'`` mesh and parameters are replicated; ``jit``
inserts the gradient all-reduce. Time (scan) axes are never sharded.
"""

from __future__ import annotations

from typing import Any

import jax
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
  n = mesh.shape[DATA_AXIS]

  def put(x):
    if x.shape[batch_axis] % n:
      raise ValueError(
        f"batch axis {batch_axis} of an array of shape {x.shape} is not divisible by "
        f"the {n} devices of the mesh; use a batch size that is a multiple of {n}"
      )
    return jax.device_put(x, batch_sharding(mesh, batch_axis, x.ndim))

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of ``tree`` on all devices of the mesh (parameters, opt state).

  Args:
    tree: a pytree of arrays.
    mesh: a mesh from :func:`data_mesh`.

  Returns:
    The same tree, each leaf fully replicated (``NamedSharding(mesh, P())``).
  """
  return jax.device_put(tree, NamedSharding(mesh, P()))


__all__ = ["DATA_AXIS", "data_mesh", "batch_sharding", "shard_batch", "replicate"]
