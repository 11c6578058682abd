"""Training: one loop for every study, its runs, devices, checkpoints and results.

* ``loop``: :class:`TrainState`, :func:`make_train_steps` (a jitted scan over optimizer
  steps) and :func:`fit` (log / eval / hooks / checkpoint / resume / progress / SIGTERM).
* ``runs``: several runs of a study (restarts, tasks, seeds) with per-run resume and
  selection.
* ``parallel``: the device mesh (``jax.make_mesh`` + ``NamedSharding``), batch sharding,
  multi-process start.
* ``batches``: shuffled epochs over device-resident length buckets, chunked evaluation.
* ``recipes``: the reference studies' training steps (NTM tasks, MemN2N on bAbI).
* ``checkpoint`` (Orbax), ``results`` (``results.json``), ``plots``, ``clip``, ``compile``.
"""

from memjax.train import batches, clip, plots, recipes
from memjax.train.checkpoint import Checkpointer
from memjax.train.compile import compiler_options
from memjax.train.loop import (
  FitResult,
  Hook,
  Preempted,
  TrainState,
  fit,
  make_train_steps,
  set_hyperparams,
)
from memjax.train.parallel import (
  DATA_AXIS,
  batch_sharding,
  check_batch_divisible,
  constrain_batch,
  data_mesh,
  global_batch,
  initialize_distributed,
  replicate,
  replicated,
  shard_batch,
)
from memjax.train.results import (
  device_info,
  library_versions,
  to_jsonable,
  write_json_atomic,
  write_results,
)
from memjax.train.runs import Run, grid, load_result, run_all, run_dir, select_best

__all__ = [
  "batches",
  "clip",
  "plots",
  "recipes",
  "Checkpointer",
  "compiler_options",
  "FitResult",
  "Hook",
  "Preempted",
  "TrainState",
  "fit",
  "make_train_steps",
  "set_hyperparams",
  "DATA_AXIS",
  "batch_sharding",
  "check_batch_divisible",
  "constrain_batch",
  "data_mesh",
  "global_batch",
  "initialize_distributed",
  "replicate",
  "replicated",
  "shard_batch",
  "device_info",
  "library_versions",
  "to_jsonable",
  "write_json_atomic",
  "write_results",
  "Run",
  "grid",
  "load_result",
  "run_all",
  "run_dir",
  "select_best",
]
