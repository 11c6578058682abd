"""Smoke tests of the continual-learning study: tiny runs of every method and scenario
(digits, Omniglot on random images), the data tables and the evaluation against numpy,
resume after a kill, the distillation demo, the configs and config errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.continual import train
from experiments.continual.configs import (
  distill_digits,
  omniglot_alphabets,
  permuted_digits,
  split_digits_class,
  split_digits_task,
)
from memjax import continual
from memjax.train import Checkpointer


@pytest.fixture(autouse=True, scope="module")
def _quick_compiles():
  """Smoke runs: XLA's cheaper compilation (the numbers checked do not depend on it)."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def _tiny(config):
  config.seeds = (0,)
  config.data.classes_per_task = 5  # two tasks
  config.steps_per_task = 4
  config.rounds_per_task = 1
  config.checkpoint_every_rounds = 100  # the final checkpoint only
  config.batch_size = 8
  config.model.hidden_sizes = (8,)
  config.model.num_filters = 4
  config.replay.capacity = 16
  config.replay.batch_size = 4
  config.ewc.num_examples = 8
  config.ewc.chunk_size = 8
  config.progress_bar = False
  config.plots = False
  return config


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_every_method_class_incremental(tmp_path, capsys):
  config = _tiny(split_digits_class.get_config())
  config.plots = True
  config.methods = ("finetune", "ewc", "lwf", "replay", "joint")  # the others: tests below
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert list(metrics["methods"]) == list(config.methods)
  assert metrics["tasks"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
  runs = {r["method"]: r for r in metrics["runs"]}
  for method in config.methods:
    result = json.load(open(tmp_path / "runs" / f"method={method},seed=0" / "result.json"))
    acc = np.array(result["accuracy_matrix"])
    assert acc.shape == (2, 2) and np.all((acc >= 0) & (acc <= 1))
    np.testing.assert_allclose(result["average_accuracy"], continual.average_accuracy(acc))
    assert result["steps"] == 8 and runs[method]["final_average_accuracy"] == pytest.approx(
      continual.average_accuracy(acc)[-1]
    )
  assert _results(tmp_path)["metrics"]["paper"]["icarl"] == 94.6
  assert os.path.getsize(tmp_path / "accuracy_per_task.png") > 1000
  out = capsys.readouterr().out
  assert "joint" in out and "iCaRL 94.6%" in out and "different data" in out
  lwf_row = next(line for line in out.splitlines() if line.strip().startswith("lwf "))
  assert lwf_row.rstrip().endswith("23.9")  # the paper's figure beside ours


def test_task_and_domain_scenarios_and_omniglot_random(tmp_path):
  config = _tiny(omniglot_alphabets.get_config())
  config.data.source = "random"
  config.data.num_alphabets = 3
  config.data.image_size = 8
  config.model.num_blocks = 1
  config.methods = ("replay_distill", "lwf")
  config.lwf.balance = "tasks"
  metrics = train.train_and_evaluate(config, str(tmp_path / "omniglot"))
  assert metrics["scenario"] == "task" and set(metrics["methods"]) == set(config.methods)
  assert metrics["data"]["characters_per_alphabet"] == [4, 4, 4]
  config = _tiny(permuted_digits.get_config())
  config.data.num_tasks = 2
  config.methods = ("online_ewc",)
  metrics = train.train_and_evaluate(config, str(tmp_path / "permuted"))
  assert metrics["scenario"] == "domain"
  assert len(metrics["methods"]["online_ewc"]["mean_accuracy_matrix"]) == 2


def test_data_tables_and_evaluation_against_numpy():
  config = split_digits_task.get_config()
  seq = train.load_sequence(config)
  data, joint = train.make_data(seq, False), train.make_data(seq, True)
  sizes = [len(t.train_y) for t in seq.tasks]
  np.testing.assert_array_equal(data.count, sizes)
  np.testing.assert_array_equal(joint.count, np.cumsum(sizes))
  for t in range(5):  # task t trains on its own digits; joint on every digit so far
    assert set(np.unique(data.y[data.index[t, : data.count[t]]])) == {2 * t, 2 * t + 1}
    assert set(np.unique(joint.y[joint.index[t, : joint.count[t]]])) == set(range(2 * t + 2))
  np.testing.assert_array_equal(data.seen_masks[2], np.arange(10) < 6)
  apply_fn, init_params = train.make_model(config.model, 10, (8, 8))
  params = init_params(jax.random.key(0))
  example = {
    "x": jnp.zeros((8, 8)),
    "y": jnp.zeros((), jnp.int32),
    "task": jnp.zeros((), jnp.int32),
  }
  test_x = jnp.asarray(np.concatenate([t.test_x for t in seq.tasks]))
  logits = np.asarray(jax.jit(apply_fn)(params, test_x))
  starts = np.cumsum([0] + [len(t.test_y) for t in seq.tasks])
  for scenario in ("task", "class", "domain"):
    config.scenario = scenario
    pieces = train.make_method(config, "finetune", apply_fn, init_params, example)
    got = np.asarray(pieces.evaluate(params, data, jnp.asarray(2)))
    for j, task in enumerate(seq.tasks):
      z = logits[starts[j] : starts[j + 1]].copy()
      allowed = {"task": task.classes, "class": np.arange(6), "domain": np.arange(10)}[scenario]
      z[:, np.setdiff1d(np.arange(10), allowed)] = -np.inf
      expect = np.mean(np.argmax(z, -1) == task.test_y)
      assert got[j] == pytest.approx(expect), (scenario, j)


def test_resume_after_kill_equals_a_straight_run(tmp_path, monkeypatch):
  def config():
    c = _tiny(split_digits_class.get_config())
    c.methods = ("replay_distill",)  # the state holds a buffer and the previous model
    c.rounds_per_task = 2
    c.checkpoint_every_rounds = 1
    return c

  straight = train.train_and_evaluate(config(), str(tmp_path / "straight"))
  real_save = Checkpointer.save
  calls = []

  def save_then_die(self, step, state, metadata=None):
    real_save(self, step, state, metadata)
    calls.append(step)
    if len(calls) == 3:  # mid-way through the second task
      self._manager.wait_until_finished()
      raise KeyboardInterrupt(f"killed after the checkpoint of round {step}")

  monkeypatch.setattr(Checkpointer, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config(), str(tmp_path / "killed"))
  monkeypatch.setattr(Checkpointer, "save", real_save)
  assert not os.path.exists(tmp_path / "killed" / "results.json")
  resumed = train.train_and_evaluate(config(), str(tmp_path / "killed"))
  a = resumed["methods"]["replay_distill"]["mean_accuracy_matrix"]
  b = straight["methods"]["replay_distill"]["mean_accuracy_matrix"]
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_distillation_demo(tmp_path, capsys):
  config = distill_digits.get_config()
  config.seeds = (0, 1)
  config.progress_bar = False
  d = config.distill_demo
  d.teacher_hidden, d.student_hidden = (16,), (4,)
  d.teacher_steps, d.student_steps, d.rounds = 8, 4, 1
  metrics = train.train_and_evaluate(config, str(tmp_path))
  acc = metrics["test_accuracy"]
  assert set(acc) == {"teacher", "student", "student_kd"} and acc["student"]["n"] == 2
  diffs = [
    kd[-1][1] - alone[-1][1]
    for kd, alone in zip(metrics["curves"]["student_kd"], metrics["curves"]["student"], strict=True)
  ]
  assert metrics["kd_minus_alone"]["mean"] == pytest.approx(np.mean(diffs))
  assert metrics["data"] == {
    "teacher_train_examples": 1438,
    "student_train_examples": 50,
    "test_examples": 359,
  }
  assert os.path.getsize(tmp_path / "distillation.png") > 1000
  assert "student from the teacher" in capsys.readouterr().out


def test_configs_and_errors(tmp_path):
  assert split_digits_class.get_config().scenario == "class"
  assert split_digits_task.get_config().scenario == "task"
  assert permuted_digits.get_config().scenario == "domain"
  config = _tiny(split_digits_class.get_config())
  config.methods = ("finetune", "si")
  with pytest.raises(ValueError, match="config.methods holds 'si'; the methods are"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(split_digits_class.get_config())
  config.steps_per_task, config.rounds_per_task = 5, 2
  with pytest.raises(ValueError, match="config.steps_per_task=5 must be a multiple"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(split_digits_class.get_config())
  config.data.name = "mnist"
  with pytest.raises(ValueError, match="config.data.name='mnist' must be"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(split_digits_class.get_config())
  config.lwf.balance = "max"
  with pytest.raises(ValueError, match="config.lwf.balance='max' must be 'sum' or 'tasks'"):
    train.train_and_evaluate(config, str(tmp_path))
  config = _tiny(split_digits_class.get_config())
  config.study = "meta"
  with pytest.raises(ValueError, match="config.study='meta' must be 'continual' or 'distill'"):
    train.train_and_evaluate(config, str(tmp_path))
