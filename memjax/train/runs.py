"""Several runs of one study (restarts, tasks, seeds, task sequences) with per-run resume.

A study lists its runs as :class:`Run` s (a name and a JSON-able spec), gives a function
that trains one run in its own directory (usually through :func:`memjax.train.fit`) and
returns its result as a JSON-able dict, and :func:`run_all` does the rest: a finished
run's result is read back from ``<workdir>/runs/<name>/result.json`` instead of training
it again, an unfinished one resumes from its own checkpoints, and the study's wall time
adds up across sessions. :func:`select_best` then picks a run per group (the paper's
"best of N restarts on validation error").

Example:
  >>> runs = grid(task=[1, 2], restart=range(2))
  >>> [r.name for r in runs]
  ['task=1,restart=0', 'task=1,restart=1', 'task=2,restart=0', 'task=2,restart=1']
  >>> results = [dict(r.spec, val=v) for r, v in zip(runs, [3.0, 1.0, 2.0, 2.0])]
  >>> best = select_best(results, score=lambda r: r["val"], group=lambda r: r["task"])
  >>> {t: r["restart"] for t, r in best.items()}
  {1: 1, 2: 0}
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, NamedTuple

from memjax.train.results import write_json_atomic

RESULT_FILE = "result.json"


class Run(NamedTuple):
  """One run of a study.

  Attributes:
    name: its directory under ``<workdir>/runs/`` (unique within the study).
    spec: what distinguishes it (JSON-able: tasks, restart, seed, ...).
  """

  name: str
  spec: dict[str, Any]


def grid(**axes: Iterable[Any]) -> list[Run]:
  """Every combination of the axes' values, the last axis varying fastest.

  Args:
    **axes: name -> values (e.g. ``task=[1, 2], restart=range(3)``).

  Returns:
    The runs, named ``'name=value,...'``.
  """
  names = list(axes)
  runs = []
  for values in itertools.product(*(list(v) for v in axes.values())):
    spec = dict(zip(names, values, strict=True))
    runs.append(Run(",".join(f"{k}={v}" for k, v in spec.items()), spec))
  return runs


def run_dir(workdir: str | os.PathLike, run: Run) -> str:
  """``<workdir>/runs/<run.name>``: the run's checkpoints, history and result."""
  return os.path.join(os.fspath(workdir), "runs", run.name)


def load_result(workdir: str | os.PathLike, run: Run) -> dict[str, Any] | None:
  """The finished run's result, or None when it has not finished."""
  path = os.path.join(run_dir(workdir, run), RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run_all(
  workdir: str | os.PathLike,
  runs: Sequence[Run],
  train_one: Callable[[Run, str], dict[str, Any]],
) -> tuple[list[dict[str, Any]], float]:
  """Trains every run not finished yet, in order; reads finished ones back.

  Args:
    workdir: the study's directory.
    runs: the runs, each with a unique name.
    train_one: ``fn(run, run_directory) -> result`` (JSON-able); it resumes from its
      own checkpoints in ``run_directory`` when killed before.

  Returns:
    ``(results, wall_time_s)``: each result with ``'run'`` (the name) and ``'spec'``
    added, in the order of ``runs``; the wall time of every session of the study.

  Raises:
    ValueError: duplicate run names.
  """
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise ValueError(f"run names must be unique, got {names}")
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  progress_path = os.path.join(workdir, "progress.json")
  prior = 0.0
  if os.path.exists(progress_path):
    with open(progress_path) as f:
      prior = float(json.load(f)["wall_time_s"])
  start = time.time()
  results = []
  for run in runs:
    result = load_result(workdir, run)
    if result is None:
      directory = run_dir(workdir, run)
      os.makedirs(directory, exist_ok=True)
      result = dict(train_one(run, directory), run=run.name, spec=run.spec)
      write_json_atomic(os.path.join(directory, RESULT_FILE), result)
      write_json_atomic(progress_path, {"wall_time_s": prior + time.time() - start})
    results.append(result)
  return results, prior + time.time() - start


def select_best(
  results: Sequence[dict[str, Any]],
  score: Callable[[dict[str, Any]], float],
  group: Callable[[dict[str, Any]], Hashable] | None = None,
) -> dict[Hashable, dict[str, Any]]:
  """The result with the lowest score in each group; ties go to the earlier result.

  A NaN score (a run that diverged) ranks last: it is chosen only when its whole group
  is NaN.

  Args:
    results: the runs' results, in run order.
    score: lower is better (e.g. validation error).
    group: the group of a result (e.g. its task); None = one group, keyed None.

  Returns:
    group -> the chosen result, groups in order of first appearance.
  """
  best: dict[Hashable, tuple[float, int]] = {}
  for i, r in enumerate(results):
    g = None if group is None else group(r)
    s = float(score(r))
    s = math.inf if math.isnan(s) else s
    if g not in best or s < best[g][0]:
      best[g] = (s, i)
  return {g: results[i] for g, (_, i) in best.items()}


__all__ = ["Run", "grid", "run_dir", "load_result", "run_all", "select_best", "RESULT_FILE"]
