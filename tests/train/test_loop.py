"""Tests of memjax.train.loop: the scanned update against a plain loop, branches, devices,
mixed precision, hyperparameters, and fit's resume / SIGTERM / history / hooks."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from memjax import train

SCRIPT = pathlib.Path(__file__).with_name("_tiny_fit.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _loss(params, batch, key, context):
  del key
  scale = 1.0 if context is None else context
  err = batch["x"] @ params["w"] + params["b"] - batch["y"]
  return scale * jnp.mean(err**2), {"max_err": jnp.max(jnp.abs(err))}


def _data(steps=4, batch=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(steps, batch, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)
  return {"x": x, "y": y}


def _params():
  return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def _reference(params, optimizer, xs, context=None):
  """The same updates in a Python loop, one step at a time, no scan, no jit."""
  opt_state = optimizer.init(params)
  losses = []
  for i in range(xs["x"].shape[0]):
    batch = {k: v[i] for k, v in xs.items()}
    (loss, _), grads = jax.value_and_grad(_loss, has_aux=True)(params, batch, None, context)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    losses.append(float(loss))
  return params, np.array(losses)


@pytest.mark.parametrize("context", [None, 2.0])
def test_train_steps_match_a_plain_loop(context):
  optimizer = optax.adam(0.1)
  xs = _data()
  state = train.TrainState.create(_params(), optimizer, jax.random.key(0))
  steps = train.make_train_steps(_loss, optimizer)
  out, metrics = steps(state, xs, context)
  want, losses = _reference(_params(), optimizer, xs, context)
  assert int(out.step) == 4
  np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5)
  assert metrics["max_err"].shape == (4,)
  for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_steps_donate_the_state():
  optimizer = optax.sgd(0.1)
  state = train.TrainState.create(_params(), optimizer, jax.random.key(0))
  train.make_train_steps(_loss, optimizer)(state, _data())
  assert state.params["w"].is_deleted()
  kept = train.TrainState.create(_params(), optimizer, jax.random.key(0))
  train.make_train_steps(_loss, optimizer, donate=False)(kept, _data())
  assert not kept.params["w"].is_deleted()


def test_step_keys_are_folded_from_the_step_count():
  seen = []

  def batch_fn(x, key, context):
    return {"u": jax.random.uniform(key, (2,))}

  def loss_fn(params, batch, key, context):
    return jnp.sum(params["w"] * batch["u"]), {"u0": batch["u"][0]}

  optimizer = optax.sgd(0.0)
  state = train.TrainState.create({"w": jnp.ones(2)}, optimizer, jax.random.key(7))
  steps = train.make_train_steps(loss_fn, optimizer, num_steps=3, batch_fn=batch_fn)
  state, m1 = steps(state)
  state, m2 = steps(state)
  for i, got in enumerate(np.concatenate([m1["u0"], m2["u0"]])):
    key = jax.random.fold_in(jax.random.key(7), i)
    seen.append(float(jax.random.uniform(key, (2,))[0]))
    assert got == pytest.approx(seen[-1])


def test_branches_differentiate_the_chosen_loss_only():
  # Two "buckets": branch 0 uses the first 2 features, branch 1 all 3.
  def loss_for(width):
    def loss(params, batch, key, context):
      x = batch["x"][:, :width]
      err = x @ params["w"][:width] - batch["y"]
      return jnp.mean(err**2), {"width": jnp.float32(width)}

    return loss

  losses = [loss_for(2), loss_for(3)]
  xs = _data(steps=5)
  xs["branch"] = np.array([0, 1, 1, 0, 1], np.int32)
  optimizer = optax.sgd(0.05)
  steps = train.make_train_steps(losses, optimizer, branch_fn=lambda b: b["branch"])
  state = train.TrainState.create({"w": jnp.zeros(3)}, optimizer, jax.random.key(0))
  out, metrics = steps(state, xs)
  np.testing.assert_array_equal(metrics["width"], [2, 3, 3, 2, 3])
  params, opt_state = {"w": jnp.zeros(3)}, optimizer.init({"w": jnp.zeros(3)})
  for i, b in enumerate(xs["branch"]):
    batch = {k: v[i] for k, v in xs.items()}
    grads = jax.grad(lambda p, b=b, batch=batch: losses[b](p, batch, None, None)[0])(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(out.params["w"], params["w"], rtol=1e-5)
  with pytest.raises(ValueError, match="need a branch_fn"):
    train.make_train_steps(losses, optimizer)


def test_eight_devices_give_the_one_device_result():
  assert jax.device_count() == 8
  optimizer = optax.adam(0.1)
  xs = _data(batch=16)
  results = []
  for n in (1, 8):
    mesh = train.data_mesh(n)
    state = train.replicate(train.TrainState.create(_params(), optimizer, jax.random.key(0)), mesh)
    steps = train.make_train_steps(_loss, optimizer, mesh=mesh)
    results.append(steps(state, xs))
  (one, m1), (eight, m8) = results
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(eight.params), jax.tree.leaves(one.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_batch_that_does_not_divide_is_named():
  optimizer = optax.sgd(0.1)
  mesh = train.data_mesh(8)
  state = train.replicate(train.TrainState.create(_params(), optimizer, jax.random.key(0)), mesh)
  steps = train.make_train_steps(_loss, optimizer, mesh=mesh)
  with pytest.raises(
    ValueError, match=r"shape \(6, 3\) is 6, which does not divide over the 8 devices"
  ):
    steps(state, _data(batch=6))


@pytest.mark.parametrize("num_devices", [1, 8])
def test_state_leaves_made_on_the_host_do_not_recompile_the_step(num_devices):
  # A hook's new phase flag or copied params sit on one device, not on the mesh: the step
  # must place them, not compile a second program for their sharding.
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiles.append(name) if "backend_compile" in name else None
  )
  optimizer = optax.sgd(0.1)
  mesh = train.data_mesh(num_devices)
  steps = train.make_train_steps(_loss, optimizer, mesh=mesh)
  extra = {"phase": jnp.int32(0)}
  state = train.TrainState.create(_params(), optimizer, jax.random.key(0), extra)
  xs = _data(batch=8)
  state, _ = steps(train.replicate(state, mesh), xs)
  phase, w = jnp.int32(1), jnp.copy(state.params["w"])  # made on the host / one device
  compiles.clear()
  state, _ = steps(state, xs)
  state, _ = steps(state._replace(extra={"phase": phase}, params={**state.params, "w": w}), xs)
  assert compiles == []


def test_bfloat16_compute_keeps_float32_master_weights():
  optimizer = optax.sgd(0.05)
  seen = {}

  def loss_fn(params, batch, key, context):
    seen["dtype"] = params["w"].dtype
    return _loss(params, batch, key, context)

  xs = _data(steps=20)
  outs = {}
  for dtype in (None, jnp.bfloat16):
    state = train.TrainState.create(_params(), optimizer, jax.random.key(0))
    steps = train.make_train_steps(loss_fn, optimizer, compute_dtype=dtype)
    outs[dtype] = steps(state, xs)
    assert seen["dtype"] == (dtype or jnp.float32)
  (f32, m32), (bf16, m16) = outs[None], outs[jnp.bfloat16]
  assert bf16.params["w"].dtype == jnp.float32
  np.testing.assert_allclose(bf16.params["w"], f32.params["w"], rtol=0.05, atol=0.02)
  assert not np.allclose(m16["loss"], m32["loss"], rtol=1e-6)  # it did compute in bf16


def test_set_hyperparams_changes_the_learning_rate():
  optimizer = optax.chain(optax.clip(10.0), optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
  params = {"w": jnp.ones(2)}
  grads = {"w": jnp.array([1.0, 2.0])}
  state = train.set_hyperparams(optimizer.init(params), learning_rate=0.5)
  updates, _ = optimizer.update(grads, state, params)
  np.testing.assert_allclose(updates["w"], [-0.5, -1.0])
  assert state[1].hyperparams["learning_rate"].dtype == jnp.float32
  with pytest.raises(ValueError, match="momentum"):
    train.set_hyperparams(optimizer.init(params), momentum=0.9)


# ----------------------------------------------------------------------------- fit


def _script(env, workdir, *args, check=True):
  proc = subprocess.run(
    [sys.executable, str(SCRIPT), str(workdir), *args],
    capture_output=True,
    text=True,
    timeout=120,
    env=env,
    check=False,
  )
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _rows(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _final(workdir):
  with np.load(workdir / "final.npz") as f:
    return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def script_env(clean_env):
  return clean_env(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, script_env):
  workdir = tmp_path_factory.mktemp("straight")
  _script(script_env, workdir)
  return workdir


def test_fit_resumes_after_sigkill_bit_for_bit(straight, tmp_path, script_env):
  # Killed when round 1 starts (no checkpoint yet), 3 (the one of round 2 exists), 4 (the
  # one of round 4 was just started: the kill may land during its write) and 7.
  for kill_at in (1, 3, 4, 7):
    proc = _script(script_env, tmp_path, f"--kill-at={kill_at}", check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "final.npz").exists()
  _script(script_env, tmp_path)
  for a, b in zip(_final(tmp_path), _final(straight), strict=True):
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
  assert _rows(tmp_path) == _rows(straight)
  assert [r["round"] for r in _rows(straight)] == list(range(1, 9))
  assert int(_final(straight)[-1]) == 8  # the study state's row count survived the resumes


def test_fit_writes_a_final_checkpoint_on_sigterm(straight, tmp_path, script_env):
  proc = subprocess.Popen(
    [sys.executable, str(SCRIPT), str(tmp_path), "--sleep=0.3", "--checkpoint-every=100"],
    env=script_env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  history = tmp_path / "metrics.jsonl"
  deadline = time.time() + 90
  while time.time() < deadline and (
    not history.exists() or len(history.read_text().splitlines()) < 2
  ):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  rows = _rows(tmp_path)
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert 2 <= saved[-1] < 8 and saved[-1] == rows[-1]["round"]  # no periodic one was due
  _script(script_env, tmp_path)  # resumes there and finishes like the uninterrupted run
  for a, b in zip(_final(tmp_path), _final(straight), strict=True):
    assert a.tobytes() == b.tobytes()


def _in_process_fit(workdir, hooks=(), num_rounds=6, **kwargs):
  optimizer = optax.sgd(0.1)
  steps = train.make_train_steps(_loss, optimizer)
  xs = _data(steps=2)

  def init():
    return train.TrainState.create(_params(), optimizer, jax.random.key(0))

  return train.fit(
    init,
    lambda state, r: steps(state, xs),
    workdir=workdir,
    num_rounds=num_rounds,
    hooks=hooks,
    progress=False,
    **kwargs,
  )


def test_fit_hooks_stop_and_add_to_the_row(tmp_path):
  def stop_at_three(state, row):
    row["seen"] = row["step"] * 8
    return state, row["round"] == 3

  result = _in_process_fit(tmp_path, hooks=[stop_at_three], log_every=1, checkpoint_every=5)
  assert result.stopped and result.rounds == 3 and int(result.state.step) == 6
  assert [r["seen"] for r in result.history] == [16, 32, 48]
  assert (tmp_path / "checkpoints" / "3").is_dir()  # the end of a stopped run is saved
  assert result.timed_rounds == 2 and result.wall_time_s >= result.train_time_s > 0


def test_fit_averages_every_step_of_a_log_window(tmp_path):
  result = _in_process_fit(tmp_path, log_every=3)
  assert [r["round"] for r in result.history] == [3, 6]
  # Recompute the first window's mean loss: 3 rounds x 2 steps.
  optimizer = optax.sgd(0.1)
  state = train.TrainState.create(_params(), optimizer, jax.random.key(0))
  steps = train.make_train_steps(_loss, optimizer)
  losses = []
  for _ in range(3):
    state, m = steps(state, _data(steps=2))
    losses += list(np.asarray(m["loss"]))
  assert result.history[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-6)


def test_fit_a_finished_run_is_not_trained_again(tmp_path):
  first = _in_process_fit(tmp_path)
  calls = []

  def hook(state, row):
    calls.append(row)
    return state, False

  again = _in_process_fit(tmp_path, hooks=[hook])
  assert not calls and again.rounds == 6 and again.history == first.history
  for a, b in zip(jax.tree.leaves(again.state), jax.tree.leaves(first.state), strict=True):
    np.testing.assert_array_equal(a, b)


def test_fit_rejects_bad_schedules(tmp_path):
  with pytest.raises(ValueError, match="log_every=0"):
    _in_process_fit(tmp_path, log_every=0)
