"""NTM on associative recall: 2-6 items of 3 six-bit vectors (Graves et al. 2014, 4.3).

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/recall_ntm.py --workdir=runs/recall_ntm

Expected: the held-out bit errors fall below 0.1 per sequence (``sequences_to_converge``
in results.json); evaluation at 6, 8, 12 items.

Measured (CPU, batch 1; converged = held-out bit errors < 0.1 per sequence): NOT converged.
With these paper settings (RMSProp lr 1e-4, momentum 0.9; ``--config.num_steps=250000``),
250,000 sequences end at 5.3 bits and 1.15 bit errors per sequence (falling slowly: 3.8 at
50k, 2.4 at 100k); with
``--config.optimizer.learning_rate=3e-4``, 3.5 bit errors after 60,000 sequences. The
feed-forward controller (configs/recall_ntm_ff.py) converges in 4,500-8,000 sequences.
Those runs bounded the controller outputs, head parameters and logits with ``jnp.clip``.
With ``config.model.clip='soft'`` (the default here since; see recall_ntm_ff.py),
``--config.seed=0..3 --config.num_steps=60000``: seeds 1 and 2 converge at 17,500 / 16,500
sequences and are converged at 60,000 (0.0 bit errors; at 6 / 8 / 12 items 0 / 0 / 0.09 and
0.05 / 0 / 0); seeds 0 and 3 have not converged at 60,000 (3.8 / 3.5 bit errors).
"""

import ml_collections

from experiments.algorithmic.configs import copy_ntm


def get_config(arg=None):
  """The copy NTM config with the associative-recall task."""
  config = copy_ntm.get_config(arg)
  config.name = "recall_ntm"
  config.task = ml_collections.ConfigDict()
  config.task.name = "associative_recall"  # copy | repeat_copy | associative_recall
  config.model.clip = "soft"  # a gradient beyond the +-clip_value bound (see the docstring)
  config.task.min_items = 2  # fewest items
  config.task.max_items = 6  # most items
  config.task.item_length = 3  # vectors per item
  config.task.num_bits = 6  # bits per vector (plus two delimiter channels)
  config.eval_lengths = (6, 8, 12)  # numbers of items to evaluate
  config.plot_lengths = (6,)  # numbers of items in the weighting plots
  config.paper_note = (
    "Graves et al. 2014 Fig. 10: NTM (LSTM controller) learns associative recall in about "
    "200k-300k sequences (feed-forward controller faster); the LSTM does not within 1M."
  )
  return config
