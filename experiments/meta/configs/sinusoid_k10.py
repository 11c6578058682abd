"""MAML on the sinusoid, K = 10 shots, one inner step (Finn et al. 2017, section 5.1).

Command (target: post-update MSE <= 0.45 on 1,000 test tasks after 10k
meta-iterations; the PyTorch library learn2learn reaches 0.457 +- 0.033 there, its
first-order MAML 0.745):

  python -m experiments.meta.main --config=experiments/meta/configs/sinusoid_k10.py \
      --workdir=runs/meta/sinusoid_k10_maml

Other algorithms: ``--config.algorithm=fomaml`` (or reptile, anil, meta_sgd,
maml_plus_plus); the paper's 70k meta-iterations: ``--config.num_meta_steps=70000``.
Writes ``results.json`` (post-update MSE +- 95% CI after 1 and 10 steps), the learning
curve and ``adaptation.png`` (a test task before and after 1 and 10 steps, as the paper's
Figure 2).
"""

import ml_collections


def get_config(arg=None):
  """The default sinusoid config (``arg`` is unused)."""
  del arg
  config = ml_collections.ConfigDict()
  config.name = "sinusoid_k10"  # run name (progress bar, plot titles)
  config.seed = 0  # parameters and task stream
  config.algorithm = "maml"  # maml | fomaml | reptile | anil | meta_sgd | maml_plus_plus
  config.num_devices = 1  # data-parallel devices (0 = all); the tasks are split over them

  config.data = ml_collections.ConfigDict()
  config.data.name = "sinusoid"  # sinusoid | omniglot
  config.data.num_shots = 10  # K support points per task
  config.data.num_queries = 10  # query points per training task (MAML: K)

  config.model = ml_collections.ConfigDict()
  config.model.hidden_sizes = (40, 40)  # the paper's 1-40-40-1 ReLU MLP

  config.inner = ml_collections.ConfigDict()
  config.inner.optimizer = "sgd"  # sgd | adam (the inner loop's Optax optimizer)
  config.inner.lr = 0.01  # alpha (the paper's)
  config.inner.num_steps = 1  # inner steps in meta-training
  config.inner.msl_anneal_fraction = 0.5  # maml_plus_plus: multi-step loss annealed over this

  config.outer = ml_collections.ConfigDict()
  config.outer.optimizer = "adam"  # adam | sgd
  config.outer.lr = 1e-3  # beta (the paper's Adam step size)

  config.meta_batch_size = 25  # tasks per meta-step (the paper's)
  config.tasks_per_vmap = 0  # 0: the tasks of a meta-step in one vmap; k: lax.map over k
  config.unroll = False  # unroll the tasks (chunks of tasks_per_vmap) and the inner steps
  config.num_meta_steps = 10_000  # meta-iterations (the paper: 70,000)
  config.steps_per_call = 500  # meta-steps fused in one jitted lax.scan
  config.log_every = 1000  # meta-steps between curve points (evaluation on held-out tasks)
  config.checkpoint_every = 5000  # meta-steps between Orbax checkpoints
  config.progress_bar = True  # tqdm progress bar

  config.eval = ml_collections.ConfigDict()
  config.eval.num_tasks = 1000  # test tasks of the final evaluation
  config.eval.num_queries = 100  # query points scored per test task
  config.eval.num_steps = (1, 10)  # inner steps at test time (each reported)
  config.eval.report_steps = 1  # the steps of the headline figure
  config.eval.curve_num_tasks = 200  # held-out tasks of the learning curve
  config.eval.chunk_size = 250  # test tasks adapted at once (1: one after another)
  config.plots = True  # learning curve and adaptation figure
  return config
