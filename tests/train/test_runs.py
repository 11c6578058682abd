"""Tests of memjax.train.runs: the grid, run_all's per-run resume and wall time, select_best."""

import json
import os

import pytest

import memjax.train.runs as runs_lib
from memjax.train import Run, grid, load_result, run_all, run_dir, select_best


class Clock:
  """A stand-in for the ``time`` module in runs.py: time moves only when told."""

  def __init__(self, now=1000.0):
    self.now = now

  def time(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  fake = Clock()
  monkeypatch.setattr(runs_lib, "time", fake)
  return fake


class Killed(Exception):
  """A run that dies before it finishes (SIGKILL, preemption)."""


class Trainer:
  """A ``train_one`` that records its calls, takes ``seconds`` of the clock and can fail."""

  def __init__(self, clock=None, seconds=0.0, fail_on=()):
    self.calls = []
    self.clock, self.seconds, self.fail_on = clock, seconds, set(fail_on)

  def __call__(self, run, directory):
    self.calls.append(run.name)
    assert os.path.isdir(directory)
    marker = os.path.join(directory, "partial")
    resumed = os.path.exists(marker)
    open(marker, "w").close()  # what a killed run leaves behind (its checkpoints)
    if self.clock is not None:
      self.clock.now += self.seconds
    if run.name in self.fail_on:
      raise Killed(run.name)
    return {"score": float(sum(run.spec.values())), "resumed": resumed}


def test_grid_varies_the_last_axis_fastest():
  runs = grid(task=[1, 2], restart=range(3))
  assert [r.name for r in runs] == [
    "task=1,restart=0",
    "task=1,restart=1",
    "task=1,restart=2",
    "task=2,restart=0",
    "task=2,restart=1",
    "task=2,restart=2",
  ]
  assert runs[4] == Run("task=2,restart=1", {"task": 2, "restart": 1})
  assert list(runs[4].spec) == ["task", "restart"]
  assert grid(seed=iter([7])) == [Run("seed=7", {"seed": 7})]


def test_run_all_trains_each_run_once_and_writes_its_result(tmp_path):
  runs = grid(task=[1, 2], restart=range(2))
  trainer = Trainer()
  results, wall = run_all(tmp_path, runs, trainer)
  assert trainer.calls == [r.name for r in runs]
  assert [r["run"] for r in results] == [r.name for r in runs]
  assert [r["spec"] for r in results] == [r.spec for r in runs]
  assert [r["score"] for r in results] == [1.0, 2.0, 2.0, 3.0]
  assert wall >= 0
  for run, result in zip(runs, results, strict=True):
    assert run_dir(tmp_path, run) == os.path.join(tmp_path, "runs", run.name)
    with open(os.path.join(run_dir(tmp_path, run), "result.json")) as f:
      assert json.load(f) == result
    assert load_result(tmp_path, run) == result


def test_run_all_reads_finished_runs_back(tmp_path):
  runs = grid(restart=range(3))
  first, _ = run_all(tmp_path, runs, Trainer())

  def never(run, directory):
    raise AssertionError(f"{run.name} was trained again")

  again, _ = run_all(tmp_path, runs, never)
  assert again == first


def test_a_killed_run_is_trained_again_and_finished_ones_are_not(tmp_path):
  runs = grid(restart=range(3))
  trainer = Trainer(fail_on={"restart=1"})
  with pytest.raises(Killed):
    run_all(tmp_path, runs, trainer)
  assert trainer.calls == ["restart=0", "restart=1"]
  assert load_result(tmp_path, runs[0]) is not None
  assert load_result(tmp_path, runs[1]) is None and load_result(tmp_path, runs[2]) is None

  trainer = Trainer()
  results, _ = run_all(tmp_path, runs, trainer)
  assert trainer.calls == ["restart=1", "restart=2"]
  # The killed run found what it left in its own directory; the others started fresh.
  assert [r["resumed"] for r in results] == [False, True, False]
  assert [r["run"] for r in results] == [r.name for r in runs]


def test_duplicate_run_names_are_refused(tmp_path):
  trainer = Trainer()
  runs = [Run("a", {"x": 1}), Run("b", {"x": 2}), Run("a", {"x": 3})]
  with pytest.raises(ValueError, match="unique"):
    run_all(tmp_path / "study", runs, trainer)
  assert trainer.calls == [] and not (tmp_path / "study").exists()


def test_wall_time_adds_up_across_sessions(tmp_path, clock, monkeypatch):
  runs = grid(restart=range(3))
  # Session 1: restart=0 takes 10 s, restart=1 is killed after 4 s (they are lost: the
  # progress is written when a run finishes).
  with pytest.raises(Killed):
    run_all(tmp_path, runs, Trainer(clock, 10.0, fail_on={"restart=1"}))
  with open(tmp_path / "progress.json") as f:
    assert json.load(f) == {"wall_time_s": 10.0}
  # Session 2 trains the other two (10 s each) and reports all three.
  _, wall = run_all(tmp_path, runs, Trainer(clock, 10.0))
  assert wall == 30.0
  # Session 3 trains nothing; reading back takes 2 s.
  clock.now += 100.0  # between sessions: not counted

  def read_back(run, directory):
    raise AssertionError(run.name)

  def slow_load(workdir, run, load=runs_lib.load_result):
    clock.now += 1.0
    return load(workdir, run)

  monkeypatch.setattr(runs_lib, "load_result", slow_load)
  _, wall = run_all(tmp_path, runs[:2], read_back)
  assert wall == 32.0


def test_select_best_lowest_score_per_group_ties_to_the_earlier():
  results = [
    {"task": 1, "restart": 0, "val": 3.0},
    {"task": 2, "restart": 0, "val": 2.0},
    {"task": 1, "restart": 1, "val": 1.0},
    {"task": 2, "restart": 1, "val": 2.0},  # ties restart 0
    {"task": 1, "restart": 2, "val": 1.0},  # ties restart 1
  ]
  best = select_best(results, score=lambda r: r["val"], group=lambda r: r["task"])
  assert list(best) == [1, 2]
  assert best[1] is results[2] and best[2] is results[1]

  overall = select_best(results, score=lambda r: r["val"])
  assert list(overall) == [None] and overall[None] is results[2]
  assert select_best([], score=lambda r: r["val"]) == {}


def test_select_best_does_not_pick_a_nan_score():
  results = [{"val": float("nan")}, {"val": 1.0}]
  assert select_best(results, score=lambda r: r["val"])[None] is results[1]
  only_nan = [{"val": float("nan")}, {"val": float("nan")}]
  assert select_best(only_nan, score=lambda r: r["val"])[None] is only_nan[0]
