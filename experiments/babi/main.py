"""Trains MemN2N on bAbI and prints the per-task table beside the paper's.

    python -m experiments.babi.main --config=experiments/babi/configs/default.py \
        --workdir=runs/babi_joint_1k

Re-running the same command resumes a killed run. A user error (no bAbI data under the
data root, a bad config value, ...) prints its message and exits with status 2; set
``MEMJAX_DEBUG=1`` for the traceback (see ``memjax.train.cli``).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.babi import train
from memjax.train import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and results.json go.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "A config file (configs/*.py).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
