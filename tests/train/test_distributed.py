"""Multi-process data parallelism: two processes on localhost (``jax.distributed``, CPU
collectives through gloo, JAX's default) train a tiny model to the parameters of one
process; ``global_batch`` feeds scanned inputs; ``initialize_distributed``'s arguments."""

import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from memjax import train
from memjax.train import parallel

WORKER = pathlib.Path(__file__).with_name("_distributed_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 90  # all processes of one run together; a hang fails the test, not CI


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(clean_env, out, num_processes, devices_per_process):
  """Starts the worker's processes (a run of their own, on a fresh port)."""
  env = {k: v for k, v in clean_env().items() if not k.startswith("MEMJAX_")}
  env.update(
    JAX_PLATFORMS="cpu",
    PYTHONPATH=str(ROOT),
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
  )
  port = str(_free_port())
  return [
    subprocess.Popen(
      [sys.executable, str(WORKER), str(out), str(i), str(num_processes), port],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(num_processes)
  ]


def _wait(procs):
  """Waits for every process (killing them all past TIMEOUT_S); asserts they succeeded."""
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for i, proc in enumerate(procs):
      try:
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pytest.fail(f"worker process {i} did not finish within {TIMEOUT_S} s")
      assert proc.returncode == 0 and "done" in stdout, f"process {i}:\n{stderr[-3000:]}"
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


def _load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


@pytest.mark.parametrize("devices_per_process", [1, 2])
def test_two_processes_train_like_one(tmp_path, devices_per_process, clean_env):
  # The reference: one process holding as many devices as the two together (the same
  # mesh size, so the same per-device batches; only the all-reduce crosses processes).
  # All three processes run at once.
  two = _start(clean_env, tmp_path / "two.npz", 2, devices_per_process)
  one = _start(clean_env, tmp_path / "one.npz", 1, 2 * devices_per_process)
  _wait(two + one)
  two, one = _load(tmp_path / "two.npz"), _load(tmp_path / "one.npz")
  assert sorted(two) == sorted(one)
  assert {k.split("/")[0] for k in one} == {"generated", "fed"}
  for k in one:
    # Not bit for bit: gloo's cross-process sum adds in another order than XLA's.
    np.testing.assert_allclose(two[k], one[k], rtol=1e-6, atol=1e-6, err_msg=k)
  assert np.all(one["fed/w"] != 0) and np.all(one["generated/w"] != 0)  # it trained
  assert not np.allclose(one["fed/w"], one["generated/w"])  # the two paths saw different data


def test_global_batch_splits_the_batch_axis_of_scanned_inputs():
  mesh = train.data_mesh()  # one process, 8 devices
  xs = {"x": np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2), "y": np.zeros((3, 16))}
  out = train.global_batch(xs, mesh, batch_axis=1)
  assert out["x"].sharding == train.batch_sharding(mesh, 1, 3)
  assert {s.data.shape for s in out["x"].addressable_shards} == {(3, 2, 2)}
  assert {s.data.shape for s in out["y"].addressable_shards} == {(3, 2)}
  np.testing.assert_array_equal(out["x"], xs["x"])
  batch = train.global_batch({"x": np.zeros((8, 3))}, mesh)  # default: axis 0
  assert batch["x"].sharding == train.batch_sharding(mesh, 0, 2)
  with pytest.raises(ValueError, match="axis 1 of an array of shape"):
    train.global_batch({"x": np.zeros((3, 12))}, mesh, batch_axis=1)


# ----------------------------------------------------------------------------- initialize


@pytest.fixture
def calls(monkeypatch):
  """Records jax.distributed.initialize's arguments instead of joining a run."""
  for var in parallel._ENV.values():
    monkeypatch.delenv(var, raising=False)
  recorded = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: recorded.append(kw))
  return recorded


def test_initialize_distributed_with_nothing_set_does_nothing(calls):
  assert train.initialize_distributed() is False
  assert calls == []


def test_initialize_distributed_from_arguments(calls):
  assert train.initialize_distributed("127.0.0.1:1234", 2, 0) is True
  assert calls == [dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=0)]


def test_initialize_distributed_from_the_environment(calls, monkeypatch):
  monkeypatch.setenv("MEMJAX_COORDINATOR_ADDRESS", "host:99")
  monkeypatch.setenv("MEMJAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("MEMJAX_PROCESS_ID", "3")
  assert train.initialize_distributed(process_id=1) is True  # an argument wins
  assert calls == [dict(coordinator_address="host:99", num_processes=4, process_id=1)]


@pytest.mark.parametrize(
  "args, env, missing",
  [
    (dict(coordinator_address="h:1"), {}, ["num_processes", "process_id"]),
    (dict(num_processes=2, process_id=0), {}, ["coordinator_address"]),
    ({}, {"MEMJAX_NUM_PROCESSES": "2"}, ["coordinator_address", "process_id"]),
    (dict(process_id=0), {"MEMJAX_COORDINATOR_ADDRESS": "h:1"}, ["num_processes"]),
    (
      {},
      {"MEMJAX_PROCESS_ID": "0", "MEMJAX_NUM_PROCESSES": ""},
      ["coordinator_address", "num_processes"],
    ),
  ],
)
def test_initialize_distributed_names_what_is_missing(calls, monkeypatch, args, env, missing):
  for var, value in env.items():
    monkeypatch.setenv(var, value)
  with pytest.raises(ValueError) as info:
    train.initialize_distributed(**args)
  message = str(info.value)
  for name in parallel._ENV:
    assert (f"{name} (${parallel._ENV[name]})" in message) == (name in missing), message
  assert calls == []
