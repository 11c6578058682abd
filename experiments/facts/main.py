"""Dialogue-memory study: conflict policies, decay and deletion in a fact memory.

  python -m experiments.facts.main --config=experiments/facts/configs/default.py \
      --workdir=runs/facts

Override fields on the command line, e.g. ``--config.policies=newest,gate``. A user error
(a missing data root, a bad config value) prints its message and exits with status 2; set
``MEMJAX_DEBUG=1`` for the traceback (see ``memjax.train.cli``).
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.facts import train
from memjax.train import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
flags.mark_flags_as_required(["workdir", "config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
