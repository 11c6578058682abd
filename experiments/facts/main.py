"""Dialogue-memory study: conflict policies, decay and deletion in a fact memory.

  python -m experiments.facts.main --config=experiments/facts/configs/default.py \
      --workdir=runs/facts

Override fields on the command line, e.g. ``--config.policies=newest,gate``. A user error
(a missing data root, a bad config value) prints its message and exits with status 2; set
``MEMJAX_DEBUG=1`` for the traceback (see ``memjax.train.cli``).
"""

from experiments.facts import train
from memjax.train import cli

main = cli.study_main(train.train_and_evaluate)

if __name__ == "__main__":
  cli.run(main)
