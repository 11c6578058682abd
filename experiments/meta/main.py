"""Meta-trains a model on few-shot tasks (sinusoid regression, Omniglot).

  python -m experiments.meta.main \
      --config=experiments/meta/configs/sinusoid_k10.py --workdir=runs/meta/sinusoid_k10

Override fields on the command line, e.g. ``--config.algorithm=fomaml``. A user error (a bad
config value, ...) prints its message and exits with status 2; set ``MEMJAX_DEBUG=1`` for
the traceback (see ``memjax.train.cli``).
"""

from experiments.meta import train
from memjax.train import cli

main = cli.study_main(train.train_and_evaluate)

if __name__ == "__main__":
  cli.run(main)
