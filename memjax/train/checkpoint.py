"""Orbax checkpoints: the one place memjax touches the Orbax API.

What a checkpoint guarantees:

* **Atomic saves.** Orbax writes a step into ``<step>.orbax-checkpoint-tmp/``, adds
  ``commit_success.txt`` and renames the directory to ``<step>/`` when complete (old steps
  are deleted only after that), so a run killed mid-save keeps its previous checkpoints;
  the temporary directory it leaves is never listed as a step, and is removed when the
  next :class:`Checkpointer` opens the directory (or when that step is saved again).
* **Verified restores.** Beside the state and its JSON metadata each step holds a SHA-256
  of every array leaf (item ``checksums``). :meth:`Checkpointer.restore_latest` checks the
  commit marker, restores, compares the checksums, and when a step is unusable (missing
  marker, unreadable or truncated file, a bit flip in the data, broken metadata) logs a
  warning naming the step, its path and the problem, moves the step aside to
  ``<step>.corrupt`` and restores the previous good step. When no step is usable it raises
  :class:`CheckpointError` naming the directory and each step's problem, and moves
  nothing.
* **No code execution.** Only JSON, TensorStore's OCDBT/Zarr files and raw array bytes are
  read back (Orbax's ``StandardRestore`` / ``JsonRestore``); nothing is unpickled.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import os
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

CHECKSUM_ALGORITHM = "sha256"
_COMMIT_FILE = ocp.path.atomicity.COMMIT_SUCCESS_FILE
_CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(RuntimeError):
  """No checkpoint step in a directory could be restored (each step's problem is listed)."""


class _Unusable(Exception):
  """One step cannot be restored (the message says why)."""


def _abstract(tree: Any) -> Any:
  """Abstract target (shape, dtype, sharding) for restoring into ``tree``'s layout."""

  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    x = jax.numpy.asarray(x) if not isinstance(x, jax.Array) else x
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

  return jax.tree.map(leaf, tree)


def _host_value(x: Any) -> np.ndarray | None:
  """The leaf's full value on this host, or None when this process does not hold all of it."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if x.is_fully_addressable:
      return np.asarray(x)
    if x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return None  # sharded over processes: not checksummed
  return np.asarray(x)


def _digest(value: np.ndarray) -> str:
  """SHA-256 of the array's bytes (C order), without copying them."""
  return hashlib.sha256(np.ascontiguousarray(value).reshape(-1).view(np.uint8)).hexdigest()


def checksums(tree: Any) -> dict[str, dict[str, Any]]:
  """``{key path: {'dtype', 'shape', 'sha256'}}`` of every array leaf of ``tree``.

  Leaves sharded over several processes (not held whole by this one) are left out.
  """
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    value = _host_value(leaf)
    if value is not None:
      out[jax.tree_util.keystr(path)] = {
        "dtype": str(value.dtype),
        "shape": list(value.shape),
        CHECKSUM_ALGORITHM: _digest(value),
      }
  return out


def _verify(tree: Any, saved: dict[str, dict[str, Any]]) -> None:
  """Raises _Unusable when a restored leaf's bytes differ from the checksum saved with it."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = jax.tree_util.keystr(path)
    entry = saved.get(name)
    value = _host_value(leaf)
    if entry is None or value is None:
      continue
    if str(value.dtype) != entry["dtype"] or list(value.shape) != list(entry["shape"]):
      continue  # restored into another dtype or shape on purpose: nothing to compare
    if _digest(value) != entry[CHECKSUM_ALGORITHM]:
      raise _Unusable(
        f"the array {name} ({entry['dtype']}{entry['shape']}) does not match the "
        f"{CHECKSUM_ALGORITHM} saved with it (its data files are corrupt)"
      )


def _reason(error: BaseException) -> str:
  """The first line of the error and of each error that caused it (TensorStore's come last)."""
  parts, seen = [], set()
  while error is not None and id(error) not in seen and len(parts) < 4:
    seen.add(id(error))
    lines = str(error).strip().splitlines()
    line = lines[0].split(". See full TensorStore details")[0] if lines else ""
    parts.append(f"{type(error).__name__}: {line[:400]}")
    error = error.__cause__ or error.__context__
  return "; caused by ".join(parts)


def _is_abandoned_read(unraisable: Any) -> bool:
  """An error Python reports late about the reads of a failed Orbax restore: its pending
  coroutines are collected, and TensorStore's threads call back into its closed loop."""
  error, obj = unraisable.exc_value, unraisable.object
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True
  return inspect.iscoroutine(obj) and f"{os.sep}orbax{os.sep}" in obj.cr_code.co_filename


_quiet_installed = False


def _quiet_abandoned_reads() -> None:
  """Installs (once per process) an unraisable hook that drops :func:`_is_abandoned_read`
  reports (the failed restore is already logged as a warning) and passes on every other
  one. It stays: TensorStore's threads may call back long after the restore failed."""
  global _quiet_installed
  if _quiet_installed:
    return
  previous = sys.unraisablehook

  def hook(unraisable: Any) -> None:
    if _is_abandoned_read(unraisable):
      logging.debug("ignored after a failed restore: %r", unraisable.exc_value)
      return
    previous(unraisable)

  sys.unraisablehook = hook
  _quiet_installed = True


class Checkpointer:
  """Saves and restores a training state pytree plus JSON metadata.

  Args:
    directory: where checkpoints live (``<workdir>/checkpoints``); created if absent.
    max_to_keep: how many recent checkpoints to keep (keep 2 or more so that a corrupt
      newest step can fall back to the one before).

  Example:
    >>> ckpt = Checkpointer('/tmp/run/checkpoints')       # doctest: +SKIP
    >>> restored = ckpt.restore_latest(state)              # doctest: +SKIP
    >>> step, state, meta = restored or (0, state, {})     # doctest: +SKIP
    >>> ckpt.save(step, state, {'epoch': 3}); ckpt.close() # doctest: +SKIP
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=True,
      cleanup_tmp_directories=True,  # the leftovers of saves killed before their rename
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._closed = False

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def step_directory(self, step: int) -> str:
    """The directory of a saved ``step``."""
    return os.path.join(self.directory, str(int(step)))

  def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
    """Saves ``state`` (any pytree of arrays) and JSON-able ``metadata`` at ``step``.

    The write continues in the background (Orbax's async save); :meth:`close` waits for
    it. The state's checksums are computed before this returns, so the caller may donate
    or change ``state`` afterwards.
    """
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      metadata=ocp.args.JsonSave(_jsonable(metadata or {})),
      checksums=ocp.args.JsonSave({"algorithm": CHECKSUM_ALGORITHM, "leaves": checksums(state)}),
    )
    self._manager.save(int(step), args=args, force=True)

  def _restore_step(self, step: int, target: Any) -> tuple[Any, dict]:
    path = self.step_directory(step)
    if not os.path.isfile(os.path.join(path, _COMMIT_FILE)):
      raise _Unusable(
        f"no {_COMMIT_FILE} (Orbax writes it last): the save did not complete or the "
        "directory was copied in part"
      )
    items = dict(state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore())
    verified = os.path.isdir(os.path.join(path, "checksums"))  # older checkpoints lack it
    if verified:
      items["checksums"] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001  Orbax / TensorStore / json raise many types
      _quiet_abandoned_reads()
      gc.collect()  # the coroutines the failed restore left pending, now that it is quiet
      raise _Unusable(_reason(e)) from e
    metadata = restored["metadata"]
    if metadata is not None and not isinstance(metadata, dict):
      raise _Unusable(f"its metadata is a {type(metadata).__name__}, not a JSON object")
    if verified:
      saved = restored["checksums"]
      if not isinstance(saved, dict) or not isinstance(saved.get("leaves"), dict):
        raise _Unusable("its checksums item is not a JSON object with 'leaves'")
      if saved.get("algorithm") != CHECKSUM_ALGORITHM:
        raise _Unusable(f"unknown checksum algorithm {saved.get('algorithm')!r}")
      _verify(restored["state"], saved["leaves"])
    else:
      logging.info("%s: no checksums saved (an older checkpoint); not verified", path)
    return restored["state"], dict(metadata or {})

  def _move_aside(self, step: int) -> str:
    """Renames an unusable step so that it is kept for inspection but no longer listed."""
    path = self.step_directory(step)
    dest, n = path + _CORRUPT_SUFFIX, 1
    while os.path.exists(dest):
      dest, n = f"{path}{_CORRUPT_SUFFIX}-{n}", n + 1
    if jax.process_index() == 0:
      os.rename(path, dest)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # noqa: PLC0415

      multihost_utils.sync_global_devices(f"memjax_checkpoint_move_aside_{step}")
    return dest

  def restore_latest(self, target: Any) -> tuple[int, Any, dict] | None:
    """Restores the newest usable checkpoint into ``target``'s structure, or returns None.

    Steps are tried newest first. A step that cannot be restored or whose arrays do not
    match their checksums is reported (an absl warning naming the step, its path and
    the problem); once an older step restores, the unusable newer ones are moved aside
    to ``<step>.corrupt`` (so that the run can save those steps again).

    Args:
      target: a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
        ``jax.eval_shape``) with the structure, shapes, dtypes and shardings to
        restore into.

    Returns:
      ``(step, state, metadata)`` or None when there is no checkpoint.

    Raises:
      CheckpointError: when there are checkpoints but none is usable (e.g. every step is
        corrupt, or ``target`` does not match what was saved); nothing is moved.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    target = _abstract(target)
    problems: list[tuple[int, str]] = []
    for step in steps:
      try:
        state, metadata = self._restore_step(step, target)
      except _Unusable as e:
        problems.append((step, str(e)))
        logging.warning(
          "checkpoint step %d at %s is unusable: %s", step, self.step_directory(step), e
        )
        continue
      for bad, _ in problems:
        dest = self._move_aside(bad)
        logging.warning(
          "checkpoint step %d moved to %s; restored the previous good step %d from %s",
          bad,
          dest,
          step,
          self.step_directory(step),
        )
      if problems:
        self._manager.reload()
      return step, state, metadata
    listed = "; ".join(f"step {s} ({self.step_directory(s)}): {p}" for s, p in problems)
    raise CheckpointError(
      f"no usable checkpoint in {self.directory}: {listed}. Move the directory away to "
      "start the run afresh."
    )

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


__all__ = ["Checkpointer", "CheckpointError", "checksums", "CHECKSUM_ALGORITHM"]
