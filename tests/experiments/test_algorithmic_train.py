"""Smoke test of the algorithmic study and resume after a kill."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.algorithmic import train
from experiments.algorithmic.configs import copy_lstm, copy_ntm, recall_ntm, recall_ntm_ff
from memjax.data import algorithmic
from memjax.train import Checkpointer, recipes


def _tiny(config):
  config.task.max_length = 3
  config.task.num_bits = 4
  config.model.num_slots = 8
  config.model.slot_size = 4
  config.model.controller_size = 8
  config.batch_size = 2
  config.num_steps = 4
  config.steps_per_call = 2
  config.length_buckets = 2
  config.log_every = 2
  config.checkpoint_every = 2
  config.eval_batch_size = 4
  config.eval_lengths = (3, 5)
  config.plot_lengths = (3,)
  config.progress_bar = False
  config.optimizer.learning_rate = 1e-2
  if config.model.name == "lstm":
    config.model.hidden_size = 8
    config.model.num_layers = 2
  return config


@pytest.mark.parametrize(
  "get_config", [copy_lstm.get_config, recall_ntm.get_config, recall_ntm_ff.get_config]
)
def test_other_configs_build_and_step(get_config):
  config = _tiny(get_config())
  train_batch, _, input_size, output_size = train.make_task(config)
  model = train.make_model(config, output_size)
  optimizer = train.make_optimizer(config)
  state = train.init_state(config, model, optimizer, input_size)
  steps = recipes.sequence_train_steps(model, optimizer, train_batch, 2, 2)
  state, metrics = steps(state)
  assert int(state.step) == 2 and metrics["bits"].shape == (2,)
  assert np.all(np.isfinite(metrics["bits"]))


def _check_smoke_run(workdir, metrics):
  with open(workdir / "results.json") as f:
    results = json.load(f)
  assert results["metrics"]["steps"] == 4 and results["metrics"]["sequences_seen"] == 8
  assert results["config"]["model"]["num_slots"] == 8
  assert set(results["metrics"]["length_generalisation"]) == {"3", "5"}
  assert [p[0] for p in metrics["curve"]] == [4, 8]
  assert np.all(np.isfinite(np.asarray(metrics["eval_curve"])))
  assert 0 < metrics["final_bits_per_sequence"] < 100
  for name in ("learning_curve.png", "weightings_len3.png"):
    assert os.path.getsize(workdir / name) > 1000


def test_smoke_run_and_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
  def config():
    return _tiny(copy_ntm.get_config())

  straight = train.train_and_evaluate(config(), str(tmp_path / "straight"))
  _check_smoke_run(tmp_path / "straight", straight)

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

  restored_steps = []
  real_restore = Checkpointer.restore_latest

  def spy_restore(self, target):
    out = real_restore(self, target)
    restored_steps.append(None if out is None else out[0])
    return out

  monkeypatch.setattr(Checkpointer, "restore_latest", spy_restore)
  resumed = train.train_and_evaluate(config(), str(tmp_path / "killed"))
  assert restored_steps == [1]  # the checkpoint of round 1 (2 steps of 2)
  assert resumed["steps"] == straight["steps"] == 4
  np.testing.assert_allclose(resumed["curve"], straight["curve"], rtol=1e-5)
  np.testing.assert_allclose(resumed["eval_curve"], straight["eval_curve"], rtol=1e-5)
  np.testing.assert_allclose(
    resumed["final_bits_per_sequence"], straight["final_bits_per_sequence"], rtol=1e-5
  )
  _check_smoke_run(tmp_path / "killed", resumed)


def test_length_buckets_give_the_same_updates():
  config = _tiny(copy_ntm.get_config())
  config.task.max_length = 6  # T = 13: buckets (4, 7, 10, 13)
  train_batch, _, input_size, output_size = train.make_task(config)
  model = train.make_model(config, output_size)
  optimizer = train.make_optimizer(config)
  state = train.init_state(config, model, optimizer, input_size)
  out = {}
  for buckets in (1, 4):
    steps = recipes.sequence_train_steps(model, optimizer, train_batch, 1, 4, buckets)
    out[buckets] = steps(jax.tree.map(jnp.copy, state))  # steps donate their input
  (full, full_metrics), (cut, cut_metrics) = out[1], out[4]
  np.testing.assert_allclose(cut_metrics["bits"], full_metrics["bits"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(cut.params), jax.tree.leaves(full.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_length_groups_cover_the_lengths_in_proportion():
  config = copy_ntm.get_config()
  groups = algorithmic.length_groups("copy", 4, **train.task_settings(config))
  np.testing.assert_allclose(groups.probs, [0.25] * 4)
  shapes = [fn(jax.random.key(0), 8).inputs.shape[1] for fn in groups.batches]
  assert shapes == [11, 21, 31, 41]
  lengths = groups.batches[1](jax.random.key(1), 64).lengths
  assert 6 <= int(lengths.min()) and int(lengths.max()) <= 10
  recall_config = recall_ntm.get_config()
  recall = algorithmic.length_groups("associative_recall", 4, **train.task_settings(recall_config))
  np.testing.assert_allclose(recall.probs, [0.4, 0.2, 0.2, 0.2])


def test_length_groups_train_step():
  config = _tiny(copy_ntm.get_config())
  _, _, input_size, output_size = train.make_task(config)
  model = train.make_model(config, output_size)
  optimizer = train.make_optimizer(config)
  state = train.init_state(config, model, optimizer, input_size)
  groups = algorithmic.length_groups("copy", 2, **train.task_settings(config))
  state, metrics = recipes.sequence_train_steps(model, optimizer, groups, 2, 3)(state)
  assert int(state.step) == 3 and np.all(np.isfinite(metrics["bits"]))


def test_seed_summary_against_hand_computed_figures():
  def result(seed, at, e80):
    lengths = {"20": {"bit_errors": 0.0, "bits": 0.0}, "80": {"bit_errors": e80, "bits": 1.0}}
    return {
      "spec": {"seed": seed},
      "steps": 10,
      "sequences_to_converge": at,
      "final_bits_per_sequence": 0.5,
      "final_bit_errors_per_sequence": 0.25 * seed,
      "length_generalisation": lengths,
      "train_steps_per_second": 1.0,
    }

  summary = train.seed_summary(
    [result(0, 6000, 0.0), result(1, None, 7.0), result(2, 4000, 0.05), result(3, 5000, 2.0)], 0.1
  )
  assert summary["seeds"] == [0, 1, 2, 3] and summary["converged_seeds"] == 3
  conv = summary["sequences_to_converge"]
  assert conv["n"] == 3 and conv["mean"] == pytest.approx(5000.0)
  assert conv["sd"] == pytest.approx(1000.0)  # sample sd of 6000, 4000, 5000
  e80 = summary["length_generalisation"]["80"]
  assert e80["seeds_below_threshold"] == 2  # 0.0 and 0.05 < 0.1
  assert e80["bit_errors"]["mean"] == pytest.approx(9.05 / 4)
  assert e80["bit_errors"]["sd"] == pytest.approx(np.std([0.0, 7.0, 0.05, 2.0], ddof=1))
  assert summary["length_generalisation"]["20"]["seeds_below_threshold"] == 4
  assert summary["final_bit_errors_per_sequence"]["mean"] == pytest.approx(0.375)
  table = train.seed_table("copy", summary)
  assert "converged: 3 of 4" in table and "not" in table.splitlines()[3]


def test_several_seeds_run_each_and_summarise(tmp_path, capsys):
  config = _tiny(copy_ntm.get_config())
  config.seeds = (0, 1)
  config.plots = False
  metrics = train.train_and_evaluate(config, str(tmp_path))
  per_seed = metrics["per_seed"]
  assert [r["seed"] for r in per_seed] == [0, 1]
  for r in per_seed:  # each seed's own run and results
    with open(tmp_path / "runs" / f"seed={r['seed']}" / "results.json") as f:
      own = json.load(f)
    assert own["config"]["seed"] == r["seed"] and own["metrics"]["steps"] == 4
    assert r["length_generalisation"] == own["metrics"]["length_generalisation"]
  errors = [r["length_generalisation"]["5"]["bit_errors"] for r in per_seed]
  assert per_seed[0]["final_bits_per_sequence"] != per_seed[1]["final_bits_per_sequence"]
  got = metrics["length_generalisation"]["5"]["bit_errors"]
  assert got["mean"] == pytest.approx(np.mean(errors)) and got["n"] == 2
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["metrics"]["seeds"] == [0, 1]
  assert "2 seeds" in capsys.readouterr().out
  # Run again: every seed is finished and read back, not trained.
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again["per_seed"] == per_seed
  config.seeds = (1, 1)
  with pytest.raises(ValueError, match="repeats a seed"):
    train.train_and_evaluate(config, str(tmp_path / "dup"))
