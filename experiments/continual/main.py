"""Continual learning: task sequences learned one after another (and the distillation demo).

  python -m experiments.continual.main \
      --config=experiments/continual/configs/split_digits_class.py \
      --workdir=runs/continual/split_digits_class

Override fields on the command line, e.g. ``--config.seeds=0,1``. A user error (a bad
config value, ...) prints its message and exits with status 2; set ``MEMJAX_DEBUG=1`` for
the traceback (see ``memjax.train.cli``).
"""

from experiments.continual import train
from memjax.train import cli

main = cli.study_main(train.train_and_evaluate)

if __name__ == "__main__":
  cli.run(main)
