"""MAML on Omniglot, 20-way 5-shot (the paper: 98.9 +- 0.2%).

  MEMJAX_DATA_DIR=../shared/data python -m experiments.meta.main \
      --config=experiments/meta/configs/omniglot_20way_5shot.py \
      --workdir=runs/meta/omniglot_20way_5shot_maml
"""

from experiments.meta.configs import omniglot_20way_1shot


def get_config(arg=None):
  config = omniglot_20way_1shot.get_config(arg)
  config.name = "omniglot_20way_5shot"
  config.data.num_shots = 5
  return config
