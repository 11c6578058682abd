"""Trains MemN2N on bAbI and prints the per-task table beside the paper's.

    python -m experiments.babi.main --config=experiments/babi/configs/default.py \
        --workdir=runs/babi_joint_1k

Re-running the same command resumes a killed run. A user error (no bAbI data under the
data root, a bad config value, ...) prints its message and exits with status 2; set
``MEMJAX_DEBUG=1`` for the traceback (see ``memjax.train.cli``).
"""

from experiments.babi import train
from memjax.train import cli

main = cli.study_main(train.train_and_evaluate)

if __name__ == "__main__":
  cli.run(main)
