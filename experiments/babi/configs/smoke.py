"""A seconds-long run on generated task-1-like data (tests and a first look).

    python -m experiments.babi.main --config=experiments/babi/configs/smoke.py \
        --workdir=/tmp/babi_smoke
"""

from experiments.babi.configs import default


def get_config(arg=None):
  del arg
  config = default.get_config()
  config.tasks = (1,)
  config.paper_setting = ""
  config.data.source = "synthetic"
  config.data.memory_size = 10
  config.data.synthetic_num_train = 320
  config.data.synthetic_num_test = 200
  config.model.embedding_size = 16
  config.model.num_hops = 2
  config.train.num_epochs = 4
  config.train.anneal_every = 2
  config.train.ls_max_epochs = 2
  config.train.ls_patience = 1
  config.train.num_restarts = 2
  config.train.checkpoint_every_epochs = 1
  config.train.eval_batch_size = 100
  config.train.bucket_sizes = ()
  config.train.word_bucket_sizes = ()
  return config
