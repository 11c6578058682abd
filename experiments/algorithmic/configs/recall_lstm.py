"""LSTM baseline (3 x 256) on associative recall.

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/recall_lstm.py --workdir=runs/recall_lstm
"""

from experiments.algorithmic.configs import copy_lstm, recall_ntm


def get_config(arg=None):
  """The associative-recall config with the LSTM baseline model."""
  config = recall_ntm.get_config(arg)
  config.name = "recall_lstm"
  config.model = copy_lstm.get_config(arg).model
  config.plots = False  # no head weightings to plot
  return config
