"""LSTM baseline (3 x 256, as the paper) on the copy task, lengths 1-20.

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/copy_lstm.py --workdir=runs/copy_lstm

Expected: learns lengths 1-20 far slower than the NTM (configs/copy_ntm.py) and fails
at length 40.
"""

import ml_collections

from experiments.algorithmic.configs import copy_ntm


def get_config(arg=None):
  """The copy-task NTM config with the model replaced by a stacked LSTM."""
  config = copy_ntm.get_config(arg)
  config.name = "copy_lstm"
  config.model = ml_collections.ConfigDict()
  config.model.name = "lstm"  # ntm | lstm
  config.model.hidden_size = 256  # units per layer
  config.model.num_layers = 3  # stacked layers
  config.plots = False  # no head weightings to plot
  return config
