"""Smoke runs of the benchmarks (retrieval --small, memn2n on generated data): valid JSON lines.

The memn2n run also checks the numpy MemN2N's gradient against JAX's (it asserts before timing).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _run(env: dict[str, str], script: str, *args: str) -> list[dict]:
  """Runs ``benchmarks/<script>`` in ``env``; its stdout must be JSON lines only."""
  proc = subprocess.run(
    [sys.executable, str(BENCHMARKS / script), *args],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  return [json.loads(line) for line in lines]  # fails on any non-JSON line


@pytest.fixture(scope="module")
def records(clean_env):
  # One CPU device, as a user would run it, and one OpenBLAS override for the benchmark to
  # remove (the developer's own OPENBLAS_* / JAX_* / XLA_FLAGS / OMP_* are not inherited).
  env = clean_env(JAX_PLATFORMS="cpu", OPENBLAS_CORETYPE="Haswell")
  return _run(env, "retrieval.py", "--small", "--repeats=2")


def test_environment_line(records):
  env = records[0]
  assert env["figure"] == "environment"
  assert env["jax"] and env["numpy"] and env["devices"]
  # The benchmark removes OpenBLAS overrides before numpy is imported, and says so.
  assert env["removed_env"] == {"OPENBLAS_CORETYPE": "Haswell"}
  assert len(env["load"]) == 3


def test_one_figure_per_method(records):
  figures = [r for r in records if r["figure"] == "exact_top_k_queries_per_s"]
  methods = {r["method"] for r in figures}
  assert {"memjax_f32", "memjax_bf16", "numpy"} <= methods
  for r in figures:
    assert r["n"] == 2048 and r["k"] == 8 and r["batch"] == 64
    assert r["queries_per_s"] > 0
    assert r["queries_per_s"] == pytest.approx(r["batch"] / r["median_s"], rel=1e-2)
    assert len(r["all_s"]) == r["repeats"] == 2
    assert r["ratio_to_numpy"] > 0
    assert 0.0 <= r["recall_at_k"] <= 1.0
    if r["method"] != "memjax_bf16":  # exact float32 searches
      assert r["recall_at_k"] >= 0.99
  by_method = {r["method"]: r for r in figures}
  assert by_method["numpy"]["ratio_to_numpy"] == 1.0
  if "faiss" in by_method:
    assert by_method["faiss"]["ratio_to_faiss"] == 1.0
    assert "goal_met" in by_method["memjax_f32"]


def test_memn2n_benchmark_smoke(clean_env):
  env = clean_env(JAX_PLATFORMS="cpu")
  records = _run(env, "memn2n.py", "--synthetic", "--seconds=0.2", "--batches=32")
  assert records[0]["figure"] == "setup" and records[0]["data"] == "generated"
  (fig,) = [r for r in records if r["figure"] == "train_examples_per_s"]
  assert fig["batch"] == 32 and fig["numpy"] > 0 and fig["memjax"] > 0
  # The speed-up is the median of the rounds' ratios (numpy and memjax take turns).
  assert len(fig["speedup_per_round"]) == 5
  assert abs(fig["speedup_vs_numpy"] - np.median(fig["speedup_per_round"])) < 0.06
  assert fig["goal_speedup"] == 30.0 and isinstance(fig["meets_goal"], bool)
  assert abs(fig["speedup_vs_issue_numpy"] - fig["memjax"] / fig["issue_numpy"]) < 0.1
