"""Continual learning on Optax: replay, EWC and online EWC, distillation (KD, LwF).

* ``replay``: a replay buffer as pure jittable state (:class:`ReplayState`): FIFO and
  reservoir insertion, uniform and class- or task-balanced sampling, all inside
  ``lax.scan`` / ``jit``.
* ``ewc``: the diagonal Fisher (empirical, exact or sampled true Fisher), EWC and online
  EWC as an Optax transformation (:func:`add_ewc_penalty`, consolidated between tasks)
  or a loss term (:func:`ewc_penalty`).
* ``distill``: :func:`kd_loss` (temperature, T^2 scaling, soft/hard mix),
  :func:`distillation_loss`, :func:`lwf_loss`.
* ``metrics``: average accuracy, forgetting and backward transfer of an accuracy matrix.

Nothing here knows about models or datasets: a loss takes logits, the Fisher takes an
``apply_fn(params, x)``, the buffer takes any pytree of arrays.

Example:
  >>> import optax
  >>> opt = optax.chain(add_ewc_penalty(strength=100.0), optax.adam(1e-3))
  >>> params = {"w": jnp.zeros((64, 10))}
  >>> opt_state = opt.init(params)
  >>> buffer = replay.init_state(200, {"x": jnp.zeros(64), "y": jnp.zeros((), jnp.int32)})
  >>> buffer = replay.add_reservoir(
  ...     buffer, {"x": jnp.ones((32, 64)), "y": jnp.zeros(32, jnp.int32)}, jax.random.key(0))
  >>> int(replay.size(buffer))
  32
"""

from memjax.continual import distill, ewc, metrics, replay
from memjax.continual.distill import distillation_loss, kd_loss, lwf_loss
from memjax.continual.ewc import (
  FISHER_KINDS,
  EWCState,
  add_ewc_penalty,
  classifier_fisher,
  consolidate,
  consolidate_opt_state,
  ewc_gradient,
  ewc_penalty,
  fisher_diagonal,
)
from memjax.continual.metrics import average_accuracy, backward_transfer, forgetting
from memjax.continual.replay import ReplayBuffer, ReplayState, make_buffer

__all__ = [
  "distill",
  "ewc",
  "metrics",
  "replay",
  "distillation_loss",
  "kd_loss",
  "lwf_loss",
  "FISHER_KINDS",
  "EWCState",
  "add_ewc_penalty",
  "classifier_fisher",
  "consolidate",
  "consolidate_opt_state",
  "ewc_gradient",
  "ewc_penalty",
  "fisher_diagonal",
  "average_accuracy",
  "backward_transfer",
  "forgetting",
  "ReplayBuffer",
  "ReplayState",
  "make_buffer",
]
