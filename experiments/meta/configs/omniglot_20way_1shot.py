"""MAML on Omniglot, 20-way 1-shot (the paper: 95.8 +- 0.3%).

  MEMJAX_DATA_DIR=../shared/data python -m experiments.meta.main \
      --config=experiments/meta/configs/omniglot_20way_1shot.py \
      --workdir=runs/meta/omniglot_20way_1shot_maml

The paper's 20-way settings: inner step 0.1, 5 steps in training and at test time, a
meta-batch of 16 tasks, 5 query examples per class.
"""

from experiments.meta.configs import omniglot_5way_1shot


def get_config(arg=None):
  config = omniglot_5way_1shot.get_config(arg)
  config.name = "omniglot_20way_1shot"
  config.data.num_ways = 20
  config.data.num_queries = 5
  config.inner.lr = 0.1
  config.inner.num_steps = 5
  config.meta_batch_size = 16
  config.eval.num_steps = (5,)
  config.eval.report_steps = 5
  return config
