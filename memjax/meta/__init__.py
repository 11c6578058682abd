"""Meta-learning on Optax: MAML, first-order MAML, Reptile, ANIL, Meta-SGD, MAML++ options.

* ``inner``: the inner loop (:func:`adapt`, a ``lax.scan`` of any Optax optimizer), masks
  and learned rates, the losses :func:`mse` / :func:`cross_entropy` and :func:`accuracy`.
* ``algorithms``: :class:`MetaLearner` (pure ``init / adapt / loss / score``) and its
  constructors :func:`maml`, :func:`fomaml`, :func:`reptile`, :func:`anil`,
  :func:`meta_sgd`, :func:`maml_plus_plus`.
* ``steps``: the meta-training state and jitted steps on :mod:`memjax.train`.
* ``evaluation``: :func:`evaluate`: adapt on support, score on query, mean and 95% CI over
  many tasks.

Example:
  >>> import flax.linen as nn, optax
  >>> model = nn.Sequential([nn.Dense(40), nn.relu, nn.Dense(40), nn.relu, nn.Dense(1)])
  >>> params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
  >>> learner = maml(lambda p, x: model.apply({"params": p}, x), mse, inner_lr=0.01)
  >>> meta_params = learner.init(params)
  >>> tasks = Tasks(*(jnp.ones((4, 10, 1)) for _ in range(4)))
  >>> loss, metrics = learner.loss(meta_params, tasks)
  >>> sorted(metrics)
  ['query_loss']
"""

from memjax.meta import algorithms, evaluation, inner, steps
from memjax.meta.algorithms import (
  ALGORITHMS,
  MetaLearner,
  MetaParams,
  Tasks,
  anil,
  fomaml,
  make_learner,
  maml,
  maml_plus_plus,
  meta_sgd,
  multi_step_weights,
  over_tasks,
  reptile,
)
from memjax.meta.evaluation import confidence_interval, evaluate, make_task_scores, summarize
from memjax.meta.inner import (
  accuracy,
  adapt,
  cross_entropy,
  init_rates,
  leaf_mask,
  leaf_paths,
  mse,
  path_contains,
)
from memjax.meta.steps import create_state, make_meta_train_steps, meta_loss

__all__ = [
  "algorithms",
  "evaluation",
  "inner",
  "steps",
  "ALGORITHMS",
  "MetaLearner",
  "MetaParams",
  "Tasks",
  "anil",
  "fomaml",
  "make_learner",
  "maml",
  "maml_plus_plus",
  "meta_sgd",
  "multi_step_weights",
  "over_tasks",
  "reptile",
  "confidence_interval",
  "make_task_scores",
  "summarize",
  "evaluate",
  "accuracy",
  "adapt",
  "cross_entropy",
  "init_rates",
  "leaf_mask",
  "leaf_paths",
  "mse",
  "path_contains",
  "create_state",
  "make_meta_train_steps",
  "meta_loss",
]
