"""Omniglot alphabets as a task sequence, task-incremental: each alphabet a task whose
classes are its characters (drawers 1-15 train, 16-20 test), a small convolutional net on
14x14 images told the task (outputs masked to the alphabet's characters).

The data are the zips under ``$MEMJAX_DATA_DIR/omniglot`` (``memjax.data.omniglot``; with
the two "minimal" background splits: 8 alphabets, 242 characters):

  MEMJAX_DATA_DIR=/path/to/data python -m experiments.continual.main \
      --config=experiments/continual/configs/omniglot_alphabets.py \
      --workdir=runs/continual/omniglot_alphabets
"""

from experiments.continual.configs import split_digits_class


def get_config(arg=None):
  """Task-incremental Omniglot alphabets, 3 seeds."""
  config = split_digits_class.get_config(arg)
  config.name = "omniglot_alphabets"
  config.scenario = "task"
  config.seeds = (0, 1, 2)
  config.data.name = "omniglot_alphabets"
  config.data.image_size = 14  # 28x28 with 3 blocks: 4.6x slower per step, no better
  config.model.kind = "conv"
  config.model.num_filters = 32
  config.model.num_blocks = 2
  config.steps_per_task = 600
  config.replay.capacity = 400  # examples kept (of 3,630 training images of 8 alphabets)
  config.replay.balance = "task"
  config.ewc.fisher = "sampled"  # exact would take 242 backward passes per example
  config.ewc.num_examples = 256
  config.compare_paper = False
  return config
