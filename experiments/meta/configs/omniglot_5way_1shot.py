"""MAML on Omniglot, 5-way 1-shot, on the minimal background splits (Finn et al. 2017, 5.2).

Command:

  MEMJAX_DATA_DIR=../shared/data python -m experiments.meta.main \
      --config=experiments/meta/configs/omniglot_5way_1shot.py \
      --workdir=runs/meta/omniglot_5way_1shot_maml

Data: ``memjax.data.omniglot`` over ``images_background_small1.zip`` and
``images_background_small2.zip`` (242 characters after de-duplication; the paper used the
1,623 of the full set, 1,200 for meta-training). 60 characters are held out for meta-test
(``data.num_test``); each character's four rotations are four classes, as in MAML. Model:
the paper's 4 blocks of 3x3 convolutions (64 filters, stride 2), batch norm (transductive:
the batch's statistics) and ReLU, then a linear head. Inner loop: one step of 0.4 in
training, 3 at test time (the paper). The paper's MAML: 98.7 +- 0.4% on the full set.
Other algorithms: ``--config.algorithm=fomaml`` (reptile, anil, meta_sgd, maml_plus_plus).
"""

import ml_collections


def get_config(arg=None):
  """The default Omniglot config (``arg`` is unused)."""
  del arg
  config = ml_collections.ConfigDict()
  config.name = "omniglot_5way_1shot"  # run name (progress bar, plot titles)
  config.seed = 0  # parameters and task stream
  config.algorithm = "maml"  # maml | fomaml | reptile | anil | meta_sgd | maml_plus_plus
  config.num_devices = 1  # data-parallel devices (0 = all); the tasks are split over them

  config.data = ml_collections.ConfigDict()
  config.data.name = "omniglot"  # sinusoid | omniglot
  config.data.source = "zips"  # zips (memjax.data.omniglot) | random (random images, tests)
  config.data.data_dir = ""  # the folder of the zips; '' = $MEMJAX_DATA_DIR/omniglot
  config.data.tfds_dir = ""  # prepared-data cache; '' = $TFDS_DATA_DIR, ~/tensorflow_datasets
  config.data.image_size = 28  # S (the paper's 28x28)
  config.data.num_test = 60  # characters (or alphabets) held out for meta-test
  config.data.split_by = "character"  # character (MAML) | alphabet
  config.data.split_seed = 0  # seed of the split
  config.data.num_ways = 5  # N classes per task
  config.data.num_shots = 1  # K support examples per class
  config.data.num_queries = 15  # query examples per class in meta-training
  config.data.random_characters = 40  # data.source=random: characters of random images

  config.model = ml_collections.ConfigDict()
  config.model.num_filters = 64  # filters of each 3x3 convolution (the paper's)
  config.model.num_blocks = 4  # conv + batch norm + ReLU blocks, stride 2

  config.inner = ml_collections.ConfigDict()
  config.inner.optimizer = "sgd"  # sgd | adam
  config.inner.lr = 0.4  # alpha (the paper's 5-way value)
  config.inner.num_steps = 1  # inner steps in meta-training
  config.inner.msl_anneal_fraction = 0.5  # maml_plus_plus: multi-step loss annealed over this

  config.outer = ml_collections.ConfigDict()
  config.outer.optimizer = "adam"  # adam | sgd
  config.outer.lr = 1e-3  # beta

  config.meta_batch_size = 32  # tasks per meta-step (the paper's)
  # 1: the tasks one after another (lax.map): on CPU a vmap over per-task conv kernels
  # is a grouped convolution, ~17x slower; 0: one vmap (accelerators, several devices)
  config.tasks_per_vmap = 1
  # unroll the tasks and the inner steps (no loop in the program): on CPU XLA runs a conv's
  # weight gradient ~20x slower inside a loop; compile time grows with the tasks
  config.unroll = True
  config.num_meta_steps = 60_000  # meta-iterations (the paper's reference code)
  config.steps_per_call = 100  # meta-steps fused in one jitted lax.scan
  config.log_every = 1000  # meta-steps between curve points
  config.checkpoint_every = 5000  # meta-steps between Orbax checkpoints
  config.progress_bar = True  # tqdm progress bar

  config.eval = ml_collections.ConfigDict()
  config.eval.num_tasks = 1000  # test tasks (held-out characters) of the final evaluation
  config.eval.num_queries = 5  # query examples per class scored per test task
  config.eval.num_steps = (3,)  # inner steps at test time (the paper: 3)
  config.eval.report_steps = 3  # the steps of the headline figure
  config.eval.curve_num_tasks = 100  # held-out tasks of the learning curve
  config.eval.chunk_size = 1  # test tasks adapted at once (1: one after another, as above)
  config.plots = True  # accuracy against meta-iterations
  return config
