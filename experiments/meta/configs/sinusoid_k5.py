"""MAML on the sinusoid, K = 5 shots (Finn et al. 2017, Figure 2's K = 5 panel).

  python -m experiments.meta.main --config=experiments/meta/configs/sinusoid_k5.py \
      --workdir=runs/meta/sinusoid_k5_maml
"""

from experiments.meta.configs import sinusoid_k10


def get_config(arg=None):
  """The K = 10 config with 5 support (and training query) points."""
  config = sinusoid_k10.get_config(arg)
  config.name = "sinusoid_k5"
  config.data.num_shots = 5
  config.data.num_queries = 5
  return config
