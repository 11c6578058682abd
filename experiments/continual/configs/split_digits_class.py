"""Split-digits, class-incremental: 5 tasks of 2 digits, one softmax over every digit seen.

The headline setting (van de Ven & Tolias's Split-MNIST class-IL on scikit-learn's
8x8 digits). Every method, 5 seeds:

  python -m experiments.continual.main \
      --config=experiments/continual/configs/split_digits_class.py \
      --workdir=runs/continual/split_digits_class

Writes ``results.json`` (per method: average accuracy and forgetting after each task,
mean and sd over seeds; the paper's Split-MNIST figures beside ours) and
``accuracy_per_task.png``. One method: ``--config.methods="('replay',)"``.
"""

import ml_collections

from experiments.continual.train import METHODS


def get_config(arg=None):
  """The default config (``arg`` is unused)."""
  del arg
  config = ml_collections.ConfigDict()
  config.study = "continual"  # continual | distill (the distillation demo)
  config.name = "split_digits_class"  # run name (tables, plot titles)
  config.scenario = "class"  # task | class | domain (van de Ven & Tolias's three scenarios)
  config.methods = METHODS  # which methods to run (each with every seed)
  config.seeds = (0, 1, 2, 3, 4)  # initialisation and batch order of each run

  config.data = ml_collections.ConfigDict()
  config.data.name = "split_digits"  # split_digits | permuted_digits | omniglot_alphabets
  config.data.classes_per_task = 2  # split_digits: digits per task
  config.data.num_tasks = 5  # permuted_digits: tasks (permutations)
  config.data.test_fraction = 0.2  # digits: each class's share held out for testing
  config.data.split_seed = 0  # the train/test split (and permutations): fixed across seeds
  config.data.source = "zips"  # omniglot: zips ($MEMJAX_DATA_DIR/omniglot) | random (tests)
  config.data.data_dir = ""  # omniglot: the zips' folder ('' = $MEMJAX_DATA_DIR/omniglot)
  config.data.image_size = 28  # omniglot: image side
  config.data.num_alphabets = 0  # omniglot: the first this many alphabets (0 = all)
  config.data.num_train_drawers = 15  # omniglot: drawers per character trained on (of 20)
  config.data.random_characters = 12  # omniglot source=random: characters generated

  config.model = ml_collections.ConfigDict()
  config.model.kind = "mlp"  # mlp | conv
  config.model.hidden_sizes = (100, 100)  # mlp: ReLU hidden layers
  config.model.num_filters = 32  # conv: filters per block
  config.model.num_blocks = 3  # conv: 3x3 stride-2 blocks

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.lr = 1e-3  # Adam step size

  config.batch_size = 32  # examples of the current task per step
  config.steps_per_task = 500  # optimizer steps on each task
  config.rounds_per_task = 1  # fit rounds per task (a checkpoint can follow each)
  config.checkpoint_every_rounds = 1  # rounds between Orbax checkpoints

  config.ewc = ml_collections.ConfigDict()
  # lambda: 1e3 from {10, 100, 1e3, 1e4, 1e5} on Split-digits task-IL, seed 100 (not a
  # reported seed); class-IL EWC is ~20% at every one of {100, 1e3, 1e4, 1e5, 1e6}.
  config.ewc.strength = 1e3
  config.ewc.fisher = "exact"  # exact | sampled (true Fisher) | empirical
  config.ewc.num_examples = 256  # examples of the task the Fisher averages over (drawn)
  config.ewc.chunk_size = 64  # examples differentiated at once

  config.online_ewc = ml_collections.ConfigDict()
  config.online_ewc.strength = 1e3  # lambda (chosen as config.ewc.strength)
  config.online_ewc.decay = 1.0  # gamma: the old Fisher's weight at each new task

  config.lwf = ml_collections.ConfigDict()
  config.lwf.temperature = 2.0  # Li & Hoiem's T
  config.lwf.weight = 1.0  # the distillation term's weight
  # sum: ce + weight * distill (Li & Hoiem's fixed lambda); tasks: ce / (t + 1) + weight *
  # t / (t + 1) * distill after t earlier tasks (van de Ven & Tolias's weighting)
  config.lwf.balance = "sum"

  config.replay = ml_collections.ConfigDict()
  config.replay.capacity = 200  # examples kept (of 1,438 training digits)
  config.replay.policy = "reservoir"  # reservoir | fifo
  config.replay.balance = "class"  # class | task | none: how replayed examples are drawn
  config.replay.batch_size = 32  # replayed examples per step

  config.distill = ml_collections.ConfigDict()  # replay_distill's soft targets
  config.distill.temperature = 2.0
  config.distill.weight = 1.0

  config.compare_paper = True  # print van de Ven & Tolias's Split-MNIST class-IL figures
  config.plots = True  # accuracy_per_task.png
  config.progress_bar = True
  return config
