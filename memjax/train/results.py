"""``results.json``: final metrics with the config, library versions, device and wall time."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
import time
from typing import Any

import jax
import numpy as np

_PACKAGES = (
  "memjax",
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "orbax-checkpoint",
  "chex",
  "numpy",
  "tensorflow-datasets",
)


def library_versions() -> dict[str, str]:
  """Installed versions of memjax and its main dependencies."""
  out = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def device_info() -> dict[str, Any]:
  """The JAX backend and devices this process runs on."""
  devices = jax.devices()
  return {
    "backend": jax.default_backend(),
    "device_kind": devices[0].device_kind,
    "device_count": len(devices),
    "cpu_count": os.cpu_count(),
    "platform": platform.platform(),
  }


def to_jsonable(obj: Any) -> Any:
  """Converts numpy/JAX scalars and arrays and ConfigDicts into JSON types."""
  if hasattr(obj, "to_dict"):
    obj = obj.to_dict()
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, float) and not np.isfinite(obj):
    return str(obj)
  return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  """Writes JSON to ``path`` via a temporary file and rename (never half-written)."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(to_jsonable(obj), f, indent=2, sort_keys=False)
    f.write("\n")
  os.replace(tmp, path)


def write_results(
  workdir: str | os.PathLike,
  metrics: dict[str, Any],
  config: Any,
  wall_time_s: float,
  extra: dict[str, Any] | None = None,
) -> str:
  """Writes ``<workdir>/results.json`` and returns its path.

  Args:
    workdir: the experiment's work directory.
    metrics: final metrics (numbers, per-task tables, paper figures beside ours).
    config: the run's config (a ``ml_collections.ConfigDict`` or dict).
    wall_time_s: wall-clock seconds of the run (all sessions, if resumed).
    extra: any further top-level entries.
  """
  path = os.path.join(os.fspath(workdir), "results.json")
  record = {
    "metrics": metrics,
    "config": config,
    "versions": library_versions(),
    "device": device_info(),
    "wall_time_s": wall_time_s,
    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }
  record.update(extra or {})
  write_json_atomic(path, record)
  return path


__all__ = ["library_versions", "device_info", "to_jsonable", "write_json_atomic", "write_results"]
