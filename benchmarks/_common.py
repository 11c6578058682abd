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

# OpenBLAS variables that some of our machines export to pin a kernel or a cache size. A
# developer's override is not a peer's best setting, so the benchmark process removes them and
# chooses the kernel itself (below), recording what it removed.
_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Set by a benchmark for the processes it starts: JSON {"coretypes": {library: name}, ...}.
CHOICE_VAR = "MEMJAX_BENCH_BLAS"


def prepare_blas_env() -> dict[str, str]:
  """Removes OpenBLAS overrides from this process's environment; returns what was removed.

  In a process started by :func:`run_with_best_blas` the removal happened in the parent (and
  is returned from there), and ``OPENBLAS_CORETYPE`` is set to the kernel chosen for numpy.
  Must run before numpy is imported. Raises RuntimeError if numpy is already loaded.
  """
  if "numpy" in sys.modules:
    raise RuntimeError("prepare_blas_env() must run before numpy is imported")
  removed = {name: os.environ.pop(name) for name in _BLAS_VARS if name in os.environ}
  choice = blas_choice()
  if choice:
    removed = choice.get("removed", {})
    set_coretype(choice["coretypes"].get("numpy", ""))
  return removed


def blas_choice() -> dict[str, Any]:
  """The kernel choice this process was started with (empty when it chose nothing)."""
  text = os.environ.get(CHOICE_VAR, "")
  return json.loads(text) if text else {}


def set_coretype(name: str) -> None:
  """Sets OPENBLAS_CORETYPE for the next OpenBLAS that loads ('' = its own CPU detection).

  OpenBLAS reads the variable once, when its shared library is loaded, so call this right
  before the first import of the library that bundles it (numpy, faiss).
  """
  if name:
    os.environ["OPENBLAS_CORETYPE"] = name
  else:
    os.environ.pop("OPENBLAS_CORETYPE", None)


def coretype_candidates() -> list[str]:
  """OpenBLAS kernels worth trying on this CPU ('' first: the library's own detection).

  A library's detection can be wrong (an OpenBLAS older than the CPU may take it for a
  decades-old one and run its generic kernels), so the kernels that the CPU's flags allow
  are tried as well.
  """
  flags = set(_cpu_flags())
  candidates = [""]
  if "avx512f" in flags:
    candidates.append("SkylakeX")
  if "avx512_bf16" in flags:
    candidates.append("Cooperlake")
  if any(f.startswith("amx") for f in flags):
    candidates.append("SapphireRapids")
  if "avx2" in flags:
    candidates += ["Haswell", "Zen"]
  return candidates


def add_peer_blas_flags(parser, peers: str, probe_rounds: int) -> None:
  """``--peer_blas`` (auto | detect), ``--probe_rounds`` and the hidden ``--probe_blas``.

  ``peers`` names the OpenBLAS users in the help text (e.g. "numpy and faiss").
  """
  import argparse  # noqa: PLC0415

  parser.add_argument(
    "--peer_blas",
    choices=("auto", "detect"),
    default="auto",
    help=f"auto: probe the OpenBLAS kernels this CPU allows and run {peers} with the fastest; "
    "detect: the libraries' own CPU detection",
  )
  parser.add_argument(
    "--probe_rounds",
    type=int,
    default=probe_rounds,
    help="--peer_blas=auto: probe rounds per kernel",
  )
  parser.add_argument("--probe_blas", action="store_true", help=argparse.SUPPRESS)


def run_with_best_blas(
  script: str,
  argv: list[str],
  probe_argv: list[str],
  libraries: list[str],
  removed: dict[str, str],
  rounds: int = 3,
) -> int:
  """Chooses each peer library's fastest OpenBLAS kernel here, then runs ``script`` with it.

  For every kernel in :func:`coretype_candidates`, ``rounds`` times (the candidates taking
  turns, so drift hits all alike), runs ``script *probe_argv`` in a fresh process whose
  libraries load that kernel; the probe prints JSON lines ``{"figure": "blas_probe",
  "library", "per_s", "blas"}``. Each library gets the kernel with the highest median speed
  (ties: the library's own detection). Then emits a ``blas_choice`` line and runs
  ``script *argv`` with the choice in its environment (see :func:`prepare_blas_env`);
  returns its exit status. ``removed``: what :func:`prepare_blas_env` removed from this
  process (passed on, so the measured run reports it).
  """
  import subprocess  # noqa: PLC0415

  candidates = coretype_candidates()
  speeds: dict[str, dict[str, list[float]]] = {
    lib: {c: [] for c in candidates} for lib in libraries
  }
  kernels: dict[str, dict[str, Any]] = {lib: {} for lib in libraries}
  for _ in range(rounds):
    for c in candidates:
      env = dict(os.environ, **{CHOICE_VAR: json.dumps({"coretypes": dict.fromkeys(libraries, c)})})
      proc = subprocess.run(
        [sys.executable, script, *probe_argv], env=env, capture_output=True, text=True, check=False
      )
      if proc.returncode != 0:
        raise RuntimeError(
          f"BLAS probe with OPENBLAS_CORETYPE={c!r} failed:\n{proc.stderr[-2000:]}"
        )
      for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if rec.get("figure") == "blas_probe" and rec["library"] in speeds:
          speeds[rec["library"]][c].append(rec["per_s"])
          kernels[rec["library"]][c] = rec["blas"]
  medians = {
    lib: {c: statistics.median(v) for c, v in by_c.items() if v} for lib, by_c in speeds.items()
  }
  coretypes = {lib: max(m, key=lambda c, m=m: (m[c], c == "")) for lib, m in medians.items() if m}
  choice = {"coretypes": coretypes, "removed": removed}
  emit(
    {
      "figure": "blas_choice",
      "coretypes": coretypes,
      "median_per_s": {
        lib: {c or "detected": round(v, 1) for c, v in m.items()} for lib, m in medians.items()
      },
      "kernels_loaded": {
        lib: {c or "detected": k for c, k in ks.items()} for lib, ks in kernels.items()
      },
      "probe": probe_argv,
      "rounds": rounds,
    }
  )
  env = dict(os.environ, **{CHOICE_VAR: json.dumps(choice)})
  sys.stdout.flush()
  return subprocess.run([sys.executable, script, *argv], env=env, check=False).returncode


def blas_architectures(path_contains: str) -> list[str]:
  """The kernels of the loaded OpenBLAS libraries whose file path contains ``path_contains``.

  (e.g. ``"numpy"`` or ``"faiss"``: each wheel bundles its own OpenBLAS.) Needs threadpoolctl.
  """
  import threadpoolctl  # noqa: PLC0415

  return [
    str(d.get("architecture"))
    for d in threadpoolctl.threadpool_info()
    if d.get("internal_api") == "openblas" and path_contains in str(d.get("filepath", ""))
  ]


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
  keep = (
    "user_api",
    "internal_api",
    "prefix",
    "version",
    "num_threads",
    "architecture",
    "filepath",
  )
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
    "blas_coretypes": blas_choice().get("coretypes", {}),
    "blas": blas_info(),
    "load": load(),
  }
