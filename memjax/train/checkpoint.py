"""Orbax checkpoints: the one place memjax touches the Orbax API.

Saving is atomic (Orbax writes into a temporary directory and renames it when
complete), so a run killed mid-save keeps its previous checkpoint; a restarted
run calls :meth:`Checkpointer.restore_latest` and continues from the last step.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _abstract(tree: Any) -> Any:
  """Abstract target (shape, dtype, sharding) for restoring into ``tree``'s layout."""

  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    x = jax.numpy.asarray(x) if not isinstance(x, jax.Array) else x
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves and restores a training state pytree plus JSON metadata.

  Args:
    directory: where checkpoints live (``<workdir>/checkpoints``); created if absent.
    max_to_keep: how many recent checkpoints to keep.

  Example:
    >>> ckpt = Checkpointer('/tmp/run/checkpoints')       # doctest: +SKIP
    >>> restored = ckpt.restore_latest(state)              # doctest: +SKIP
    >>> step, state, meta = restored or (0, state, {})     # doctest: +SKIP
    >>> ckpt.save(step, state, {'epoch': 3}); ckpt.close() # doctest: +SKIP
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._closed = False

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
    """Saves ``state`` (any pytree of arrays) and JSON-able ``metadata`` at ``step``."""
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      metadata=ocp.args.JsonSave(_jsonable(metadata or {})),
    )
    self._manager.save(int(step), args=args, force=True)

  def restore_latest(self, target: Any) -> tuple[int, Any, dict] | None:
    """Restores the newest checkpoint into ``target``'s structure, or returns None.

    Args:
      target: a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
        ``jax.eval_shape``) with the structure, shapes, dtypes and shardings to
        restore into.

    Returns:
      ``(step, state, metadata)`` or None when there is no checkpoint.
    """
    step = self.latest_step()
    if step is None:
      return None
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(target)),
        metadata=ocp.args.JsonRestore(),
      ),
    )
    return step, restored["state"], dict(restored["metadata"] or {})

  def close(self) -> None:
    """Waits for pending saves and releases the manager (call before exit; idempotent)."""
    if self._closed:
      return
    self._manager.wait_until_finished()
    self._manager.close()
    self._closed = True

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _jsonable(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  return obj


__all__ = ["Checkpointer"]
