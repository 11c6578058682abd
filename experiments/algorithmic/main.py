"""Trains an NTM or LSTM on an algorithmic task.

  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/copy_ntm.py --workdir=runs/copy_ntm

Override fields on the command line, e.g. ``--config.batch_size=32``.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.algorithmic import train

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
flags.mark_flags_as_required(["workdir", "config"])


def main(argv):
  del argv
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
