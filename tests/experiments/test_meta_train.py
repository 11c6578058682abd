"""Smoke tests of the meta-learning study: one tiny run per setting kind (sinusoid,
Omniglot on random images), the configs, and resume after a kill."""

import json
import os

import numpy as np
import pytest

from experiments.meta import train
from experiments.meta.configs import (
  omniglot_5way_1shot,
  omniglot_5way_5shot,
  omniglot_20way_1shot,
  omniglot_20way_5shot,
  sinusoid_k5,
  sinusoid_k10,
)
from memjax.train import Checkpointer


def _tiny(config):
  config.num_meta_steps = 4
  config.steps_per_call = 2
  config.log_every = 2
  config.checkpoint_every = 2
  config.meta_batch_size = 4
  config.eval.num_tasks = 12
  config.eval.curve_num_tasks = 6
  config.progress_bar = False
  if config.data.name == "omniglot":
    config.data.source = "random"
    config.data.random_characters = 30
    config.data.num_test = 10
    config.model.num_filters = 4
    config.model.num_blocks = 2
    config.data.image_size = 12
    config.eval.chunk_size = 6
  return config


def test_configs_are_the_papers_settings():
  expect = {  # name: (ways, shots, inner lr, inner steps, test steps)
    "omniglot_5way_1shot": (5, 1, 0.4, 1, (3,)),
    "omniglot_5way_5shot": (5, 5, 0.4, 1, (3,)),
    "omniglot_20way_1shot": (20, 1, 0.1, 5, (5,)),
    "omniglot_20way_5shot": (20, 5, 0.1, 5, (5,)),
  }
  for module in (
    omniglot_5way_1shot,
    omniglot_5way_5shot,
    omniglot_20way_1shot,
    omniglot_20way_5shot,
  ):
    c = module.get_config()
    got = (c.data.num_ways, c.data.num_shots, c.inner.lr, c.inner.num_steps, c.eval.num_steps)
    assert got == expect[c.name], c.name
  for module, shots in ((sinusoid_k5, 5), (sinusoid_k10, 10)):
    c = module.get_config()
    assert (c.data.num_shots, c.inner.lr, c.inner.num_steps, c.meta_batch_size) == (
      shots,
      0.01,
      1,
      25,
    )


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_omniglot_smoke_run_on_random_images(tmp_path):
  config = _tiny(omniglot_20way_1shot.get_config())
  config.algorithm = "anil"
  config.data.num_ways = 3
  config.inner.num_steps = 2
  metrics = train.train_and_evaluate(config, str(tmp_path))
  results = _results(tmp_path)
  assert results["metrics"]["meta_iterations"] == 4
  acc = metrics["test"]["5_steps"]["accuracy"]
  assert acc["n"] == 12 and 0.0 <= acc["mean"] <= 1.0
  assert metrics["ours"]["mean"] == pytest.approx(100 * acc["mean"])
  assert metrics["paper"] is None  # no ANIL figure stored
  assert metrics["curve_columns"] == ["meta_iterations", "eval_accuracy", "eval_loss"]
  assert [row[0] for row in metrics["curve"]] == [2, 4]
  assert metrics["data"]["characters"] == [20, 10]
  assert os.path.getsize(tmp_path / "learning_curve.png") > 1000


def test_sinusoid_smoke_run_and_resume_after_kill(tmp_path, monkeypatch):
  def config():
    c = _tiny(sinusoid_k10.get_config())
    c.algorithm = "maml_plus_plus"  # also exercises the multi-step weights in the context
    c.inner.num_steps = 2
    c.eval.num_steps = (1, 2)
    return c

  straight = train.train_and_evaluate(config(), str(tmp_path / "straight"))
  assert straight["paper"] is None and set(straight["test"]) == {"1_steps", "2_steps"}
  assert straight["ours"]["n"] == 12 and np.isfinite(straight["ours"]["mean"])
  for name in ("learning_curve.png", "adaptation.png"):
    assert os.path.getsize(tmp_path / "straight" / name) > 1000

  real_save = Checkpointer.save

  def save_then_die(self, step, state, metadata=None):
    real_save(self, step, state, metadata)
    self._manager.wait_until_finished()
    raise KeyboardInterrupt(f"killed after the checkpoint of step {step}")

  monkeypatch.setattr(Checkpointer, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config(), str(tmp_path / "killed"))
  monkeypatch.setattr(Checkpointer, "save", real_save)
  assert not os.path.exists(tmp_path / "killed" / "results.json")
  resumed = train.train_and_evaluate(config(), str(tmp_path / "killed"))
  assert resumed["meta_iterations"] == straight["meta_iterations"] == 4
  np.testing.assert_allclose(resumed["curve"], straight["curve"], rtol=1e-5)
  for n in ("1_steps", "2_steps"):
    assert resumed["test"][n]["loss"]["mean"] == pytest.approx(
      straight["test"][n]["loss"]["mean"], rel=1e-5
    )


def test_bad_config_values_name_the_field(tmp_path):
  config = _tiny(sinusoid_k10.get_config())
  config.log_every = 3
  with pytest.raises(ValueError, match="config.log_every=3 must be a multiple"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(sinusoid_k10.get_config())
  config.algorithm = "mamll"
  with pytest.raises(ValueError, match="unknown meta-learning algorithm 'mamll'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(omniglot_5way_1shot.get_config())
  config.data.source = "folder"
  with pytest.raises(ValueError, match="config.data.source='folder'"):
    train.train_and_evaluate(config, str(tmp_path))
