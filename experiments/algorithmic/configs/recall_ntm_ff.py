"""NTM with a feed-forward controller on associative recall (Graves et al. 2014, 4.3).

Command:
  python -m experiments.algorithmic.main \
      --config=experiments/algorithmic/configs/recall_ntm_ff.py --workdir=runs/recall_ntm_ff

Expected: the paper's feed-forward NTM learns associative recall faster than the NTM with
an LSTM controller (configs/recall_ntm.py); see ``sequences_to_converge`` in results.json.

Measured (2026-11-24, CPU, batch 1, RMSProp lr 1e-4 momentum 0.9, 100 tanh units, one
read and one write head, memory 128 x 20; converged = held-out bit errors < 0.1 per
sequence on 256 sequences of the training distribution, checked every 500 sequences),
with ``--config.num_steps=30000`` (seed 0 at commit a0f3062, the others at ced3456: the same
math, rounded differently):
  seed 0: converged at 6,500 sequences (0.48 bits, 0.086 bit errors per sequence), 189 s
          including compilation; then 0 to 0.25 bit errors up to 19,000 sequences;
  seed 1 (``--config.seed=1``): converged at 4,500 sequences;
  seed 0, ``--config.optimizer.eps=1e-4`` (Graves's RMSProp epsilon): at 8,000.
Unsolved: all three runs later collapse to chance (about 17 bits, 7 bit errors per
sequence) at about 19,500, 20,500 and 26,500 sequences and do not recover by 30,000;
``--config.stop_when_converged=True`` keeps the converged parameters. Two tries against
the collapse that do not learn at all within 30,000 sequences (ced3456): a slower RMSProp
second moment (``--config.optimizer.decay=0.999``: 5.3 bit errors) and Adam at lr 1e-4
(``--config.optimizer.name=adam``: 6.2 bit errors).
At 1f439d8 (sharpening in log space), ``--config.seed=0..3``, 30,000 sequences each: seeds 2
and 3 converge at 5,000 / 5,500 and stay converged; seed 0 does not learn (6.5 bit errors);
seed 1 reaches 1.7 and collapses at ~23,000 (training cost ~7 -> ~35 bits, parameter norms
flat). Those runs clipped the controller outputs, head parameters and logits with
``jnp.clip`` ('hard'), whose gradient is 0 beyond the bound: an output saturated on the wrong
side, or a head parameter pinned at the bound, cannot be pulled back (the collapsing run's
worst sequences cost 100-200 bits throughout, confidently wrong outputs at the +-20 logit
bound). With ``config.model.clip='soft'`` (``20 tanh(x / 20)``, the same range with a
gradient everywhere; the default here since), seeds 0-3 converge at 7,500 / 5,000 / 8,000 /
5,000 sequences and are converged at 30,000 (0.0-0.03 bit errors); at 60,000 seeds 0, 2, 3
still are (0.0-0.04; at 12 items 0.02 / 0.14 / 0.66) and seed 1 collapsed at ~31,000
(training cost 0.2 -> 21 bits within 1,500 sequences). Seed 0 rose to 3.8 once in between
and recovered. The collapse: after ~400 converged steps RMSProp's second moment had decayed
to 1e-14..1e-18, so one outlier batch (211 bits) was normalised to a ~4.5 lr step of every
parameter at once, carried on by the momentum. With ``config.optimizer.eps=1e-4`` (inside the
square root, as optax's default ``eps_in_sqrt``; the default here since): seeds 0-3 converge
at 6,500 / 10,500 / 9,000 / 5,500 and are all converged at 60,000 (0.0-0.035 bit errors; at
12 items 0.18 / 0.22 / 0.29 / 0.04); seed 2 collapsed once, at 51,000, and recovered by
52,500.
"""

from experiments.algorithmic.configs import recall_ntm


def get_config(arg=None):
  """The associative-recall NTM config with a one-layer tanh controller."""
  config = recall_ntm.get_config(arg)
  config.name = "recall_ntm_ff"
  config.model.controller = "feedforward"  # lstm | feedforward
  # A saturated output or head parameter keeps a gradient: 4 of 4 seeds converge (3 still
  # converged at 60k) with it, 2 of 4 with 'hard' (see above).
  config.model.clip = "soft"
  # eps inside RMSProp's square root (optax): 1e-4 bounds how far a rare outlier batch moves
  # every parameter after a quiet, converged stretch (the collapse): 4 of 4 seeds converged at
  # 60k with it, 3 of 4 with 1e-8 (see above).
  config.optimizer.eps = 1e-4
  return config
