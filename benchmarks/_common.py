"""Shared helpers for memjax benchmarks: BLAS environment, timing, JSON lines, machine info.

Import this module and call :func:`prepare_blas_env` BEFORE numpy is imported anywhere in
the process (numpy loads OpenBLAS at import time and reads its variables only then).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# OpenBLAS variables that some of our machines export to pin a kernel or a cache size.
# A wrong OPENBLAS_CORETYPE (or L2 size) makes numpy's matmul pick a slower kernel, which
# would make the numpy baseline look worse than it is. The benchmark process removes them
# so numpy auto-detects the CPU, and records what it removed.
_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def prepare_blas_env() -> dict[str, str]:
  """Removes OpenBLAS overrides from this process's environment; returns what was removed.

  Must run before numpy is imported. Raises RuntimeError if numpy is already loaded.
  """
  if "numpy" in sys.modules:
    raise RuntimeError("prepare_blas_env() must run before numpy is imported")
  return {name: os.environ.pop(name) for name in _BLAS_VARS if name in os.environ}


def timed(fn: Callable[[], Any]) -> float:
  """Wall-clock seconds of one call of ``fn`` (which must block until its result is ready)."""
  return timed_wall_and_cpu(fn)[0]


def timed_wall_and_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
  """Wall-clock and process CPU seconds (all threads) of one call of ``fn``.

  On a loaded machine the wall time grows with the other processes' share of the cores;
  the CPU time much less so (spinning OpenMP threads count as CPU time, though).
  """
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def summarize(seconds: list[float]) -> dict[str, Any]:
  """Median, min and all timings (seconds), rounded for printing."""
  return {
    "median_s": round(statistics.median(seconds), 6),
    "min_s": round(min(seconds), 6),
    "all_s": [round(s, 6) for s in seconds],
  }


def load() -> list[float]:
  """1, 5 and 15 minute load averages (other users of the machine make timings noisy)."""
  return [round(x, 2) for x in os.getloadavg()]


def emit(record: dict[str, Any]) -> None:
  """Prints ``record`` as one JSON line on stdout (flushed, so partial runs are useful)."""
  print(json.dumps(record, sort_keys=False), flush=True)


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          flags = line.split(":", 1)[1].split()
          return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
  except OSError:
    pass
  return []


def blas_info() -> list[dict[str, Any]]:
  """The BLAS / OpenMP libraries loaded in this process, from threadpoolctl if installed."""
  try:
    import threadpoolctl  # noqa: PLC0415  (optional dependency)
  except ImportError:
    return [{"note": "threadpoolctl not installed"}]
  keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture")
  return [{k: d.get(k) for k in keep if k in d} for d in threadpoolctl.threadpool_info()]


def environment(removed_env: dict[str, str] | None = None) -> dict[str, Any]:
  """Machine and library facts worth printing next to any timing."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  return {
    "python": platform.python_version(),
    "numpy": np.__version__,
    "jax": jax.__version__,
    "jax_backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "cpu": _cpu_model(),
    "cpu_count": os.cpu_count(),
    "cpu_simd_flags": _cpu_flags(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    "removed_env": removed_env or {},
    "blas": blas_info(),
    "load": load(),
  }
