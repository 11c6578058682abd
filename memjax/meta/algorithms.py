"""Meta-learners in the Optax style: MAML, first-order MAML, Reptile, ANIL, Meta-SGD, MAML++.

A meta-learner is a :class:`MetaLearner`, a NamedTuple of pure functions (as an Optax
``GradientTransformation`` is) built from a model's ``apply_fn(params, x)``, a loss over
predictions and an inner optimizer:

    learner = maml(apply_fn, mse, inner_lr=0.01, num_inner_steps=1)
    meta_params = learner.init(params)                        # MetaParams(params, rates)
    loss, metrics = learner.loss(meta_params, tasks)          # a batch of tasks, vmapped
    adapted = learner.adapt(meta_params, support_x, support_y)   # one task

``jax.grad(learner.loss)`` is the meta-gradient each algorithm follows, so any Optax outer
optimizer (and :func:`memjax.meta.make_meta_train_steps`, on ``memjax.train``) trains it.
``loss`` returns the mean post-adaptation query loss for every algorithm; what differs is
its gradient:

* MAML: the true second-order meta-gradient (differentiated through the inner scan).
* first-order MAML: the query gradient at the adapted parameters, ``grad L_q(phi)``.
* Reptile: ``theta - phi`` (the query loss is only reported; the inner loop is not
  differentiated), so the outer ``sgd(eps)`` gives ``theta + eps (mean phi - theta)``.
* ANIL: MAML whose inner loop adapts only the head (a mask or path predicate).
* Meta-SGD: per-parameter inner rates learned with the parameters.
* MAML++ options: per-step (and per-layer) learned rates, the multi-step loss.

``tasks`` is any NamedTuple with ``support_x, support_y, query_x, query_y`` whose leaves
have the task on axis 0 (:class:`Tasks`, ``memjax.data.sinusoid`` or Omniglot episodes).

References:
  Finn, Abbeel, Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
  Networks" (MAML, first-order MAML).
  Nichol, Achiam, Schulman 2018, "On First-Order Meta-Learning Algorithms" (Reptile).
  Raghu et al. 2020, "Rapid Learning or Feature Reuse?" (ANIL).
  Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning".
  Antoniou, Edwards, Storkey 2019, "How to train your MAML" (MAML++: LSLR, MSL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from memjax.meta import inner
from memjax.meta.inner import ApplyFn, LossFn, Mask

MetricFns = Mapping[str, Callable[[jax.Array, jax.Array], jax.Array]]
RATE_KINDS = ("per_parameter", "per_layer")


class Tasks(NamedTuple):
  """A batch of tasks (one task: drop the leading ``T`` axis)."""

  support_x: jax.Array  # [T, K, ...] support inputs
  support_y: jax.Array  # [T, K, ...] support targets
  query_x: jax.Array  # [T, Q, ...] query inputs
  query_y: jax.Array  # [T, Q, ...] query targets


class MetaParams(NamedTuple):
  """What the outer optimizer trains."""

  params: Any  # theta, the model's initial parameters
  rates: Any = ()  # learned inner rates (leaves [R, ...], see inner.init_rates); () = fixed


class MetaLearner(NamedTuple):
  """A meta-learning algorithm as pure functions (build one with :func:`maml` etc.).

  Attributes:
    init: ``fn(params) -> MetaParams``.
    adapt: ``fn(meta_params, x, y, num_steps=None) -> params``: one task's adapted
      parameters (``num_steps`` None = the training setting).
    loss: ``fn(meta_params, tasks, step_weights=None) -> (loss, metrics)``: the meta-
      objective over a batch of tasks; ``step_weights [S]`` weights the multi-step loss.
    score: ``fn(params, x, y) -> {'loss': [], **metrics}``: one task's query scores.
    apply_fn: the model, ``fn(params, x) -> predictions``.
    num_steps: the inner steps of training.
    tasks_per_vmap: how ``loss`` runs over tasks (see :func:`maml`).
    unroll_tasks: see :func:`maml`.
  """

  init: Callable[[Any], MetaParams]
  adapt: Callable[..., Any]
  loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
  score: Callable[[Any, jax.Array, jax.Array], dict[str, jax.Array]]
  apply_fn: ApplyFn
  num_steps: int
  tasks_per_vmap: int | None = None
  unroll_tasks: bool = False


def _check_tasks(tasks: Any) -> None:
  for name in ("support_x", "support_y", "query_x", "query_y"):
    if not hasattr(tasks, name):
      raise TypeError(f"tasks must have a field {name!r} (e.g. memjax.meta.Tasks); got {tasks!r}")
  shapes = {
    n: jnp.shape(getattr(tasks, n)) for n in ("support_x", "support_y", "query_x", "query_y")
  }
  for name, shape in shapes.items():
    if len(shape) < 2:
      raise ValueError(f"tasks.{name} has shape {shape}; expected [tasks, examples, ...]")
  if len({s[0] for s in shapes.values()}) > 1:
    raise ValueError(f"the fields of tasks hold different numbers of tasks: {shapes}")
  for split in ("support", "query"):
    x, y = shapes[f"{split}_x"], shapes[f"{split}_y"]
    if x[1] != y[1]:
      raise ValueError(f"tasks.{split}_x {x} and tasks.{split}_y {y} hold different examples")


def over_tasks(
  fn: Callable[[Any], Any], tasks: Any, tasks_per_vmap: int | None, unroll: bool = False
) -> Any:
  """``fn`` over the tasks (axis 0), stacked: all at once by ``vmap`` (None), else chunks of
  ``tasks_per_vmap`` tasks (1: one task at a time) run by ``lax.map`` or, with ``unroll``,
  by a Python loop (each chunk inlined in the program)."""
  if tasks_per_vmap is None:
    return jax.vmap(fn)(tasks)
  if not unroll:
    return jax.lax.map(fn, tasks, batch_size=tasks_per_vmap if tasks_per_vmap > 1 else None)
  n = jax.tree.leaves(tasks)[0].shape[0]
  chunks = []
  for start in range(0, n, tasks_per_vmap):
    chunk = jax.tree.map(lambda a, s=start: a[s : s + tasks_per_vmap], tasks)
    chunks.append(jax.vmap(fn)(chunk))
  return jax.tree.map(lambda *parts: jnp.concatenate(parts), *chunks)


def _scorer(apply_fn: ApplyFn, loss_fn: LossFn, metric_fns: MetricFns):
  def score(params, x, y):
    predictions = apply_fn(params, x)
    out = {"loss": loss_fn(predictions, y)}
    out.update({name: fn(predictions, y) for name, fn in metric_fns.items()})
    return out

  return score


def multi_step_weights(num_steps: int, progress: float, min_weight: float = 0.03) -> jax.Array:
  """MAML++'s multi-step loss weights: uniform at ``progress`` 0, the last step's at 1.

  Args:
    num_steps: S inner steps.
    progress: the fraction of the annealing done, in [0, 1].
    min_weight: the floor of every non-final weight, in units of ``1 / S``.

  Returns:
    [S] float32 weights summing to 1.
  """
  s = int(num_steps)
  early = max((1.0 - float(progress)) / s, min_weight / s) if s > 1 else 0.0
  weights = [early] * (s - 1) + [1.0 - early * (s - 1)]
  return jnp.asarray(weights, jnp.float32)


def maml(
  apply_fn: ApplyFn,
  loss_fn: LossFn,
  *,
  inner_lr: float = 0.01,
  num_inner_steps: int = 1,
  inner_optimizer: optax.GradientTransformation | None = None,
  first_order: bool = False,
  learn_rates: str | None = None,
  per_step_rates: bool = False,
  multi_step_loss: bool = False,
  inner_mask: Mask = None,
  metric_fns: MetricFns | None = None,
  tasks_per_vmap: int | None = None,
  unroll_tasks: bool = False,
  unroll_inner: bool = False,
) -> MetaLearner:
  """MAML and its variants (each a config away; see :func:`fomaml`, :func:`anil`, ...).

  Args:
    apply_fn: ``fn(params, x [K, ...]) -> predictions [K, ...]`` (e.g. a Flax module's
      ``lambda p, x: model.apply({'params': p}, x)``).
    loss_fn: ``fn(predictions, y) -> []`` (:func:`memjax.meta.mse`, ``cross_entropy``).
    inner_lr: the inner step size (the initial rate when rates are learned).
    num_inner_steps: S inner steps in training.
    inner_optimizer: any Optax optimizer; default ``sgd(inner_lr)``, or ``sgd(1.0)`` with
      learned rates (which then scale its updates).
    first_order: first-order MAML (no second derivatives).
    learn_rates: None, ``'per_parameter'`` (Meta-SGD) or ``'per_layer'`` (one per leaf).
    per_step_rates: a learned rate for each inner step (MAML++ LSLR).
    multi_step_loss: MAML++'s loss: the query losses after every step, weighted.
    inner_mask: which parameters the inner loop adapts (ANIL); None = all.
    metric_fns: name -> ``fn(predictions, y) -> []`` reported on the query set.
    tasks_per_vmap: None = every task of a batch in one ``vmap``; k = ``lax.map`` over
      chunks of k tasks (1: one after another). On CPU a convolution under a ``vmap`` over
      per-task (adapted) kernels becomes a grouped convolution, many times slower than
      running the tasks one after another; with a data mesh keep None (a ``lax.map``
      runs over the split task axis).
    unroll_tasks: run the chunks of ``tasks_per_vmap`` tasks by a Python loop rather than
      ``lax.map`` (compile time grows with the tasks). On CPU (jaxlib 0.10.2) XLA runs a
      convolution's weight gradient ~20x slower inside a loop (``lax.map`` / ``scan``)
      than outside one, so conv nets meta-train fastest unrolled.
    unroll_inner: unroll the inner loop's ``lax.scan`` (the same reason, for S > 1).

  Returns:
    A :class:`MetaLearner`.

  Raises:
    ValueError: a non-positive ``num_inner_steps`` or ``tasks_per_vmap``, or an unknown
      ``learn_rates``.
  """
  num_inner_steps = int(num_inner_steps)
  if num_inner_steps < 1:
    raise ValueError(f"num_inner_steps={num_inner_steps} must be >= 1")
  if learn_rates not in (None, *RATE_KINDS):
    raise ValueError(f"learn_rates={learn_rates!r} must be None or one of {RATE_KINDS}")
  if tasks_per_vmap is not None and int(tasks_per_vmap) < 1:
    raise ValueError(f"tasks_per_vmap={tasks_per_vmap} must be None or >= 1")
  if per_step_rates and learn_rates is None:
    raise ValueError("per_step_rates needs learn_rates ('per_layer' or 'per_parameter')")
  if inner_optimizer is None:
    inner_optimizer = optax.sgd(1.0 if learn_rates else inner_lr)
  metric_fns = dict(metric_fns or {})
  score = _scorer(apply_fn, loss_fn, metric_fns)

  def init(params):
    if learn_rates is None:
      return MetaParams(params, ())
    steps = num_inner_steps if per_step_rates else 1
    rates = inner.init_rates(
      params, inner_lr, num_steps=steps, per_parameter=learn_rates == "per_parameter"
    )
    return MetaParams(params, rates)

  def adapt(meta_params, x, y, num_steps=None, observe=None):
    return inner.adapt(
      meta_params.params,
      x,
      y,
      apply_fn=apply_fn,
      loss_fn=loss_fn,
      optimizer=inner_optimizer,
      num_steps=num_inner_steps if num_steps is None else num_steps,
      mask=inner_mask,
      rates=meta_params.rates if learn_rates else None,
      first_order=first_order,
      observe=observe,
      unroll=unroll_inner,
    )

  def task_loss(meta_params, task, step_weights):
    observe = None
    if multi_step_loss:
      observe = lambda p: loss_fn(apply_fn(p, task.query_x), task.query_y)
    adapted, step_losses = adapt(meta_params, task.support_x, task.support_y, observe=observe)
    scores = score(adapted, task.query_x, task.query_y)
    objective = scores["loss"]
    if multi_step_loss:
      objective = jnp.sum(step_weights.astype(step_losses.dtype) * step_losses)
    return objective, scores

  def loss(meta_params, tasks, step_weights=None):
    _check_tasks(tasks)
    if step_weights is None:
      step_weights = jnp.full((num_inner_steps,), 1.0 / num_inner_steps)
    step_weights = jnp.asarray(step_weights)
    if step_weights.shape != (num_inner_steps,):
      raise ValueError(f"step_weights {step_weights.shape} must be [{num_inner_steps}]")
    objective, scores = over_tasks(
      lambda task: task_loss(meta_params, task, step_weights), tasks, tasks_per_vmap, unroll_tasks
    )
    metrics = {f"query_{k}": jnp.mean(v) for k, v in scores.items()}
    return jnp.mean(objective), metrics

  return MetaLearner(
    init, adapt, loss, score, apply_fn, num_inner_steps, tasks_per_vmap, unroll_tasks
  )


def fomaml(apply_fn: ApplyFn, loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
  """First-order MAML: :func:`maml` with ``first_order=True`` (same arguments)."""
  return maml(apply_fn, loss_fn, first_order=True, **kwargs)


def anil(apply_fn: ApplyFn, loss_fn: LossFn, *, head: str | Mask = "head", **kwargs: Any):
  """ANIL: :func:`maml` whose inner loop adapts only the head.

  Args:
    apply_fn, loss_fn: as :func:`maml`.
    head: the name of a path component (a Flax submodule, e.g. ``'head'``), or any mask
      (a pytree of bools, a predicate ``fn(path, leaf)``).
    **kwargs: the other arguments of :func:`maml`.
  """
  mask = inner.path_contains(head) if isinstance(head, str) else head
  return maml(apply_fn, loss_fn, inner_mask=mask, **kwargs)


def meta_sgd(apply_fn: ApplyFn, loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
  """Meta-SGD: :func:`maml` with a learned inner rate per parameter (``inner_lr`` its start)."""
  return maml(apply_fn, loss_fn, learn_rates="per_parameter", **kwargs)


def maml_plus_plus(apply_fn: ApplyFn, loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
  """MAML with MAML++'s per-layer per-step learned rates and multi-step loss."""
  kwargs = {"learn_rates": "per_layer", "per_step_rates": True, "multi_step_loss": True, **kwargs}
  return maml(apply_fn, loss_fn, **kwargs)


def reptile(
  apply_fn: ApplyFn,
  loss_fn: LossFn,
  *,
  inner_lr: float = 0.01,
  num_inner_steps: int = 5,
  inner_optimizer: optax.GradientTransformation | None = None,
  inner_mask: Mask = None,
  metric_fns: MetricFns | None = None,
  tasks_per_vmap: int | None = None,
  unroll_tasks: bool = False,
  unroll_inner: bool = False,
) -> MetaLearner:
  """Reptile: the loss's gradient is ``theta - mean_i phi_i`` (phi_i adapted on task i).

  The inner loop runs on the support set (not differentiated); ``loss`` reports the
  mean post-adaptation query loss as its value. With the outer ``optax.sgd(eps)`` one
  meta-step is ``theta <- theta + eps (mean_i phi_i - theta)``, Reptile's batched update.

  Args: as :func:`maml` (``inner_optimizer`` default ``sgd(inner_lr)``; the paper uses Adam).
  """
  base = maml(
    apply_fn,
    loss_fn,
    inner_lr=inner_lr,
    num_inner_steps=num_inner_steps,
    inner_optimizer=inner_optimizer,
    first_order=True,
    inner_mask=inner_mask,
    metric_fns=metric_fns,
    tasks_per_vmap=tasks_per_vmap,
    unroll_tasks=unroll_tasks,
    unroll_inner=unroll_inner,
  )

  def task_loss(meta_params, task):
    adapted, _ = base.adapt(meta_params, task.support_x, task.support_y)
    adapted = jax.lax.stop_gradient(adapted)
    scores = base.score(adapted, task.query_x, task.query_y)
    diffs = jax.tree.map(lambda t, p: jnp.sum((t - p) ** 2), meta_params.params, adapted)
    surrogate = 0.5 * sum(jax.tree.leaves(diffs))
    # value: the query loss; gradient: theta - phi.
    objective = jax.lax.stop_gradient(scores["loss"]) + surrogate - jax.lax.stop_gradient(surrogate)
    return objective, scores

  def loss(meta_params, tasks, step_weights=None):
    del step_weights
    _check_tasks(tasks)
    objective, scores = over_tasks(lambda task: task_loss(meta_params, task), tasks, tasks_per_vmap)
    return jnp.mean(objective), {f"query_{k}": jnp.mean(v) for k, v in scores.items()}

  return base._replace(loss=loss)


ALGORITHMS = {
  "maml": maml,
  "fomaml": fomaml,
  "reptile": reptile,
  "anil": anil,
  "meta_sgd": meta_sgd,
  "maml_plus_plus": maml_plus_plus,
}


def make_learner(name: str, apply_fn: ApplyFn, loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
  """The learner called ``name`` (a key of :data:`ALGORITHMS`), built with ``kwargs``."""
  if name not in ALGORITHMS:
    raise ValueError(f"unknown meta-learning algorithm {name!r}; choose one of {list(ALGORITHMS)}")
  return ALGORITHMS[name](apply_fn, loss_fn, **kwargs)


__all__ = [
  "Tasks",
  "MetaParams",
  "MetaLearner",
  "multi_step_weights",
  "over_tasks",
  "maml",
  "fomaml",
  "anil",
  "meta_sgd",
  "maml_plus_plus",
  "reptile",
  "ALGORITHMS",
  "make_learner",
]
