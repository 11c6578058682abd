"""Tests for experiments/babi: a tiny train_and_evaluate, resume after a kill, helpers."""

import json
import os

import numpy as np
import pytest

from experiments.babi import interactive, paper_results, train
from experiments.babi.configs import default, per_task, smoke, variants
from memjax import train as memjax_train
from memjax.data.babi import synthetic
from memjax.train import Checkpointer


def _tiny_config():
  config = smoke.get_config()
  config.data.synthetic_num_train = 128
  config.data.synthetic_num_test = 64
  config.model.embedding_size = 8
  config.train.num_epochs = 3
  config.train.ls_max_epochs = 2
  config.train.num_restarts = 2
  config.train.eval_batch_size = 64
  return config


def _strip(unit):
  out = {
    k: v for k, v in unit.items() if k not in ("train_seconds", "examples", "total_train_seconds")
  }
  out["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in unit["history"]]
  return out


class _Killed(Exception):
  pass


def test_train_and_evaluate_and_resume_after_kill(tmp_path, monkeypatch):
  config = _tiny_config()
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  results = json.loads((tmp_path / "straight" / "results.json").read_text())
  m = results["metrics"]
  assert set(m) >= {
    "per_task_test_error",
    "mean_test_error",
    "failed_tasks",
    "train_examples_per_second",
    "wall_time_s",
    "paper",
  }
  assert m["mean_test_error"] == pytest.approx(np.mean(list(m["per_task_test_error"].values())))
  assert len(results["units"]) == 2 and results["wall_time_s"] > 0
  # The selected restart is the one with the lower validation error.
  units = results["units"]
  best = min(units, key=lambda u: (u["validation_error"], u["restart"]))
  assert m["selected_restart"]["1"] == best["restart"]
  assert m["per_task_test_error"]["1"] == pytest.approx(best["test_task_error"]["1"])

  # Kill the second unit after its third checkpoint, then run the same command again.
  saves = {"n": 0}
  original = Checkpointer.save

  def save_then_die(self, step, state, metadata=None):
    original(self, step, state, metadata)
    if "unit_001" in self.directory:
      saves["n"] += 1
      if saves["n"] == 3:
        self.close()
        raise _Killed()

  monkeypatch.setattr(Checkpointer, "save", save_then_die)
  workdir = str(tmp_path / "killed")
  with pytest.raises(_Killed):
    train.train_and_evaluate(config, workdir)
  assert os.path.exists(os.path.join(workdir, "runs", "unit_000", "result.json"))
  assert not os.path.exists(os.path.join(workdir, "runs", "unit_001", "result.json"))
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  monkeypatch.setattr(Checkpointer, "save", original)
  restored = []
  real_restore = Checkpointer.restore_latest

  def spy_restore(self, target):
    out = real_restore(self, target)
    restored.append((os.path.basename(os.path.dirname(self.directory)), out and out[0]))
    return out

  monkeypatch.setattr(Checkpointer, "restore_latest", spy_restore)
  resumed = train.train_and_evaluate(config, workdir)
  # Unit 1 resumes at its third epoch; the finished unit 0 is read back, not trained again.
  assert restored == [("unit_001", 3)]

  # Same rng, data order, LS switch and best epoch: identical to the uninterrupted run.
  for i in range(2):
    a = json.loads((tmp_path / "straight" / "runs" / f"unit_{i:03d}" / "result.json").read_text())
    b = json.loads(open(os.path.join(workdir, "runs", f"unit_{i:03d}", "result.json")).read())
    ha, hb = _strip(a)["history"], _strip(b)["history"]
    assert len(ha) == len(hb)
    for x, y in zip(ha, hb, strict=True):
      assert x == pytest.approx(y, rel=1e-5)
    assert (a["switch_epoch"], a["best_epoch"]) == (b["switch_epoch"], b["best_epoch"])
    assert a["test_error"] == pytest.approx(b["test_error"], abs=1e-9)
  assert resumed["per_task_test_error"] == straight["per_task_test_error"]


def test_linear_start_switches_and_lr_anneals(tmp_path):
  config = _tiny_config()
  config.train.num_restarts = 1
  config.train.ls_max_epochs = 2
  config.train.num_epochs = 4
  config.train.anneal_every = 2
  config.train.learning_rate = 0.01  # after LS (the default is the reference code's 0.005)
  train.train_and_evaluate(config, str(tmp_path))
  unit = json.loads((tmp_path / "runs" / "unit_000" / "result.json").read_text())
  hist = unit["history"]
  switch = unit["switch_epoch"]
  assert 1 <= switch <= 2 and len(hist) == switch + 4
  assert all(h["linear"] and h["lr"] == 0.005 for h in hist[:switch])
  assert [h["lr"] for h in hist[switch:]] == [0.01, 0.01, 0.005, 0.005]
  assert not any(h["linear"] for h in hist[switch:])


def test_configs_and_paper_figures():
  assert default.get_config().mode == "joint"
  # The reference code's PE, per-array clipping and eta: without them task 16 never trains.
  c = default.get_config()
  assert c.model.pe_length == -1 and c.train.clip_per_param and c.train.learning_rate == 0.005
  assert per_task.get_config().model.embedding_size == 20
  c = variants.get_config("per_task_10k_pe_ls_rn_star_3hops")
  assert c.data.lang == "en-10k" and c.model.relu and c.model.embedding_size == 100
  c = variants.get_config("joint_1k_pe_ls_lw_2hops")
  assert c.model.tying == "layerwise" and c.model.num_hops == 2 and c.train.random_noise == 0
  c = variants.get_config("per_task_1k_bow_1hops")
  assert c.model.encoding == "bow" and not c.train.linear_start
  with pytest.raises(ValueError, match="unknown setting"):
    variants.get_config("joint_5k_pe_3hops")
  paper = paper_results.lookup("joint_1k_pe_ls_rn_3hops")
  errors = list(paper["per_task"].values())
  # The stored column reproduces the table's mean and failed-task count.
  assert round(float(np.mean(errors)), 1) == paper["mean_error"] == 12.4
  assert sum(e > 5 for e in errors) == paper["failed_tasks"]
  assert paper_results.lookup("per_task_1k_pe_3hops")["mean_error"] is None


def test_interactive_answers_and_plots(tmp_path, monkeypatch, capsys):
  config = _tiny_config()
  config.train.num_restarts = 1
  config.train.num_epochs = 6
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  predictor = interactive.load_predictor(workdir)
  story = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went to the office."]
  result = predictor.answer(story, "Where is Mary?")
  assert result.answer in synthetic.PLACES  # every answer of the task is a place
  assert result.attention.shape == (2, 3) and 0 < result.probability <= 1
  # With empty_attention (the default) the rest of each hop's weight sits on empty slots.
  assert predictor.config.model.empty_attention
  assert np.all(result.attention >= 0) and np.all(result.attention.sum(-1) <= 1 + 1e-5)
  # The restored model answers like the model evaluated at the end of training.
  story_ids, query_ids = predictor.encode(story, "Where is Mary?")
  logits, _ = predictor.model.apply(predictor.params, story_ids[None], query_ids[None])
  assert predictor.words[int(np.argmax(logits))] == result.answer
  # Asked the test set as text, the predictor encodes each story as the run's arrays and
  # makes the errors the run reported (the same best parameters as the evaluation).
  data = train.load_data(config, [1])
  words = data.vocab.words
  text = lambda ids: " ".join(words[i] for i in ids if i)
  answers = []
  for s, q in zip(data.test["story"], data.test["query"], strict=True):
    sentences, question = [text(row) for row in s if row.any()], text(q) + "?"
    story_ids, query_ids = predictor.encode(sentences, question)
    np.testing.assert_array_equal(story_ids, s)
    np.testing.assert_array_equal(query_ids, q)
    answers.append(predictor.answer(sentences, question).answer)
  error = 100 * np.mean(np.array(answers) != np.array([words[a] for a in data.test["answer"]]))
  results = json.loads((tmp_path / "results.json").read_text())
  assert error == pytest.approx(results["metrics"]["per_task_test_error"]["1"], abs=1e-9)
  png = str(tmp_path / "att.png")
  interactive.plot_attention(result, png)
  assert os.path.getsize(png) > 1000
  with pytest.raises(ValueError, match="zebra"):
    predictor.answer(["Mary fed the zebra."], "Where is Mary?")
  # Free text, bAbI's numbered format, and the command line over stdin.
  sentences, question = interactive.split_story(
    "1 Mary moved to the bathroom.\n2 Where is Mary?\tbathroom\t1"
  )
  assert sentences == ["Mary moved to the bathroom."] and question == "Where is Mary?"
  monkeypatch.setattr(
    "sys.stdin", ["John went to the kitchen. Mary went to the garden.\n", "Where is John?\n"]
  )
  interactive.main(["--workdir", workdir, "--png", png])
  out = capsys.readouterr().out
  assert "hop 1" in out and "Q: Where is John?" in out


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_make_optimizer_steps_like_optax(name):
  config = default.get_config()
  config.train.optimizer = name
  config.train.learning_rate = 0.1
  params = {"w": np.array([1.0, -2.0], np.float32)}
  grads = {"w": np.array([30.0, 40.0], np.float32)}  # norm 50 > 40: clipped to [24, 32]
  opt = train.make_optimizer(config)
  updates, _ = opt.update(grads, opt.init(params), params)
  # SGD moves by -lr * g; Adam's first step by -lr * sign(g) (m / sqrt(v) = +-1).
  expected = [-2.4, -3.2] if name == "sgd" else [-0.1, -0.1]
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-4)
  # The epoch loop sets the learning rate in the state; both optimizers must expose it.
  state = memjax_train.set_hyperparams(opt.init(params), learning_rate=0.05)
  updates, _ = opt.update(grads, state, params)
  np.testing.assert_allclose(updates["w"], np.array(expected) / 2, rtol=1e-4)


def test_make_optimizer_rejects_unknown_name():
  config = default.get_config()
  config.train.optimizer = "adagrad"
  with pytest.raises(ValueError, match="train.optimizer='adagrad'"):
    train.make_optimizer(config)
