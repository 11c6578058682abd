"""Smoke run of benchmarks/memn2n.py on generated data: valid JSON lines, sane figures.

The run also checks the numpy MemN2N's gradient against JAX's (it asserts before timing).
"""

import json
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "memn2n.py"


def test_memn2n_benchmark_smoke():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user would run it
  proc = subprocess.run(
    [sys.executable, str(SCRIPT), "--synthetic", "--seconds=0.2", "--batches=32"],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
  assert records[0]["figure"] == "setup" and records[0]["data"] == "generated"
  (fig,) = [r for r in records if r["figure"] == "train_examples_per_s"]
  assert fig["batch"] == 32 and fig["numpy"] > 0 and fig["memjax"] > 0
  assert abs(fig["speedup_vs_numpy"] - fig["memjax"] / fig["numpy"]) < 0.1
  assert fig["goal_speedup"] == 30.0 and isinstance(fig["meets_goal"], bool)
