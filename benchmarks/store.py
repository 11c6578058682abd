"""Fact-store queries per second on a 1M-entry store: memjax.knowledge.FactStore vs faiss.

    python benchmarks/store.py            # N = 1,048,576 rows, one JSON line per figure
    python benchmarks/store.py --smoke    # a seconds-long run on a small store

The store (``memjax.knowledge.FactStore``: shards of ``--shard_capacity`` rows as ``.npy``
files with a JSON manifest) is built on disk in a temporary folder (or ``--dir``) from
``--n`` random unit keys of ``--dim`` floats, then queried with batches of ``--queries``
random unit queries for the exact top ``--k`` by inner product (on unit keys the same
order as cosine). Figures:

  build_rows_per_s      rows appended per second (shards written, fsynced, committed);
  query_per_s_resident  ``FactStore.query(cache_on_device=True)``: the shards' keys stay in
                        device memory; a query is one jitted exact top-k per shard
                        (``memjax.ops.top_k_search``) and a merge;
  query_per_s_streamed  ``FactStore.query()``: every query reads the shards from their
                        memory-mapped files (the page cache is warm after the first round)
                        and copies them to the device, as a store larger than device
                        memory is queried;
  faiss                 ``faiss.IndexFlatIP`` over the same keys in memory (the exact
                        brute-force index of the most used vector library; faiss-cpu is in
                        the ``bench`` extra). With ``--peer_blas=auto`` (the default; not
                        under ``--smoke``) faiss is first timed in short probe processes under
                        every OpenBLAS kernel the CPU allows and run with the fastest, as
                        ``benchmarks/retrieval.py`` does (a ``blas_choice`` line says which).

Each figure is the median of ``--rounds`` rounds, memjax and faiss interleaved; the line
prints ``ratio_to_faiss`` and ``agreement`` (the fraction of memjax's top-k rows equal to
faiss's, 1.0 up to ties of equal scores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_REMOVED = _common.prepare_blas_env()

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--n", type=int, default=1 << 20, help="rows in the store")
  p.add_argument("--dim", type=int, default=64, help="key size")
  p.add_argument("--shard_capacity", type=int, default=1 << 17, help="rows per shard")
  p.add_argument("--queries", type=int, default=1024, help="queries per batch")
  p.add_argument("--k", type=int, default=10, help="results per query")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds per figure")
  p.add_argument("--dir", default="", help="where to build the store (default: a temp dir)")
  p.add_argument("--smoke", action="store_true", help="a small, seconds-long run")
  p.add_argument(
    "--threads",
    type=int,
    default=None,
    help="1: memjax (XLA) and faiss (OpenMP) on one thread each, a comparison that a machine "
    "busy with other jobs distorts less (default: each library's own thread count)",
  )
  _common.add_peer_blas_flags(p, "faiss", probe_rounds=3)
  args = p.parse_args(argv)
  if args.smoke:
    args.n, args.dim, args.shard_capacity, args.queries, args.rounds = 4096, 16, 1024, 64, 2
    args.peer_blas = "detect"
  if args.threads not in (None, 1):
    p.error("--threads supports only 1 (XLA's CPU backend has no flag for another count)")
  return args


def _limit_threads(threads: int | None) -> None:
  """One thread for XLA and faiss (before jax is imported: XLA reads its flags once)."""
  if threads is None:
    return
  if "jax" in sys.modules:
    raise RuntimeError("_limit_threads() must run before jax is imported")
  flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
  faiss = _import_faiss()
  if faiss is not None:
    faiss.omp_set_num_threads(threads)


def _probe(args) -> None:
  """Under --probe_blas: faiss's speed on a 65,536-key index ("blas_probe" lines)."""
  faiss = _import_faiss()
  if faiss is None:
    return
  rng = np.random.default_rng(1)
  index = faiss.IndexFlatIP(args.dim)
  index.add(_unit(rng.standard_normal((65_536, args.dim))))
  queries = _unit(rng.standard_normal((args.queries, args.dim)))
  index.search(queries, args.k)  # warm-up
  seconds = sorted(_common.timed(lambda: index.search(queries, args.k)) for _ in range(3))
  _common.emit(
    {
      "figure": "blas_probe",
      "library": "faiss",
      "per_s": args.queries / seconds[1],
      "blas": _common.blas_architectures("faiss"),
    }
  )


def _unit(x):
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = _parse(argv)
  if args.probe_blas:
    _limit_threads(args.threads)
    _probe(args)
    return
  if args.peer_blas == "auto" and not _common.blas_choice() and _import_faiss(probe=True):
    probe_argv = ["--probe_blas", f"--dim={args.dim}", f"--queries={args.queries}", f"--k={args.k}"]
    probe_argv += [f"--threads={args.threads}"] if args.threads else []
    script = os.path.abspath(__file__)
    sys.exit(
      _common.run_with_best_blas(script, argv, probe_argv, ["faiss"], _REMOVED, args.probe_rounds)
    )
  _limit_threads(args.threads)
  from memjax import knowledge  # noqa: PLC0415  (after the thread limits)

  env = _common.environment(_REMOVED)
  env["threads"] = args.threads
  _common.emit({"figure": "environment", **env})
  rng = np.random.default_rng(0)
  root = args.dir or tempfile.mkdtemp(prefix="memjax_store_bench_")
  path = os.path.join(root, "store")
  try:
    if os.path.exists(path):
      shutil.rmtree(path)
    store = knowledge.FactStore.create(path, args.dim, 1, args.shard_capacity)
    keys = np.empty((args.n, args.dim), np.float32)
    start = time.perf_counter()
    for lo in range(0, args.n, args.shard_capacity):  # a shard per append: nothing copied
      hi = min(lo + args.shard_capacity, args.n)
      keys[lo:hi] = _unit(rng.standard_normal((hi - lo, args.dim)))
      store.append(keys[lo:hi], np.arange(lo, hi, dtype=np.float32)[:, None], np.zeros(hi - lo))
    build = time.perf_counter() - start
    _common.emit(
      {
        "figure": "build_rows_per_s",
        "value": round(args.n / build, 1),
        "n": args.n,
        "dim": args.dim,
        "shards": store.num_shards,
        "seconds": round(build, 3),
        "load": _common.load(),
      }
    )
    queries = _unit(rng.standard_normal((args.queries, args.dim)))
    methods = {
      "query_per_s_resident": lambda: store.query(queries, args.k, "dot", cache_on_device=True),
      "query_per_s_streamed": lambda: knowledge.FactStore.open(path).query(queries, args.k, "dot"),
    }
    faiss = _import_faiss()
    if faiss is not None:
      index = faiss.IndexFlatIP(args.dim)
      index.add(keys)
      methods["faiss"] = lambda: index.search(queries, args.k)
    else:
      _common.emit({"figure": "skipped", "method": "faiss", "why": "faiss not installed"})
    first = {name: fn() for name, fn in methods.items()}  # compile, warm the page cache
    times = {name: [] for name in methods}
    for _ in range(args.rounds):
      for name, fn in methods.items():
        times[name].append(_common.timed(fn))
    qps = {name: args.queries / np.median(t) for name, t in times.items()}
    for name in ("query_per_s_resident", "query_per_s_streamed", "faiss"):
      if name not in qps:
        continue
      record = {
        "figure": name,
        "value": round(qps[name], 1),
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "queries": args.queries,
        "threads": args.threads,
        **_common.summarize(times[name]),
        "load": _common.load(),
      }
      if faiss is not None and name != "faiss":
        record["ratio_to_faiss"] = round(qps[name] / qps["faiss"], 3)
        record["agreement"] = float(np.mean(first[name].rows == first["faiss"][1]))
      _common.emit(record)
  finally:
    if not args.dir:
      shutil.rmtree(root, ignore_errors=True)


def _import_faiss(probe: bool = False):
  """faiss with the OpenBLAS kernel chosen for it (None if not installed). ``probe``: only
  say whether it is installed, without loading it (its kernel is chosen at load time)."""
  if probe:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("faiss") is not None
  if "faiss" not in sys.modules:
    _common.set_coretype(_common.blas_choice().get("coretypes", {}).get("faiss", ""))
  try:
    import faiss  # noqa: PLC0415
  except ImportError:
    return None
  return faiss


if __name__ == "__main__":
  main()
