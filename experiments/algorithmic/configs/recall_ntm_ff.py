"""NTM with a feed-forward controller on associative recall (Graves et al. 2014, 4.3).

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/recall_ntm_ff.py --workdir=runs/recall_ntm_ff

Expected: the paper's feed-forward NTM learns associative recall faster than the NTM with
an LSTM controller (configs/recall_ntm.py); see ``sequences_to_converge`` in results.json.
"""

from experiments.algorithmic.configs import recall_ntm


def get_config(arg=None):
  """The associative-recall NTM config with a one-layer tanh controller."""
  config = recall_ntm.get_config(arg)
  config.name = "recall_ntm_ff"
  config.model.controller = "feedforward"  # lstm | feedforward
  return config
