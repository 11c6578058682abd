"""Trains an NTM or LSTM on an algorithmic task.

  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/copy_ntm.py --workdir=runs/copy_ntm

Override fields on the command line, e.g. ``--config.batch_size=32``. A user error (a bad
config value, ...) prints its message and exits with status 2; set ``MEMJAX_DEBUG=1`` for
the traceback (see ``memjax.train.cli``).
"""

from experiments.algorithmic import train
from memjax.train import cli

main = cli.study_main(train.train_and_evaluate)

if __name__ == "__main__":
  cli.run(main)
