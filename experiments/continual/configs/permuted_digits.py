"""Permuted-digits, domain-incremental: 5 tasks, each all 10 digits under its own fixed
permutation of the 64 pixels (the first unpermuted); one 10-way output for every task.

  python -m experiments.continual.main \
      --config=experiments/continual/configs/permuted_digits.py \
      --workdir=runs/continual/permuted_digits
"""

from experiments.continual.configs import split_digits_class


def get_config(arg=None):
  """The class-incremental config on Permuted-digits, domain-incremental."""
  config = split_digits_class.get_config(arg)
  config.name = "permuted_digits"
  config.scenario = "domain"
  config.data.name = "permuted_digits"
  config.data.num_tasks = 5
  config.replay.balance = "task"
  # lambda: 100 from {10, 100, 1e3, 1e4, 1e5} on seed 100 (not a reported seed): 1e3 and
  # more hold the first task but cannot learn the later ones.
  config.ewc.strength = 100.0
  config.online_ewc.strength = 100.0
  config.compare_paper = False
  return config
