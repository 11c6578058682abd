"""NTM (LSTM controller) on the copy task, lengths 1-20 (Graves et al. 2014, section 4.1).

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/copy_ntm.py --workdir=runs/copy_ntm

Expected: the held-out cost falls below 0.1 bit errors per sequence (lengths 1-20) well
before the LSTM baseline (configs/copy_lstm.py) and stays low at length 40; see
``results.json`` (``sequences_to_converge``, ``length_generalisation``) and the PNGs.

Measured at 1f439d8 (2-core Xeon, AVX-512), ``--config.seed=0..3``: converged at 6,000 /
5,500 / 4,500 / 5,500 sequences; after 60,000 sequences 0 bit errors per sequence at lengths
10, 20, 40, 80 and 120 for every seed (after 20,000, length 80 had 1.2 / 0 / 1.3 / 5.0).
"""

import ml_collections


def get_config(arg=None):
  """The default copy-task NTM config (``arg`` is unused)."""
  del arg
  config = ml_collections.ConfigDict()
  config.name = "copy_ntm"  # run name (progress bar, plot titles)
  config.seed = 0  # parameters and data stream
  # (): one run from config.seed in the workdir; (0, 1, 2, 3): one run per seed under
  # workdir/runs/seed=S/, results.json with each seed's figures, mean, sd and counts
  config.seeds = ()

  config.task = ml_collections.ConfigDict()
  config.task.name = "copy"  # copy | repeat_copy | associative_recall
  config.task.min_length = 1  # shortest training sequence
  config.task.max_length = 20  # longest training sequence
  config.task.num_bits = 8  # bits per vector (plus one delimiter channel)

  config.model = ml_collections.ConfigDict()
  config.model.name = "ntm"  # ntm | lstm
  config.model.num_slots = 128  # N slots
  config.model.slot_size = 20  # W per slot
  config.model.num_read_heads = 1  # R
  config.model.num_write_heads = 1  # Wh
  config.model.controller = "lstm"  # lstm | feedforward
  config.model.controller_size = 100  # controller hidden size
  config.model.shift_range = 1  # shifts -1, 0, +1
  config.model.clip_value = 20.0  # controller output / logit clipping (Collier & Beel 2018)
  config.model.clip = "hard"  # hard: jnp.clip | soft: clip_value * tanh(x / clip_value)

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "rmsprop"  # rmsprop | adam
  config.optimizer.learning_rate = 1e-4  # step size
  config.optimizer.decay = 0.95  # RMSProp decay (unused by Adam)
  config.optimizer.momentum = 0.9  # RMSProp momentum (unused by Adam)
  config.optimizer.eps = 1e-8  # optimiser epsilon
  config.optimizer.grad_clip_norm = 10.0  # global gradient norm clip

  config.batch_size = 1  # sequences per step (the paper and pytorch-ntm use 1)
  config.num_devices = 1  # data-parallel devices (0 = all); batch 1 cannot be split
  config.compute_dtype = ""  # '' = float32; 'bfloat16': bf16 compute, float32 master weights
  config.num_steps = 60_000  # optimiser steps (upper bound)
  config.steps_per_call = 10  # steps fused in one jitted lax.scan
  config.length_buckets = 4  # static lengths a batch is cut to (speed only, same updates)
  config.length_groups = 0  # >0: each batch from one of this many length ranges (opt-in)
  config.log_every = 500  # steps between curve points (held-out evaluation)
  config.checkpoint_every = 2000  # steps between Orbax checkpoints
  config.eval_batch_size = 256  # held-out sequences per evaluation
  config.converged_bit_errors = 0.1  # converged when held-out bit errors / sequence < this
  config.stop_when_converged = False  # stop training at convergence
  config.eval_lengths = (10, 20, 40, 80, 120)  # length generalisation
  config.plots = True  # write the weighting plots
  config.plot_lengths = (20, 40)  # lengths of the weighting plots
  config.progress_bar = True  # tqdm progress bar
  config.paper_note = (
    "Graves et al. 2014 Fig. 3: NTM (LSTM controller) reaches near-zero cost on copy "
    "(lengths 1-20) far faster than a 3x256 LSTM; Fig. 4-5: NTM copies length 40+ well, "
    "the LSTM fails beyond 20."
  )
  return config
