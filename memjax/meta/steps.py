"""Meta-training on ``memjax.train``: the state and many meta-steps per dispatch.

The meta-objective :attr:`MetaLearner.loss` is an ordinary loss over the meta-parameters,
so :func:`memjax.train.make_train_steps` trains it: each meta-step samples a batch of
tasks on device from its key (``sample_tasks(key, context)``), differentiates the loss (the inner
loops vmapped over the tasks) and applies the outer Optax optimizer, ``steps_per_call``
meta-steps in one jitted ``lax.scan``. With a data mesh the tasks are split over its
devices (their axis 0) and ``jit`` adds the all-reduce of the meta-gradient. The state is
a :class:`memjax.train.TrainState` whose ``params`` is the :class:`MetaParams`, so
:func:`memjax.train.fit` checkpoints and resumes it.

Example:
  >>> import optax
  >>> from memjax.meta import Tasks, maml, mse
  >>> learner = maml(lambda p, x: x @ p["w"], mse, inner_lr=0.1)
  >>> sample = lambda key, context: Tasks(*jax.random.normal(key, (4, 8, 5, 1)))  # 8 tasks
  >>> opt = optax.adam(1e-2)
  >>> state = create_state(learner, {"w": jnp.zeros((1, 1))}, opt, jax.random.key(0))
  >>> steps = make_meta_train_steps(learner, opt, sample, steps_per_call=10)
  >>> state, metrics = steps(state)                 # 10 meta-steps in one dispatch
  >>> int(state.step), metrics["query_loss"].shape
  (10, (10,))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from memjax.meta.algorithms import MetaLearner
from memjax.train.loop import TrainState, make_train_steps


def create_state(
  learner: MetaLearner,
  params: Any,
  outer_optimizer: optax.GradientTransformation,
  rng: jax.Array,
  extra: Any = (),
) -> TrainState:
  """A :class:`memjax.train.TrainState` at step 0 over ``learner.init(params)``.

  Args:
    learner: the meta-learner.
    params: the model's initial parameters.
    outer_optimizer: the outer Optax optimizer.
    rng: the key of the task stream.
    extra: the caller's own state.

  Returns:
    The state; its ``params`` are a copy (the caller's ``params`` stay usable).
  """
  # A copy: the train steps donate the state, which must not delete the caller's params.
  meta_params = jax.tree.map(jnp.copy, learner.init(params))
  return TrainState.create(meta_params, outer_optimizer, rng, extra)


def meta_loss(learner: MetaLearner):
  """``learner.loss`` as a ``memjax.train`` loss ``fn(params, tasks, rng, context)``.

  ``context`` may be a dict holding ``'step_weights'`` ([S], the multi-step loss's weights).
  """

  def loss(meta_params, tasks, rng, context):
    del rng
    weights = context.get("step_weights") if isinstance(context, Mapping) else None
    return learner.loss(meta_params, tasks, weights)

  return loss


def make_meta_train_steps(
  learner: MetaLearner,
  outer_optimizer: optax.GradientTransformation,
  sample_tasks: Callable[[jax.Array, Any], Any] | None,
  *,
  steps_per_call: int | None = None,
  mesh: Mesh | None = None,
  donate: bool = True,
  xla_options: Mapping[str, str] | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted ``fn(state, xs=None, context=None) -> (state, metrics)`` of many meta-steps.

  Args:
    learner: the meta-learner.
    outer_optimizer: the outer Optax optimizer (the one of :func:`create_state`).
    sample_tasks: ``fn(key, context) -> tasks`` run on device in every meta-step (tasks
      on axis 0); ``context`` is the one passed to the returned function, the place for
      data arrays (e.g. ``{'images': ...}``: arguments of the compiled step, not constants
      baked into it). None = the tasks come from the scanned ``xs`` (``[steps, T, ...]``).
    steps_per_call: meta-steps per call when tasks are sampled.
    mesh: a data mesh (:func:`memjax.train.data_mesh`); the tasks are split over it.
    donate: donate the input state's buffers.
    xla_options: XLA compile options (see :func:`memjax.train.make_train_steps`); None =
      XLA's defaults. (``memjax.train``'s CPU choice, no YNNPACK fusions, is ~1.15x slower
      on the sinusoid MAML and equal on the Omniglot conv net: ``benchmarks/meta.py
      --xla_options``.)

  Returns:
    The function of :func:`memjax.train.make_train_steps`; ``metrics`` holds ``loss``
    and the learner's ``query_*`` means, one per meta-step.
  """
  if sample_tasks is None:
    batch_fn = None
  else:

    def batch_fn(x, key, context):
      return sample_tasks(key, context) if x is None else x

  return make_train_steps(
    meta_loss(learner),
    outer_optimizer,
    num_steps=steps_per_call,
    batch_fn=batch_fn,
    mesh=mesh,
    donate=donate,
    xla_options={} if xla_options is None else xla_options,
  )


__all__ = ["create_state", "meta_loss", "make_meta_train_steps"]
