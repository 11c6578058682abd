"""Kill and resume: a bAbI study SIGKILLed at six points, each time resumed, ends bit for bit
where an uninterrupted run ends.

The study is ``_kill_config.py`` (two units of 5 epochs: linear start for 2, softmax for 3,
the hook stopping each unit before ``num_rounds``; a checkpoint every epoch). One chain of
processes runs it in one workdir: each ``_kill_at.py`` process resumes the workdir and kills
itself (SIGKILL) at its point; the last is the plain binary, which finishes the study. The
points, in order:

1. unit 0, linear start: the hook of epoch 2 (the one that ends LS), before its row;
2. unit 0, the save of epoch 3 (first softmax epoch) written but not yet renamed into place;
3. unit 0, right after the final checkpoint of the stopped unit (before its result.json);
4. between the units: unit 0's result.json written, the study's progress.json not;
5. unit 1, linear start: the save of epoch 2 killed just after Orbax made its temporary
   directory;
6. unit 1, softmax phase: the save of epoch 4 not started, its metrics row written.

Processes share a persistent compilation cache (filled by the uninterrupted run) so that
each resumed session does not compile again.
"""

import json
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).parent
LAUNCHER = HERE / "_kill_at.py"
CONFIG = HERE / "_kill_config.py"
TMP_SUFFIX = ocp.path.atomicity.TMP_DIR_SUFFIX
UNITS = ("unit_000", "unit_001")

# (kill spec, unit it lands in, whether it lands inside a checkpoint write)
CHAIN = (
  ("hook:2", "unit_000", False),
  ("rename:2", "unit_000", True),
  ("saved:3", "unit_000", False),
  ("result:2", "unit_000", False),
  ("tmpdir:2", "unit_001", True),
  ("before_save:3", "unit_001", False),
)
TIMING = {"train_seconds", "examples", "total_train_seconds", "train_examples_per_second"}
TIMING |= {"wall_time_s", "seconds"}


def _run(env, *args, workdir):
  return subprocess.run(
    [sys.executable, *args, f"--config={CONFIG}", f"--workdir={workdir}"],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    cwd=ROOT,
    check=False,
  )


def _binary(env, workdir):
  proc = _run(env, "-m", "experiments.babi.main", workdir=workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def env(clean_env, tmp_path_factory):
  cache = tmp_path_factory.mktemp("jax_cache")
  return clean_env(
    JAX_PLATFORMS="cpu",
    PYTHONPATH=str(ROOT),
    JAX_COMPILATION_CACHE_DIR=str(cache),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )


@pytest.fixture(scope="module")
def straight(env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  _binary(env, workdir)
  return workdir


@pytest.fixture(scope="module")
def chain(env, straight, tmp_path_factory):
  """Runs the kill chain; returns (workdir, [(spec, returncode, log line, tmp dirs)])."""
  del straight  # only its compilation cache
  workdir = tmp_path_factory.mktemp("killed")
  log = workdir.parent / f"{workdir.name}_kills.log"
  seen = []
  for spec, unit, _ in CHAIN:
    proc = _run(env, str(LAUNCHER), spec, str(log), "--", workdir=workdir)
    lines = log.read_text().splitlines() if log.exists() else []
    ckpts = workdir / "runs" / unit / "checkpoints"
    tmps = sorted(p.name for p in ckpts.iterdir() if TMP_SUFFIX in p.name) if ckpts.exists() else []
    seen.append((spec, proc.returncode, lines[-1] if len(lines) == len(seen) + 1 else "", tmps))
    if proc.returncode != -signal.SIGKILL:
      pytest.fail(f"{spec}: exit {proc.returncode}, expected SIGKILL\n{proc.stderr[-3000:]}")
  _binary(env, workdir)
  return workdir, seen


def _final_state(workdir, unit):
  ckpts = workdir / "runs" / unit / "checkpoints"
  step = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  with ocp.StandardCheckpointer() as c:
    meta = c.metadata(ckpts / str(step) / "state").item_metadata.tree
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), meta)
    state = c.restore(ckpts / str(step) / "state", target)
  return step, jax.tree_util.tree_leaves_with_path(state)


def _drop_timing(obj):
  if isinstance(obj, dict):
    return {k: _drop_timing(v) for k, v in obj.items() if k not in TIMING}
  if isinstance(obj, list):
    return [_drop_timing(v) for v in obj]
  return obj


def test_each_kill_lands_where_intended(chain):
  _, seen = chain
  for (spec, unit, in_write), (_, code, line, tmps) in zip(CHAIN, seen, strict=True):
    kind, n = spec.split(":")
    assert code == -signal.SIGKILL
    assert line.startswith(f"{kind} {n} "), (spec, line)
    if kind in ("before_save", "saved", "tmpdir", "rename"):
      assert unit in line, (spec, line)
    # A kill inside a write leaves Orbax's temporary directory; the others leave none.
    assert bool(tmps) == in_write, (spec, tmps)
  assert "round=2" in seen[0][2]  # the LS-ending hook
  assert seen[2][2].endswith("step=5")  # the stopped unit's final checkpoint
  assert seen[3][2].endswith("progress.json")  # after unit 0's result.json


def test_resumed_state_equals_uninterrupted_bit_for_bit(chain, straight):
  workdir, _ = chain
  for unit in UNITS:
    step_a, want = _final_state(straight, unit)
    step_b, got = _final_state(workdir, unit)
    assert step_a == step_b == 5  # stopped by the hook, 4 rounds before num_rounds
    assert [jax.tree_util.keystr(k) for k, _ in got] == [jax.tree_util.keystr(k) for k, _ in want]
    assert len(want) > 10  # params, optimizer state, rng, step, best params, LS state
    for (path, a), (_, b) in zip(want, got, strict=True):
      assert a.dtype == b.dtype and a.shape == b.shape, jax.tree_util.keystr(path)
      assert a.tobytes() == b.tobytes(), f"{unit} {jax.tree_util.keystr(path)} differs"


def test_resumed_history_and_results_equal_uninterrupted(chain, straight):
  workdir, _ = chain
  for unit in UNITS:
    rows = [
      (d / "runs" / unit / "metrics.jsonl").read_text().splitlines() for d in (straight, workdir)
    ]
    want, got = ([_drop_timing(json.loads(r)) for r in rs] for rs in rows)
    assert [r["round"] for r in want] == [1, 2, 3, 4, 5]
    assert [r["linear"] for r in want] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert got == want
    result = [
      json.loads((d / "runs" / unit / "result.json").read_text()) for d in (straight, workdir)
    ]
    assert _drop_timing(result[1]) == _drop_timing(result[0])
  a, b = (json.loads((d / "results.json").read_text()) for d in (straight, workdir))
  assert _drop_timing(b["metrics"]) == _drop_timing(a["metrics"])
  assert _drop_timing(b["units"]) == _drop_timing(a["units"])


def test_no_temporary_checkpoint_directory_is_left(chain):
  workdir, _ = chain
  left = [str(p) for p in workdir.rglob(f"*{TMP_SUFFIX}*")]
  assert not left
