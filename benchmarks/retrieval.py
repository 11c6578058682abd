r"""Exact top-k retrieval throughput: memjax (float32 / bfloat16 keys) vs numpy vs faiss.

For each memory size N, one run times, on the same random data and interleaved repeat by
repeat (so load from other processes hits every method alike):

  memjax_f32   memjax.ops.top_k_search, float32 keys, under jax.jit
  memjax_bf16  the same with the keys stored in bfloat16 (float32 queries; the keys are
               widened block by block inside the search, so scoring is float32)
  numpy        scores = queries @ keys.T (OpenBLAS sgemm), argpartition, then a sort of the k
               (in query blocks of at most 2**26 scores, so N = 1M needs 256 MiB, not 4 GiB)
  faiss        faiss.IndexFlatIP(dim).search (faiss-cpu), if faiss is installed

It prints one JSON line per figure (throughput in queries/s, with ratios to faiss and
numpy, and recall@k against the exact top-k of the float32 data, scored in float64), and
a first line describing the machine (device, jax version, BLAS kernels and threads, load).

Usage (the README's setting, and a seconds-long smoke run):

  python benchmarks/retrieval.py --n=65536,1048576 --dim=128 --batch=1024 --k=32
  python benchmarks/retrieval.py --small

Notes on fairness:
  * Each peer runs with its fastest OpenBLAS kernel on this CPU. numpy and faiss each bundle
    an OpenBLAS, which picks its kernel from the CPU when it loads; that detection can be
    wrong (faiss's OpenBLAS has taken an AVX-512 CPU for a 2003 Opteron, "Barcelona", and run
    its slowest kernels). With --peer_blas=auto (the default) the run first times numpy and
    faiss in short probe processes under every kernel the CPU's flags allow (and the
    library's own detection), gives each library its fastest, prints the probes and the
    choice (a "blas_choice" line), then measures with them. OPENBLAS_CORETYPE /
    OPENBLAS_L2_SIZE set by the caller are removed first and printed. --peer_blas=detect
    skips the probes (each library's own detection).
  * No XLA flag is set; memjax runs with the library defaults unless --block_size,
    --query_block_size or --chunk_size are given.
  * Timings are medians over --repeats; the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_REMOVED = _common.prepare_blas_env()  # before numpy is imported

import numpy as np  # noqa: E402

GOALS = {  # our goals, checked in the output (ratio to faiss; recall)
  "memjax_f32": {"min_ratio_to_faiss": 0.9},
  "memjax_bf16": {"min_ratio_to_faiss": 1.5, "min_recall": 0.99},
}


def _parse_ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--n", type=_parse_ints, default=[65_536, 1_048_576], help="comma-separated memory sizes N"
  )
  p.add_argument("--dim", type=int, default=128, help="key / query size K")
  p.add_argument("--batch", type=int, default=1024, help="queries per search")
  p.add_argument("--k", type=int, default=32, help="results per query")
  p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
  p.add_argument(
    "--methods",
    default="memjax_f32,memjax_bf16,numpy,faiss",
    help="comma-separated subset of memjax_f32,memjax_bf16,numpy,faiss",
  )
  p.add_argument("--block_size", type=int, default=None, help="memjax key block (default: lib)")
  p.add_argument(
    "--query_block_size", type=int, default=None, help="memjax query block (default: library's)"
  )
  p.add_argument("--chunk_size", type=int, default=None, help="memjax chunk (default: lib)")
  p.add_argument(
    "--threads",
    type=int,
    default=None,
    help="run every method on this many threads (default: each library's own choice). "
    "For XLA this sets XLA_FLAGS=--xla_cpu_multi_thread_eigen=false "
    "intra_op_parallelism_threads=1 (only 1 is supported), before jax is imported",
  )
  _common.add_peer_blas_flags(p, "numpy and faiss", probe_rounds=3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--small",
    action="store_true",
    help="smoke mode: N=2048, dim=16, batch=64, k=8, 2 repeats (seconds)",
  )
  args = p.parse_args(argv)
  if args.small:
    args.n, args.dim, args.batch, args.k, args.repeats = [2048], 16, 64, 8, 2
  args.methods = [m for m in args.methods.split(",") if m]
  if args.threads not in (None, 1):
    p.error("--threads supports only 1 (XLA CPU has no flag for another fixed count)")
  return args


def limit_threads(threads: int | None) -> None:
  """Pins XLA, OpenBLAS (numpy) and OpenMP (faiss) to ``threads`` threads, if given.

  Must run before jax is imported (XLA reads XLA_FLAGS once).
  """
  if threads is None:
    return
  if "jax" in sys.modules:
    raise RuntimeError("limit_threads() must run before jax is imported")
  flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
  try:
    import threadpoolctl  # noqa: PLC0415

    threadpoolctl.threadpool_limits(threads)  # numpy's OpenBLAS (and any OpenMP)
  except ImportError:
    pass
  faiss = import_faiss()
  if faiss is not None:
    faiss.omp_set_num_threads(threads)


def exact_top_k(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
  """Exact top-k indices of float32 data, scored in float64 (ties: lower index first)."""
  out = np.empty((queries.shape[0], k), np.int64)
  keys64 = keys.astype(np.float64)
  step = max(1, 2**25 // keys.shape[0])
  for s in range(0, queries.shape[0], step):
    scores = queries[s : s + step].astype(np.float64) @ keys64.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # sort by (score desc, index asc)
    order = np.lexsort((part, -part_scores), axis=1)
    out[s : s + step] = np.take_along_axis(part, order, axis=1)
  return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean over queries of |found & truth| / k."""
  k = truth.shape[1]
  hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
  return hits / (k * truth.shape[0])


def numpy_search(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
  """matmul + argpartition + sort of the k, in query blocks of <= 2**26 scores."""
  out = np.empty((queries.shape[0], k), np.int64)
  step = max(1, 2**26 // keys.shape[0])
  for s in range(0, queries.shape[0], step):
    scores = queries[s : s + step] @ keys.T
    part = np.argpartition(scores, -k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    out[s : s + step] = np.take_along_axis(part, order, axis=1)
  return out


def make_methods(args, keys: np.ndarray):
  """Returns {name: search(queries) -> indices [B, k] (blocking until done)}."""
  methods = {}
  wanted = set(args.methods)
  if wanted & {"memjax_f32", "memjax_bf16"}:
    import functools  # noqa: PLC0415

    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from memjax.ops import top_k_search  # noqa: PLC0415

    opts = {
      name: getattr(args, name)
      for name in ("block_size", "query_block_size", "chunk_size")
      if getattr(args, name) is not None
    }
    search = jax.jit(functools.partial(top_k_search, k=args.k, **opts))
    for name, dtype in (("memjax_f32", jnp.float32), ("memjax_bf16", jnp.bfloat16)):
      if name in wanted:
        dev_keys = jnp.asarray(keys, dtype)

        def run(q, dev_keys=dev_keys):
          _, idx = search(q, dev_keys)
          return np.asarray(idx)  # blocks until ready

        methods[name] = run
  if "numpy" in wanted:
    methods["numpy"] = lambda q: numpy_search(q, keys, args.k)
  if "faiss" in wanted:
    faiss = import_faiss()
    if faiss is None:
      _common.emit({"figure": "skipped", "method": "faiss", "why": "faiss not installed"})
    else:
      index = faiss.IndexFlatIP(keys.shape[1])
      index.add(keys)
      methods["faiss"] = lambda q: index.search(q, args.k)[1]
  return methods


def import_faiss():
  """faiss, loaded with the OpenBLAS kernel chosen for it (None if it is not installed)."""
  if "faiss" not in sys.modules:
    _common.set_coretype(_common.blas_choice().get("coretypes", {}).get("faiss", ""))
  try:
    import faiss  # noqa: PLC0415
  except ImportError:
    return None
  return faiss


def faiss_threads() -> int | None:
  faiss = import_faiss()
  return None if faiss is None else faiss.omp_get_max_threads()


def probe(args) -> None:
  """Under --probe_blas: times numpy and faiss (the OpenBLAS users): "blas_probe" lines."""
  rng = np.random.default_rng(args.seed)
  n = args.n[0]
  keys = rng.standard_normal((n, args.dim), dtype=np.float32)
  queries = rng.standard_normal((args.batch, args.dim), dtype=np.float32)
  methods = make_methods(args, keys)
  for name, fn in methods.items():
    fn(queries)  # warm-up
    seconds = [_common.timed(lambda fn=fn: fn(queries)) for _ in range(args.repeats)]
    _common.emit(
      {
        "figure": "blas_probe",
        "library": name,
        "per_s": args.batch / sorted(seconds)[len(seconds) // 2],
        "blas": _common.blas_architectures(name),
      }
    )


def run(args) -> list[dict]:
  limit_threads(args.threads)
  faiss_omp = faiss_threads()  # imports faiss first, so its BLAS is listed below
  env = _common.environment(_REMOVED)
  env["faiss_omp_threads"] = faiss_omp
  env["threads"] = args.threads
  _common.emit({"figure": "environment", **env})
  records = []
  rng = np.random.default_rng(args.seed)
  for n in args.n:
    keys = rng.standard_normal((n, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.batch, args.dim), dtype=np.float32)
    truth = exact_top_k(queries, keys, args.k)
    methods = make_methods(args, keys)
    found = {name: fn(queries) for name, fn in methods.items()}  # warm-up (and compile)
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    load_before = _common.load()
    for _ in range(args.repeats):
      for name, fn in methods.items():  # interleaved: noise hits all methods alike
        wall, cpu = _common.timed_wall_and_cpu(lambda fn=fn, q=queries: fn(q))
        times[name].append(wall)
        cpu_times[name].append(cpu)
    load_after = _common.load()
    stats = {name: _common.summarize(t) for name, t in times.items()}
    for name, t in cpu_times.items():
      stats[name]["median_process_cpu_s"] = round(sorted(t)[len(t) // 2], 6)
    qps = {name: args.batch / s["median_s"] for name, s in stats.items()}
    for name in methods:
      rec = {
        "figure": "exact_top_k_queries_per_s",
        "method": name,
        "n": n,
        "dim": args.dim,
        "batch": args.batch,
        "k": args.k,
        "queries_per_s": round(qps[name], 1),
        "recall_at_k": round(recall(found[name], truth), 5),
        "ratio_to_faiss": round(qps[name] / qps["faiss"], 3) if "faiss" in qps else None,
        "ratio_to_numpy": round(qps[name] / qps["numpy"], 3) if "numpy" in qps else None,
        **stats[name],
        "repeats": args.repeats,
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_after,
      }
      goal = GOALS.get(name)
      if goal and rec["ratio_to_faiss"] is not None:
        met = rec["ratio_to_faiss"] >= goal["min_ratio_to_faiss"]
        if "min_recall" in goal:
          met = met and rec["recall_at_k"] >= goal["min_recall"]
        rec["goal"] = goal
        rec["goal_met"] = met
      _common.emit(rec)
      records.append(rec)
    del methods, found
  return records


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.probe_blas:
    limit_threads(args.threads)
    probe(args)
    return
  peers = [m for m in ("numpy", "faiss") if m in args.methods]
  if args.peer_blas == "auto" and peers and not _common.blas_choice():
    probe_argv = [
      "--probe_blas",
      f"--n={min(min(args.n), 65_536)}",
      f"--dim={args.dim}",
      f"--batch={args.batch}",
      f"--k={args.k}",
      "--repeats=3",
      f"--methods={','.join(peers)}",
      *([f"--threads={args.threads}"] if args.threads else []),
    ]
    script = os.path.abspath(__file__)
    sys.exit(
      _common.run_with_best_blas(script, argv, probe_argv, peers, _REMOVED, args.probe_rounds)
    )
  run(args)


if __name__ == "__main__":
  main()
