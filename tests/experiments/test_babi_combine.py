"""Tests for experiments/babi/combine.py: selection across finished runs on validation."""

import json
import shutil

import pytest
from absl import flags

from experiments.babi import combine, interactive, train
from experiments.babi.configs import per_task_10k, smoke


def _run(path, optimizer, lr):
  config = smoke.get_config()
  config.mode = "per_task"
  config.data.synthetic_num_train = 128
  config.data.synthetic_num_test = 64
  config.model.embedding_size = 8
  config.train.num_epochs = 2
  config.train.ls_max_epochs = 1
  config.train.num_restarts = 1
  config.train.eval_batch_size = 64
  config.train.optimizer = optimizer
  config.train.learning_rate = lr
  train.train_and_evaluate(config, str(path))
  return json.loads((path / "results.json").read_text())


@pytest.fixture(scope="module")
def _trained(tmp_path_factory):
  """One SGD and one Adam run, trained once; each test works on its own copies."""
  root = tmp_path_factory.mktemp("runs")
  return {"sgd": _run(root / "sgd", "sgd", 0.005), "adam": _run(root / "adam", "adam", 0.01)}, root


def _copies(trained, tmp_path):
  runs, root = trained
  for name in runs:
    shutil.copytree(root / name, tmp_path / name)
  return runs["sgd"], runs["adam"]


def test_combine_picks_lowest_validation_error_across_runs(_trained, tmp_path):
  a, b = _copies(_trained, tmp_path)
  metrics, _, wall, extra = combine.combine([str(tmp_path / "sgd"), str(tmp_path / "adam")])
  (ua,), (ub,) = a["units"], b["units"]
  # The lower validation error wins; a tie goes to the first run.
  best, run = (ua, "sgd") if ua["validation_error"] <= ub["validation_error"] else (ub, "adam")
  assert metrics["per_task_test_error"][1] == pytest.approx(best["test_task_error"]["1"])
  assert metrics["selected_run"][1] == str(tmp_path / run)
  assert [u["run"] for u in extra["units"]] == [0, 1]
  assert [u["index"] for u in extra["units"]] == [0, 1]
  assert wall == pytest.approx(a["wall_time_s"] + b["wall_time_s"])
  assert [c["train"]["optimizer"] for c in extra["run_configs"]] == ["sgd", "adam"]

  # Force each outcome by editing the validation errors: the selection follows them.
  for winner, (va, vb) in (("adam", (9.0, 1.0)), ("sgd", (1.0, 9.0)), ("sgd", (3.0, 3.0))):
    for name, v in (("sgd", va), ("adam", vb)):
      path = tmp_path / name / "results.json"
      r = json.loads(path.read_text())
      r["units"][0]["validation_error"] = v
      path.write_text(json.dumps(r))
    metrics, *_ = combine.combine([str(tmp_path / "sgd"), str(tmp_path / "adam")])
    assert metrics["selected_run"][1] == str(tmp_path / winner)
    src = a if winner == "sgd" else b
    assert metrics["mean_test_error"] == pytest.approx(src["units"][0]["test_error"])


def test_combine_refuses_runs_that_are_not_comparable(_trained, tmp_path):
  _copies(_trained, tmp_path)
  shutil.move(tmp_path / "sgd", tmp_path / "a")
  shutil.move(tmp_path / "adam", tmp_path / "b")
  path = tmp_path / "b" / "results.json"
  r = json.loads(path.read_text())
  r["config"]["data"]["memory_size"] = 50
  path.write_text(json.dumps(r))
  with pytest.raises(ValueError, match="config.data.memory_size: 10"):
    combine.combine([str(tmp_path / "a"), str(tmp_path / "b")])
  with pytest.raises(FileNotFoundError, match="missing.*results.json"):
    combine.combine([str(tmp_path / "a"), str(tmp_path / "missing")])
  with pytest.raises(ValueError, match="at least two runs"):
    combine.combine([str(tmp_path / "a")])


def test_combine_command_writes_results(_trained, tmp_path, capsys):
  _copies(_trained, tmp_path)
  shutil.move(tmp_path / "sgd", tmp_path / "a")
  shutil.move(tmp_path / "adam", tmp_path / "b")
  capsys.readouterr()
  flags.FLAGS(
    ["combine", f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}", f"--workdir={tmp_path / 'ab'}"]
  )
  try:
    combine.main(["combine"])
  finally:
    flags.FLAGS.unparse_flags()
  out = capsys.readouterr().out
  r = json.loads((tmp_path / "ab" / "results.json").read_text())
  assert r["combined_from"] == [str(tmp_path / "a"), str(tmp_path / "b")]
  assert len(r["units"]) == 2 and "mean_test_error" in r["metrics"]
  chosen = r["metrics"]["selected_run"]["1"]
  assert f"({chosen}) chosen for 1 task(s): 1" in out
  # The interactive mode restores the chosen unit from the run that trained it.
  combined = interactive.load_predictor(str(tmp_path / "ab"), task=1)
  direct = interactive.load_predictor(chosen, task=1)
  assert combined.config.train.optimizer == direct.config.train.optimizer
  story = ["Mary moved to the bathroom.", "John went to the hallway."]
  a, b = combined.answer(story, "Where is Mary?"), direct.answer(story, "Where is Mary?")
  assert a.answer == b.answer and a.probability == pytest.approx(b.probability)


def test_per_task_10k_recipes():
  sgd, adam = per_task_10k.get_config("sgd"), per_task_10k.get_config()
  assert sgd.train.optimizer == "sgd" and adam.train.optimizer == "adam"
  assert sgd.model == adam.model and adam.model.relu and adam.model.embedding_size == 100
  assert (sgd.train.num_epochs, adam.train.num_epochs) == (100, 300)
  with pytest.raises(ValueError, match="must be 'sgd' or 'adam'"):
    per_task_10k.get_config("rmsprop")
