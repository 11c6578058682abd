"""MAML on Omniglot, 5-way 5-shot (the paper: 99.9 +- 0.1%).

  MEMJAX_DATA_DIR=../shared/data python -m experiments.meta.main \
      --config=experiments/meta/configs/omniglot_5way_5shot.py \
      --workdir=runs/meta/omniglot_5way_5shot_maml
"""

from experiments.meta.configs import omniglot_5way_1shot


def get_config(arg=None):
  config = omniglot_5way_1shot.get_config(arg)
  config.name = "omniglot_5way_5shot"
  config.data.num_shots = 5
  return config
