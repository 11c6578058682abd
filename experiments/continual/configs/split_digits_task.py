"""Split-digits, task-incremental: 5 tasks of 2 digits, the model told the task (its
outputs masked to the task's two digits: a multi-headed network).

  python -m experiments.continual.main \
      --config=experiments/continual/configs/split_digits_task.py \
      --workdir=runs/continual/split_digits_task
"""

from experiments.continual.configs import split_digits_class


def get_config(arg=None):
  """The class-incremental config, task-incremental."""
  config = split_digits_class.get_config(arg)
  config.name = "split_digits_task"
  config.scenario = "task"
  config.replay.balance = "task"  # replayed examples: each earlier task equally often
  config.compare_paper = False  # the paper's figures quoted are class-IL only
  return config
