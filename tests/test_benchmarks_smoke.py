"""Smoke runs of the benchmarks (retrieval --small, memn2n on generated data): each prints
JSON lines whose fields are present, typed, and consistent with one another and with the
exact answers (a figure derived from others equals them up to the printed rounding).

The memn2n run also checks the numpy MemN2N's gradient against JAX's (it asserts before timing).
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys

import jax
import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
FLOAT32_METHODS = ("memjax_f32", "numpy", "faiss")  # exact searches of the float32 keys


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


def _one(records: list[dict], figure: str) -> dict:
  (record,) = [r for r in records if r["figure"] == figure]
  return record


def _types(record: dict, types: dict) -> None:
  for key, kind in types.items():
    assert isinstance(record[key], kind), (key, record[key])


@pytest.fixture(scope="module")
def records(clean_env):
  # One CPU device, as a user would run it, and one OpenBLAS override for the benchmark to
  # remove (the developer's own OPENBLAS_* / JAX_* / XLA_FLAGS / OMP_* are not inherited).
  env = clean_env(JAX_PLATFORMS="cpu", OPENBLAS_CORETYPE="Haswell")
  return _run(env, "retrieval.py", "--small", "--repeats=2", "--probe_rounds=1")


def test_environment_line(records):
  env = _one(records, "environment")
  assert env["jax"] == jax.__version__ and env["numpy"] == np.__version__  # this interpreter
  assert env["jax_backend"] == "cpu" and env["devices"] == ["cpu:0"]  # one device, no flags
  assert env["xla_flags"] == "" and env["cpu_count"] == os.cpu_count()
  # The benchmark removes OpenBLAS overrides before numpy is imported, and says so.
  assert env["removed_env"] == {"OPENBLAS_CORETYPE": "Haswell"}
  assert len(env["load"]) == 3 and all(isinstance(x, float) for x in env["load"])


def test_peer_blas_choice_is_the_fastest_probe_and_is_loaded(records):
  env = _one(records, "environment")
  choice = _one(records, "blas_choice")
  assert choice["rounds"] == 1 and choice["probe"][0] == "--probe_blas"
  assert env["blas_coretypes"] == choice["coretypes"]
  for library, chosen in choice["coretypes"].items():
    speeds = choice["median_per_s"][library]  # kernel ('detected' = the library's) -> per s
    best = max(speeds, key=lambda c, s=speeds: (s[c], c == "detected"))
    assert (chosen or "detected") == best, (library, speeds)
    # The measured run loaded the kernel that its probe loaded.
    loaded = [
      b["architecture"]
      for b in env["blas"]
      if b.get("internal_api") == "openblas" and library in b["filepath"].split("/")[-2]
    ]
    assert loaded == choice["kernels_loaded"][library][chosen or "detected"], (library, env)


def test_one_figure_per_method(records):
  figures = {r["method"]: r for r in records if r["figure"] == "exact_top_k_queries_per_s"}
  assert {"memjax_f32", "memjax_bf16", "numpy"} <= set(figures)
  if "faiss" not in figures:
    assert _one(records, "skipped") == {
      "figure": "skipped",
      "method": "faiss",
      "why": "faiss not installed",
    }
  qps = {name: r["queries_per_s"] for name, r in figures.items()}
  for name, r in figures.items():
    _types(r, {"queries_per_s": float, "median_s": float, "min_s": float, "recall_at_k": float})
    assert (r["n"], r["dim"], r["batch"], r["k"], r["repeats"]) == (2048, 16, 64, 8, 2)
    # Derived figures equal their sources up to the printed rounding (6 decimals, 1, 3).
    assert len(r["all_s"]) == 2 and r["min_s"] == min(r["all_s"]) > 0
    assert r["median_s"] == pytest.approx(statistics.median(r["all_s"]), abs=1.1e-6)
    assert r["queries_per_s"] == pytest.approx(r["batch"] / r["median_s"], rel=5e-6 / r["median_s"])

    # The ratio is rounded to 3 decimals from unrounded rates, the rates to 1 decimal: the
    # ratio of the printed rates moves by up to ratio * (0.05 / a + 0.05 / b) more.
    def ratio_tol(a, b):
      return 5.01e-4 + (a / b) * (0.05 / a + 0.05 / b)

    assert r["ratio_to_numpy"] == pytest.approx(
      qps[name] / qps["numpy"], abs=ratio_tol(qps[name], qps["numpy"])
    )
    if "faiss" in qps:
      assert r["ratio_to_faiss"] == pytest.approx(
        qps[name] / qps["faiss"], abs=ratio_tol(qps[name], qps["faiss"])
      )
    else:
      assert r["ratio_to_faiss"] is None
    assert r["load_before"] and r["load_after"]
    # The float32 searches find the exact top-k (scored in float64): they agree.
    if name in FLOAT32_METHODS:
      assert r["recall_at_k"] == 1.0, (name, r["recall_at_k"])
  assert figures["numpy"]["ratio_to_numpy"] == 1.0
  # bfloat16 keys: a few near-ties may swap; the goal is recall >= 0.99.
  assert 0.99 <= figures["memjax_bf16"]["recall_at_k"] < 1.0
  for name, goal in (
    ("memjax_f32", {"min_ratio_to_faiss": 0.9}),
    ("memjax_bf16", {"min_ratio_to_faiss": 1.5, "min_recall": 0.99}),
  ):
    r = figures[name]
    if "faiss" in figures:
      assert r["goal"] == goal
      met = r["ratio_to_faiss"] >= goal["min_ratio_to_faiss"]
      assert r["goal_met"] == (met and r["recall_at_k"] >= goal.get("min_recall", 0.0))
    else:
      assert "goal_met" not in r


def test_memn2n_benchmark_smoke(clean_env):
  env = clean_env(JAX_PLATFORMS="cpu")
  # --peer_blas=detect: the kernel probes (a process per kernel, each checking the
  # gradients) are the retrieval smoke run's to exercise; this run checks the figures.
  records = _run(
    env, "memn2n.py", "--synthetic", "--seconds=0.2", "--batches=32", "--peer_blas=detect"
  )
  setup = _one(records, "setup")
  assert setup["data"] == "generated" and setup["env"]["devices"] == ["cpu:0"]
  assert setup["env"]["blas_coretypes"] == {}  # detect: no kernel chosen
  fig = _one(records, "train_examples_per_s")
  _types(fig, {"numpy": int, "memjax": int, "memjax_padded": int, "speedup_vs_numpy": float})
  assert fig["batch"] == 32 and min(fig["numpy"], fig["memjax"], fig["memjax_padded"]) > 0
  # The speed-up is the median of the rounds' ratios (numpy and memjax take turns).
  ratios = fig["speedup_per_round"]
  assert len(ratios) == 5
  assert fig["speedup_vs_numpy"] == pytest.approx(statistics.median(ratios), abs=0.051)
  assert fig["goal_speedup"] == 30.0
  assert fig["meets_goal"] == (fig["speedup_vs_numpy"] >= 30.0) or (
    abs(fig["speedup_vs_numpy"] - 30.0) <= 0.05  # the unrounded median decides
  )
  # memjax's printed examples/s over the reported numpy figure, rounded to one decimal.
  expect = fig["memjax"] / fig["reported_numpy"]
  assert fig["speedup_vs_reported_numpy"] == pytest.approx(
    expect, abs=0.05 + 0.5 / fig["reported_numpy"]
  )


def test_replay_benchmark_smoke(clean_env):
  records = _run(clean_env(JAX_PLATFORMS="cpu"), "replay.py", "--small")
  figures = {r.get("figure") for r in records}
  assert figures >= {"fused_steps_per_s", "add_items_per_s", "sample_items_per_s"}


def test_meta_benchmark_smoke(clean_env):
  records = _run(
    clean_env(JAX_PLATFORMS="cpu"),
    "meta.py",
    "--small",
    "--torch_threads=1",
    "--algorithms=maml,fomaml",
  )
  env = _one(records, "environment")
  figures = [r for r in records if r["figure"] == "meta_iterations_per_s"]
  assert {(r["setting"], r["algorithm"]) for r in figures} == {
    (s, a) for s in ("sinusoid", "omniglot") for a in ("maml", "fomaml")
  }
  assert all(r["memjax"] > 0 for r in figures)
  for r in figures:
    if r["setting"] == "sinusoid":  # derived figures equal their sources (rounded to 0.1)
      ratio = r["memjax"] / r["reported_learn2learn_per_s"]
      assert r["ratio_to_reported_learn2learn"] == pytest.approx(ratio, abs=0.051)
  if env["torch"] is None:  # the peer is skipped with a message
    assert _one(records, "skipped")["method"] == "torch"
    assert all(r["ratio_to_torch"] is None for r in figures)
  else:  # the torch MAML computes memjax's meta-gradient (float64), then is timed
    checks = [r for r in records if r["figure"] == "peer_check"]
    assert {(c["setting"], c["algorithm"]) for c in checks} == {
      (r["setting"], r["algorithm"]) for r in figures
    }
    for c in checks:
      assert c["max_abs_meta_gradient_diff"] <= 1e-8 * c["max_abs_meta_gradient"] + 1e-10
    for r in figures:
      assert r["torch"] > 0 and r["torch_threads"] == 1 and r["ratio_to_torch"] > 0
    maml = next(r for r in figures if (r["setting"], r["algorithm"]) == ("sinusoid", "maml"))
    assert maml["goal_met"] == (maml["ratio_to_torch"] >= maml["goal_ratio_to_torch"])
  cost = {r["setting"]: r for r in records if r["figure"] == "second_vs_first_order_cost"}
  assert set(cost) == {"sinusoid", "omniglot"}
  for setting, c in cost.items():
    rate = {r["algorithm"]: r["memjax"] for r in figures if r["setting"] == setting}
    assert c["memjax"] == pytest.approx(rate["fomaml"] / rate["maml"], abs=0.006)


def test_store_benchmark_smoke(clean_env):
  records = _run(clean_env(JAX_PLATFORMS="cpu"), "store.py", "--smoke")
  env = _one(records, "environment")
  assert env["jax_backend"] == "cpu"
  build = _one(records, "build_rows_per_s")
  assert build["value"] == pytest.approx(build["n"] / build["seconds"], rel=0.1)
  faiss = [r for r in records if r["figure"] == "faiss"]
  for name in ("query_per_s_resident", "query_per_s_streamed"):
    r = _one(records, name)
    assert r["value"] > 0 and len(r["all_s"]) >= 2 and r["min_s"] == min(r["all_s"])
    assert r["median_s"] == pytest.approx(statistics.median(r["all_s"]), abs=1.1e-6)
    assert r["value"] == pytest.approx(r["queries"] / r["median_s"], rel=1e-3)
    if faiss:  # exact top-k on both sides: the same rows
      assert r["agreement"] == 1.0
      assert r["ratio_to_faiss"] == pytest.approx(r["value"] / faiss[0]["value"], rel=2e-3)
