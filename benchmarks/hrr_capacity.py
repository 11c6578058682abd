"""Capacity of a holographic (HRR) memory: measured recall vs the SNR theory.

Stores n random key-value pairs in one trace ``t = sum_i k_i (*) v_i`` of dimension d,
decodes every value with ``unbind(t, k_j)`` and cleans it up by nearest neighbour over
the codebook of the n stored values (plus ``--extra`` unstored distractors). Prints one
JSON line per (d, n): measured accuracy (cosine cleanup, as ``memjax.ops.hrr.cleanup``,
and dot-product cleanup) beside the theoretical accuracy.

Theory (SNR analysis in the style of Plate 1995 and Plate 2003, ch. 3). The dot-product score of
candidate v_m is ``s_m = unbind(t, k_j) . v_m = t . (k_j (*) v_m)``, a sum of n
dot products between bound pairs. With i.i.d. N(0, 1/d) entries:

  correct item (m = j):   mean 1, var (6d + 4)/d^2 + (n - 1)/d
  stored distractor:      mean 0, var 2 (2d + 2)/d^2 + (n - 2)/d
  unstored distractor:    mean 0, var (2d + 2)/d^2 + (n - 1)/d

(the (6d+4)/d^2 and (2d+2)/d^2 terms are the self and shared-factor variances,
derived in the frequency domain; ``tests/ops/test_hrr.py`` checks them by sampling).
Treating the scores as independent Gaussians, recall succeeds when the correct score
beats every distractor:

  P(correct) = int N(x; 1, s_c^2) Phi(x / s_d)^(n - 1) Phi(x / s_u)^extra dx.

So the noise grows like sqrt(n / d) against a signal of 1: capacity is linear in d.
Cosine cleanup also divides by |v_m| (relative spread ~ 1/sqrt(2d)); the theory is
for the dot score and ignores that and the weak correlations between scores.

Run:
  python benchmarks/hrr_capacity.py --out /tmp/hrr_capacity
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from memjax.ops import hrr

DEFAULT_NS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def score_stddevs(d: int, n: int) -> tuple[float, float, float]:
  """Standard deviations of the correct, stored-distractor and unstored-distractor scores."""
  correct = (6 * d + 4) / d**2 + (n - 1) / d
  stored = 2 * (2 * d + 2) / d**2 + max(n - 2, 0) / d
  unstored = (2 * d + 2) / d**2 + (n - 1) / d
  return math.sqrt(correct), math.sqrt(stored), math.sqrt(unstored)


def theory_accuracy(d: int, n: int, extra: int = 0, points: int = 8001) -> float:
  """P(the correct item has the highest score) under the Gaussian model above."""
  s_c, s_d, s_u = score_stddevs(d, n)
  x = np.linspace(1 - 10 * s_c, 1 + 10 * s_c, points)
  log_p = -0.5 * ((x - 1) / s_c) ** 2 - math.log(s_c * math.sqrt(2 * math.pi))
  log_p = log_p + (n - 1) * special.log_ndtr(x / s_d) + extra * special.log_ndtr(x / s_u)
  return float(np.clip(np.trapezoid(np.exp(log_p), x), 0.0, 1.0))


def _measure(key: jax.Array, trials: int, n: int, d: int, extra: int) -> tuple[jax.Array, ...]:
  k_keys, k_values, k_extra = jax.random.split(key, 3)
  keys = hrr.random_vectors(k_keys, trials * n, d).reshape(trials, n, d)
  values = hrr.random_vectors(k_values, trials * n, d).reshape(trials, n, d)
  distract = hrr.random_vectors(k_extra, trials * extra, d).reshape(trials, extra, d)
  trace = hrr.superpose(keys, values)  # [trials, d]
  decoded = hrr.unbind(trace[:, None, :], keys)  # [trials, n, d]
  codebook = jnp.concatenate([values, distract], axis=1)  # [trials, n + extra, d]
  want = jnp.arange(n)
  cos_idx = jax.vmap(lambda q, c: hrr.cleanup(q, c).indices)(decoded, codebook)
  dot_idx = jax.vmap(lambda q, c: hrr.cleanup(q, c, similarity="dot").indices)(decoded, codebook)
  return jnp.sum(cos_idx == want), jnp.sum(dot_idx == want)


_measure_jit = jax.jit(_measure, static_argnums=(1, 2, 3, 4))


def measure_accuracy(
  seed: int, d: int, n: int, queries: int, extra: int = 0, max_trials_per_chunk: int | None = None
) -> tuple[float, float, int]:
  """Measured (cosine, dot) recall accuracy over about ``queries`` retrievals."""
  trials = max(1, -(-queries // n))
  # Keep each chunk's [trials, n + extra, d] arrays around 16M floats.
  chunk = max_trials_per_chunk or max(1, (1 << 24) // ((n + extra) * d))
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), d), n)
  cos_hits = dot_hits = done = 0
  while done < trials:
    t = min(chunk, trials - done)
    c, dt = _measure_jit(jax.random.fold_in(key, done), t, n, d, extra)
    cos_hits, dot_hits, done = cos_hits + int(c), dot_hits + int(dt), done + t
  total = trials * n
  return cos_hits / total, dot_hits / total, total


def _plot(rows: list[dict], out_dir: str) -> str:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for i, d in enumerate(sorted({r["d"] for r in rows})):
    rs = [r for r in rows if r["d"] == d]
    ns = [r["n"] for r in rs]
    color = f"C{i}"
    ax.plot(ns, [r["measured_cosine"] for r in rs], "o", color=color, label=f"measured d={d}")
    ax.plot(ns, [r["theory"] for r in rs], "-", color=color, label=f"theory d={d}")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("stored pairs n")
  ax.set_ylabel("recall accuracy (cleanup over the n values)")
  ax.set_title("HRR capacity: one trace, circular-convolution binding")
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  path = os.path.join(out_dir, "hrr_capacity.png")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dims", default="256,1024,4096", help="comma-separated dimensions d")
  parser.add_argument(
    "--ns",
    default=",".join(map(str, DEFAULT_NS)),
    help="comma-separated numbers of stored pairs n (only n <= d are run)",
  )
  parser.add_argument("--queries", type=int, default=2000, help="retrievals per (d, n)")
  parser.add_argument("--extra", type=int, default=0, help="unstored distractors in the codebook")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="folder for results.jsonl and the PNG plot")
  args = parser.parse_args(argv)

  rows = []
  for d in (int(v) for v in args.dims.split(",")):
    for n in (int(v) for v in args.ns.split(",")):
      if n > d:
        continue
      start = time.perf_counter()
      cos_acc, dot_acc, total = measure_accuracy(args.seed, d, n, args.queries, args.extra)
      theory = theory_accuracy(d, n, args.extra)
      stderr = math.sqrt(max(theory * (1 - theory), 1e-12) / total)
      row = {
        "d": d,
        "n": n,
        "extra": args.extra,
        "queries": total,
        "measured_cosine": round(cos_acc, 4),
        "measured_dot": round(dot_acc, 4),
        "theory": round(theory, 4),
        "binomial_stderr": round(stderr, 4),
        "seconds": round(time.perf_counter() - start, 2),
      }
      rows.append(row)
      print(json.dumps(row), flush=True)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    meta = {
      "jax": jax.__version__,
      "device": str(jax.devices()[0]),
      "python": platform.python_version(),
      "argv": sys.argv,
    }
    with open(os.path.join(args.out, "results.jsonl"), "w") as f:
      f.write(json.dumps({"meta": meta}) + "\n")
      for row in rows:
        f.write(json.dumps(row) + "\n")
    print(f"wrote {_plot(rows, args.out)}", file=sys.stderr)
  return rows


if __name__ == "__main__":
  main()
