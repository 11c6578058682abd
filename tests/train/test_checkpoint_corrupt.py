"""Corrupt, partial and crafted checkpoints: detected, reported, the previous good step
restored; none can run code.

Each case damages the newest of three saved steps the way a crash, a full disk, a partial
copy or bit rot would, and checks that :meth:`Checkpointer.restore_latest` warns (naming
the step, its path and the problem), restores the step before it, and moves the bad one
aside so that the run can save that step again; that ``fit`` then finishes where an
uninterrupted run finishes; and that with no good step left it raises an error naming the
directory. Orbax alone restores a bit flip in array data silently (its data files carry no
checksum): memjax's per-leaf SHA-256 catches it.
"""

import hashlib
import json
import logging
import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from memjax import train
from memjax.train.checkpoint import Checkpointer, CheckpointError, checksums

SHAPE = (64, 48)  # large enough (12 KiB) that TensorStore stores it out of line


def _state(step):
  w = jax.random.normal(jax.random.key(step), SHAPE, jnp.float32)
  return {"params": {"w": w, "b": jnp.arange(5.0) + step}, "step": jnp.asarray(step, jnp.int32)}


def _target():
  return jax.eval_shape(lambda: _state(0))


def _save_steps(directory, steps=(1, 2, 3)):
  with Checkpointer(directory, max_to_keep=len(steps)) as ckpt:
    for s in steps:
      ckpt.save(s, _state(s), {"round": s})


def _assert_state(state, step):
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(_state(step)), strict=True):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _data_file(step_dir):
  """The largest array data file of the state item (the 12 KiB array)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def _flip_byte(path, at=0.5):
  data = bytearray(path.read_bytes())
  data[int(len(data) * at)] ^= 0x40
  path.write_bytes(bytes(data))


def _truncate(path):
  os.truncate(path, path.stat().st_size // 2)


def _zero(path):
  path.write_bytes(b"\0" * path.stat().st_size)


# name -> (damage(step_dir), words the warning must contain)
DAMAGE = {
  "data_bit_flip": (lambda d: _flip_byte(_data_file(d)), "['params']['w']"),
  "data_truncated": (lambda d: _truncate(_data_file(d)), 'Error reading "params.w'),
  "data_zeroed": (lambda d: _zero(_data_file(d)), 'Error reading "params.w'),
  "commit_marker_deleted": (lambda d: (d / "commit_success.txt").unlink(), "commit_success.txt"),
  "tree_metadata_deleted": (lambda d: (d / "state" / "_METADATA").unlink(), "_METADATA"),
  "manifest_truncated": (lambda d: _truncate(d / "state" / "manifest.ocdbt"), "manifest"),
  "json_metadata_truncated": (lambda d: _truncate(d / "metadata" / "metadata"), "JSON"),
  "checksums_truncated": (lambda d: _truncate(d / "checksums" / "metadata"), "JSON"),
  "metadata_item_deleted": (lambda d: [p.unlink() for p in (d / "metadata").iterdir()], ""),
  "step_directory_emptied": (
    lambda d: [p.unlink() for p in sorted(d.rglob("*"), reverse=True) if p.is_file()],
    "",
  ),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_a_damaged_newest_step_falls_back_to_the_previous_one(name, tmp_path, caplog):
  directory = tmp_path / "ckpt"
  _save_steps(directory)
  damage, words = DAMAGE[name]
  damage(directory / "3")
  with caplog.at_level(logging.WARNING), Checkpointer(directory, max_to_keep=3) as ckpt:
    step, state, meta = ckpt.restore_latest(_target())
    assert step == 2 and meta == {"round": 2}
    _assert_state(state, 2)
    # The bad step is kept for inspection, out of the way of the next save of step 3.
    assert not (directory / "3").exists() and (directory / "3.corrupt").is_dir()
    assert ckpt.latest_step() == 2
    ckpt.save(3, _state(3), {"round": 3})
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  report = [w for w in warnings if "step 3" in w and "unusable" in w]
  assert report, warnings
  assert str(directory / "3") in report[0] and words in report[0], report[0]
  assert any("3.corrupt" in w and "previous good step 2" in w for w in warnings), warnings
  with Checkpointer(directory) as ckpt:  # the step saved again is good
    step, state, _ = ckpt.restore_latest(_target())
  assert step == 3
  _assert_state(state, 3)


def test_orbax_alone_restores_a_bit_flip_silently_the_checksum_catches_it(tmp_path):
  """Why memjax saves checksums: without them the flipped array comes back as if good."""
  directory = tmp_path / "ckpt"
  _save_steps(directory, steps=(1,))
  _flip_byte(_data_file(directory / "1"))
  with ocp.StandardCheckpointer() as raw:
    flipped = raw.restore(directory / "1" / "state", _target())
  assert not np.array_equal(
    np.asarray(flipped["params"]["w"]), np.asarray(_state(1)["params"]["w"])
  )
  with (
    Checkpointer(directory) as ckpt,
    pytest.raises(CheckpointError, match=r"\['params'\]\['w'\]"),
  ):
    ckpt.restore_latest(_target())


def test_a_temporary_directory_of_a_killed_save_is_ignored_and_removed(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, steps=(1, 2))
  # What a save killed before its rename leaves: a complete-looking copy under a tmp name
  # (older Orbax versions added a timestamp; Orbax 0.12 reuses "3.orbax-checkpoint-tmp"
  # when step 3 is saved again, but a step the resumed run does not save stays behind).
  tmp = directory / "3.orbax-checkpoint-tmp-1234567890"
  shutil.copytree(directory / "2", tmp)
  (tmp / "commit_success.txt").unlink()
  with Checkpointer(directory) as ckpt:
    step, state, _ = ckpt.restore_latest(_target())
    ckpt.save(3, _state(3))
  assert step == 2
  _assert_state(state, 2)
  assert not tmp.exists() and (directory / "3").is_dir()


def test_no_good_step_left_is_a_clear_error_and_moves_nothing(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, steps=(1, 2))
  _flip_byte(_data_file(directory / "2"))
  (directory / "1" / "commit_success.txt").unlink()
  with Checkpointer(directory) as ckpt, pytest.raises(CheckpointError) as error:
    ckpt.restore_latest(_target())
  message = str(error.value)
  assert f"no usable checkpoint in {directory}" in message
  assert f"step 2 ({directory / '2'})" in message and "sha256" in message
  assert f"step 1 ({directory / '1'})" in message and "commit_success.txt" in message
  assert sorted(p.name for p in directory.iterdir() if p.name[0].isdigit()) == ["1", "2"]


def test_restoring_into_another_structure_is_an_error_not_a_fallback(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, steps=(1, 2))
  with Checkpointer(directory) as ckpt, pytest.raises(CheckpointError, match="step 2"):
    ckpt.restore_latest({"other": jnp.zeros((5,))})
  assert (directory / "2").is_dir() and (directory / "1").is_dir()


def test_checksums_name_every_leaf_and_follow_the_bytes():
  state = _state(1)
  sums = checksums(state)
  assert sorted(sums) == ["['params']['b']", "['params']['w']", "['step']"]
  assert sums["['params']['w']"]["shape"] == list(SHAPE)
  assert sums["['step']"]["dtype"] == "int32"
  want = hashlib.sha256(np.asarray(state["params"]["b"]).tobytes()).hexdigest()
  assert sums["['params']['b']"]["sha256"] == want
  changed = dict(state, step=jnp.asarray(2, jnp.int32))
  assert checksums(changed)["['step']"] != sums["['step']"]


# ----------------------------------------------------------------------------- fit


def _fit(workdir, num_rounds):
  optimizer = optax.sgd(0.01)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 16, SHAPE[0])), jnp.float32)
  y = jnp.asarray(rng.normal(size=(2, 16, SHAPE[1])), jnp.float32)

  def loss(params, batch, key, context):
    del key, context
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2), {}

  steps = train.make_train_steps(loss, optimizer)

  def init():
    w = jax.random.normal(jax.random.key(1), SHAPE, jnp.float32) * 0.1
    return train.TrainState.create({"w": w}, optimizer, jax.random.key(0))

  return train.fit(
    init,
    lambda state, r: steps(state, {"x": x, "y": y}),
    workdir=workdir,
    num_rounds=num_rounds,
    progress=False,
    max_to_keep=2,
  )


@pytest.fixture(scope="module")
def straight_fit(tmp_path_factory):
  return _fit(tmp_path_factory.mktemp("straight"), num_rounds=6)


def _leave_as_tmp(step_dir):
  """What a save killed before its rename leaves (the step is not there, its tmp dir is)."""
  (step_dir / "commit_success.txt").unlink()
  step_dir.rename(step_dir.parent / f"{step_dir.name}.orbax-checkpoint-tmp-1234567890")


@pytest.mark.parametrize(
  "name", ["data_bit_flip", "commit_marker_deleted", "json_metadata_truncated", "tmp_dir_left"]
)
def test_fit_resumes_from_the_previous_good_step_to_the_uninterrupted_result(
  name, straight_fit, tmp_path
):
  _fit(tmp_path, num_rounds=4)
  step_dir = tmp_path / "checkpoints" / "4"
  (_leave_as_tmp if name == "tmp_dir_left" else DAMAGE[name][0])(step_dir)
  resumed = _fit(tmp_path, num_rounds=6)
  assert resumed.rounds == 6
  for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight_fit.state), strict=True):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
  rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rows] == [1, 2, 3, 4, 5, 6]  # round 4's row once, after the resume
  assert [r["loss"] for r in rows] == [r["loss"] for r in straight_fit.history]
  left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert left == (["5", "6"] if name == "tmp_dir_left" else ["4.corrupt", "5", "6"])


def test_fit_with_every_checkpoint_corrupt_names_the_directory(tmp_path):
  _fit(tmp_path, num_rounds=2)
  for step in (1, 2):
    (tmp_path / "checkpoints" / str(step) / "commit_success.txt").unlink()
  with pytest.raises(CheckpointError, match=f"no usable checkpoint in {tmp_path / 'checkpoints'}"):
    _fit(tmp_path, num_rounds=3)
  assert (tmp_path / "metrics.jsonl").exists()  # the run's history is left alone


# ----------------------------------------------------------------------------- no code execution


class _Payload:
  """Unpickling this creates ``path`` (stands in for arbitrary code)."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return (open, (self.path, "w"))


CRAFTED = [
  "_CHECKPOINT_METADATA",
  "state/_METADATA",
  "state/_sharding",
  "state/manifest.ocdbt",
  "state/array_metadatas/process_0",
  "state/checkpoint",  # the name of Flax / old Orbax msgpack checkpoints
  "metadata/metadata",
  "checksums/metadata",
  "DATA",  # the array's data file
]


@pytest.mark.parametrize("relpath", CRAFTED)
def test_a_crafted_pickle_in_a_checkpoint_cannot_run_code(relpath, tmp_path):
  sentinel = tmp_path / "pwned"
  payload = pickle.dumps(_Payload(sentinel), protocol=pickle.HIGHEST_PROTOCOL)
  pickle.loads(payload)  # the payload is live: unpickling it does create the sentinel
  assert sentinel.exists()
  sentinel.unlink()

  directory = tmp_path / "ckpt"
  _save_steps(directory, steps=(1, 2))
  step_dir = directory / "2"
  target = _data_file(step_dir) if relpath == "DATA" else step_dir / relpath
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_bytes(payload)
  with Checkpointer(directory) as ckpt:
    step, state, _ = ckpt.restore_latest(_target())
  assert not sentinel.exists()
  # A file that is read is rejected (fallback to step 1); one that is not read is ignored.
  assert step in (1, 2)
  _assert_state(state, step)
