"""The bAbI study's smallest run that has what kill-and-resume must survive (test only).

Two units (restarts) of 5 epochs each on the synthetic source: linear start for 2 epochs
(its validation loss rises in the second, which ends it), 3 softmax epochs, then the hook
stops the unit 4 epochs before ``num_rounds``; a checkpoint every epoch (one kept).
"""

from experiments.babi.configs import smoke


def get_config(arg=None):
  del arg
  config = smoke.get_config()
  config.num_devices = 1
  config.data.synthetic_num_train = 128
  config.data.synthetic_num_test = 64
  config.model.embedding_size = 8
  config.train.num_epochs = 3
  config.train.ls_max_epochs = 6
  config.train.ls_patience = 1
  config.train.ls_learning_rate = 0.02
  config.train.num_restarts = 2
  config.train.eval_batch_size = 64
  config.train.checkpoint_every_epochs = 1
  return config
