"""Checkpointer: round trip, latest step wins, restore into an abstract target."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.train import Checkpointer
from memjax.train.checkpoint import CheckpointError


def _state(x):
  return {"params": {"w": jnp.full((3, 2), x, jnp.float32)}, "step": jnp.asarray(int(x), jnp.int32)}


def test_restore_returns_none_without_checkpoint(tmp_path):
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    assert ckpt.restore_latest(_state(0.0)) is None


def test_round_trip_latest_step_and_metadata(tmp_path):
  with Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
    ckpt.save(1, _state(1.0), {"epoch": 1})
    ckpt.save(2, _state(2.0), {"epoch": 2, "history": [0.5, np.float32(0.25)]})
  with Checkpointer(tmp_path / "ckpt") as ckpt:  # a new process would do this
    target = jax.eval_shape(lambda: _state(0.0))
    step, state, meta = ckpt.restore_latest(target)
  assert step == 2
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 2.0))
  assert int(state["step"]) == 2
  assert meta == {"epoch": 2, "history": [0.5, 0.25]}


def test_restore_into_wrong_structure_fails(tmp_path):
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(1, _state(1.0))
  # The error names the directory, the step and Orbax's reason.
  match = rf"no usable checkpoint in {re.escape(str(tmp_path / 'ckpt'))}: step 1 .*tree structures"
  with Checkpointer(tmp_path / "ckpt") as ckpt, pytest.raises(CheckpointError, match=match):
    ckpt.restore_latest({"other": jnp.zeros((5,))})


def test_incomplete_save_is_ignored(tmp_path):
  """A directory left by a killed save (no commit marker) is not taken as a checkpoint."""
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(1, _state(1.0))
  # Simulate a save killed half way: Orbax writes into a temporary directory first.
  (tmp_path / "ckpt" / "2.orbax-checkpoint-tmp-123").mkdir()
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    step, state, _ = ckpt.restore_latest(_state(0.0))
  assert step == 1
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 1.0))
