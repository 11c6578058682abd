"""Model selection across finished bAbI runs: per task, the unit best on validation error.

    python -m experiments.babi.combine --workdirs=runs/a,runs/b --workdir=runs/a_or_b

Runs that differ in one setting (say the optimiser: the paper's SGD and our Adam recipe)
become candidates of one model selection, exactly like the restarts within a run: per task
(joint: overall) the unit with the lowest validation error is kept, ties going to the
earlier run and restart. The choice reads validation errors only. The runs must agree on
what is evaluated (mode, tasks, data folder, memory size, validation split); otherwise
this refuses and names the setting. Writes ``results.json`` (metrics, every unit with its
run's workdir as given, each run's config) and prints the table beside the paper's;
``experiments.babi.interactive`` on the combined workdir restores the chosen unit from
that run (a relative workdir resolves from the current directory).
"""

from __future__ import annotations

import json
import os

import ml_collections
from absl import app, flags, logging

from experiments.babi import train
from memjax.train import cli, write_results

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Finished runs (each has results.json).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the combined results.json goes.")

# What every run must share for their validation errors to be comparable.
SHARED = (
  ("mode",),
  ("tasks",),
  ("paper_setting",),
  ("data", "source"),
  ("data", "lang"),
  ("data", "memory_size"),
  ("data", "validation_fraction"),
  ("data", "split_seed"),
)


def _get(config: dict, keys: tuple[str, ...]):
  for k in keys:
    config = config[k]
  return list(config) if isinstance(config, (list, tuple)) else config


def load_run(workdir: str) -> dict:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no results.json (is the run in {workdir!r} finished?)")
  with open(path) as f:
    run = json.load(f)
  for key in ("config", "units", "wall_time_s"):
    if key not in run:
      raise ValueError(f"{path}: not a bAbI results.json (no {key!r} entry)")
  return run


def combine(workdirs: list[str]) -> tuple[dict, ml_collections.ConfigDict, float, dict]:
  """``(metrics, config, wall_time_s, extra)`` of the selection across ``workdirs``."""
  if len(workdirs) < 2:
    raise ValueError(f"combine needs at least two runs, got {workdirs}")
  runs = [load_run(w) for w in workdirs]
  first = runs[0]["config"]
  for w, run in zip(workdirs[1:], runs[1:], strict=True):
    for keys in SHARED:
      a, b = _get(first, keys), _get(run["config"], keys)
      if a != b:
        raise ValueError(
          f"runs differ in config.{'.'.join(keys)}: {a!r} ({workdirs[0]}) vs {b!r} ({w}); "
          "their validation errors are not comparable"
        )
  units = []
  for r, (w, run) in enumerate(zip(workdirs, runs, strict=True)):
    for u in sorted(run["units"], key=lambda u: u["index"]):
      units.append(dict(u, run=r, run_workdir=w, run_index=u["index"], index=len(units)))
  config = ml_collections.ConfigDict(first)
  wall = sum(run["wall_time_s"] for run in runs)
  metrics = train.summarize(config, units, wall)
  metrics["selected_run"] = {
    t: units[i]["run_workdir"] for t, i in metrics["selected_unit"].items()
  }
  extra = {
    "combined_from": list(workdirs),
    "run_configs": [run["config"] for run in runs],
    "units": units,
  }
  return metrics, config, wall, extra


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  metrics, config, wall, extra = combine(_WORKDIRS.value)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  path = write_results(_WORKDIR.value, metrics, config, wall, extra=extra)
  print(train.format_table(metrics))
  for r, w in enumerate(_WORKDIRS.value):
    tasks = [t for t, run in metrics["selected_run"].items() if run == w]
    print(f"run {r} ({w}) chosen for {len(tasks)} task(s): {','.join(map(str, tasks)) or '-'}")
  print(f"wall time (all runs): {wall:.1f} s   results: {path}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs", "workdir"])
  cli.run(main)
