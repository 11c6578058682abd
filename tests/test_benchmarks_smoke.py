"""Smoke run of benchmarks/retrieval.py --small: it must print valid JSON lines."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"


@pytest.fixture(scope="module")
def records():
  env = dict(os.environ, JAX_PLATFORMS="cpu", OPENBLAS_CORETYPE="Haswell")
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user would run it
  proc = subprocess.run(
    [sys.executable, str(SCRIPT), "--small", "--repeats=2"],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  return [json.loads(line) for line in lines]  # fails on any non-JSON line


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
