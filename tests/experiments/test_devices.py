"""Both studies train data-parallel: 8 (fake CPU) devices give the 1-device loss curves."""

import json

import jax
import numpy as np
import pytest

from experiments.algorithmic import train as algorithmic_train
from experiments.algorithmic.configs import copy_ntm
from experiments.babi import train as babi_train
from experiments.babi.configs import smoke
from memjax.train import parallel


@pytest.fixture
def sharded_batches(monkeypatch):
  """Records the device count of every batch the training steps split over a mesh."""
  seen = []
  real = parallel.constrain_batch

  def spy(batch, mesh):
    seen.append(mesh.size)
    return real(batch, mesh)

  monkeypatch.setattr(parallel, "constrain_batch", spy)
  return seen


def _curves(history, keys):
  return {k: np.array([row[k] for row in history]) for k in keys}


def test_ntm_copy_on_one_and_eight_devices(tmp_path, sharded_batches):
  assert jax.device_count() == 8
  out = {}
  for n in (1, 8):
    sharded_batches.clear()
    config = copy_ntm.get_config()
    config.task.max_length = 3
    config.task.num_bits = 4
    config.model.num_slots, config.model.slot_size = 8, 4
    config.model.controller_size = 8
    config.batch_size, config.num_devices = 8, n
    config.num_steps = config.log_every = 6
    config.steps_per_call = config.checkpoint_every = 2
    config.log_every = 2
    config.eval_batch_size = 8
    config.eval_lengths, config.plots, config.progress_bar = (3,), False, False
    config.optimizer.learning_rate = 1e-2
    out[n] = algorithmic_train.train_and_evaluate(config, str(tmp_path / f"d{n}"))
    assert sharded_batches == ([] if n == 1 else [8])  # traced once, split 8 ways
  assert len(out[1]["curve"]) == 3
  np.testing.assert_allclose(out[8]["curve"], out[1]["curve"], rtol=1e-5)
  np.testing.assert_allclose(out[8]["eval_curve"], out[1]["eval_curve"], rtol=1e-5)


def test_ntm_batch_that_does_not_divide_is_refused(tmp_path):
  config = copy_ntm.get_config()
  config.num_devices = 0  # all 8
  with pytest.raises(ValueError, match=r"config.batch_size is 1, which does not divide over the 8"):
    algorithmic_train.train_and_evaluate(config, str(tmp_path))


def test_babi_on_one_and_eight_devices(tmp_path, sharded_batches, monkeypatch):
  monkeypatch.setattr(babi_train, "_COMPILED", {})  # trace here, not in an earlier test
  histories = {}
  for n in (1, 8):
    sharded_batches.clear()
    config = smoke.get_config()
    config.data.synthetic_num_train = 128
    config.data.synthetic_num_test = 64
    config.model.embedding_size = 8
    config.train.num_epochs, config.train.ls_max_epochs = 3, 2
    config.train.num_restarts = 1
    config.train.eval_batch_size = 64
    config.num_devices = n
    babi_train.train_and_evaluate(config, str(tmp_path / f"d{n}"))
    assert set(sharded_batches) == (set() if n == 1 else {8})
    result = json.loads((tmp_path / f"d{n}" / "runs" / "unit_000" / "result.json").read_text())
    histories[n] = _curves(result["history"], ("train_loss", "val_loss", "val_error"))
  assert len(histories[1]["train_loss"]) == 5
  for k in histories[1]:
    np.testing.assert_allclose(histories[8][k], histories[1][k], rtol=1e-4, err_msg=k)
