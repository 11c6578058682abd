"""Elastic weight consolidation: diagonal Fisher, EWC and online EWC, in the Optax style.

After a task, the parameters ``theta_t`` and the diagonal of the Fisher information
``F_t`` at them are *consolidated* into an :class:`EWCState`; while later tasks train,
the penalty

    strength / 2 * sum_t sum_i F_t,i (theta_i - theta_t,i)^2        (EWC)

pulls the parameters that mattered for the old tasks back towards their old values.
Online EWC keeps one anchor (the latest parameters) and a decayed sum of Fishers,
``F <- decay * F + F_t``.

The sum over tasks is stored in constant memory: with ``P = sum_t F_t`` and the
Fisher-weighted mean ``a = sum_t F_t theta_t / P`` it equals ``sum P (theta - a)^2 + c``
where the constant ``c = sum_t F_t (theta_t - a)^2`` is kept as ``offset`` (updated with
non-negative terms only). Its gradient ``strength * P * (theta - a)`` is what the
transformation :func:`add_ewc_penalty` adds to the gradients: put it first in an Optax chain,
``optax.chain(add_ewc_penalty(strength), optax.adam(1e-3))``, and call :func:`consolidate_opt_state`
between tasks. :func:`ewc_penalty` is the same term as a loss (for reporting, or to add to
a loss instead).

The Fisher (:func:`fisher_diagonal`, :func:`classifier_fisher`) is the mean over examples
of squared per-example gradients of the log-likelihood:

* ``'empirical'``: at the observed labels, ``E_x[(d log p(y_obs | x))^2]``. Cheap and
  common, but not the Fisher: it vanishes where the model fits the data (Kunstner et al.).
* ``'exact'`` (the default): the true Fisher, the expectation over the model's own
  predictive distribution, ``E_x sum_c p(c | x) (d log p(c | x))^2``, computed exactly
  over the C classes (C backward passes per example, ``chunk_size * C`` gradients in
  memory at once: for many classes use ``'sampled'``).
* ``'sampled'``: the true Fisher estimated with labels drawn from the model
  (``num_samples`` per example); unbiased, cheaper than exact for many classes.

References:
  Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks" (EWC).
  Schwarz et al. 2018, "Progress & Compress" (online EWC).
  Huszar 2018, "Note on the quadratic penalties in elastic weight consolidation".
  Kunstner, Balles, Hennig 2019, "Limitations of the empirical Fisher approximation".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

FISHER_KINDS = ("empirical", "exact", "sampled")
_NO_EWC = "the optimizer state holds no EWCState: chain memjax.continual.add_ewc_penalty(...)"


class EWCState(NamedTuple):
  """The consolidated tasks (every field but the counters is shaped like the params).

  Attributes:
    precision: ``sum_t F_t`` (online EWC: the decayed sum); zeros before any task.
    anchor: the Fisher-weighted mean of the consolidated parameters (online EWC: the
      latest parameters); the initial parameters before any task (unused then).
    offset: [] ``sum_t sum_i F_t,i (theta_t,i - anchor_i)^2`` (0 for one task, online).
    num_tasks: [] int32 tasks consolidated.
  """

  precision: Any
  anchor: Any
  offset: jax.Array
  num_tasks: jax.Array


def init_state(params: Any) -> EWCState:
  """No task consolidated yet: zero precision (the penalty is 0 everywhere)."""
  return EWCState(
    precision=jax.tree.map(jnp.zeros_like, params),
    anchor=jax.tree.map(jnp.asarray, params),
    offset=jnp.zeros((), jnp.float32),
    num_tasks=jnp.zeros((), jnp.int32),
  )


def _sum(tree: Any) -> jax.Array:
  return sum((jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(tree)), jnp.zeros(()))


def consolidate(
  state: EWCState, params: Any, fisher: Any, *, decay: float | None = None
) -> EWCState:
  """Adds a finished task: its parameters and their diagonal Fisher.

  Args:
    state: the tasks consolidated so far.
    params: the parameters after the task (theta_t).
    fisher: the diagonal Fisher at them, shaped like ``params`` (:func:`classifier_fisher`).
    decay: None for EWC (one quadratic per task, all kept); a number ``gamma`` in [0, 1]
      for online EWC (``precision <- gamma * precision + F_t``, anchor = theta_t).

  Returns:
    The new state.

  Raises:
    ValueError: a decay outside [0, 1], or params and fisher of different structures.
  """
  if jax.tree.structure(params) != jax.tree.structure(fisher):
    raise ValueError(
      f"fisher's tree {jax.tree.structure(fisher)} differs from params' "
      f"{jax.tree.structure(params)}"
    )
  if decay is not None:
    if not 0.0 <= float(decay) <= 1.0:
      raise ValueError(f"decay={decay} must be in [0, 1] (online EWC's gamma)")
    precision = jax.tree.map(lambda p, f: decay * p + f, state.precision, fisher)
    anchor = jax.tree.map(jnp.asarray, params)
    return EWCState(precision, anchor, jnp.zeros((), jnp.float32), state.num_tasks + 1)

  precision = jax.tree.map(jnp.add, state.precision, fisher)

  def mean(total, p_old, a_old, f, theta):
    # The Fisher-weighted mean, exactly theta (or the old anchor) where only one of them
    # carries weight; theta where neither does.
    safe = jnp.where(total > 0, total, 1)
    weighted = (p_old * a_old + f * theta) / safe
    return jnp.where(p_old > 0, jnp.where(f > 0, weighted, a_old), theta)

  anchor = jax.tree.map(mean, precision, state.precision, state.anchor, fisher, params)
  # sum_t F_t (theta_t - a_new)^2 = [old offset + P_old (a_old - a_new)^2] + F (theta - a_new)^2
  offset = (
    state.offset
    + _sum(jax.tree.map(lambda p, a, m: p * (a - m) ** 2, state.precision, state.anchor, anchor))
    + _sum(jax.tree.map(lambda f, t, m: f * (t - m) ** 2, fisher, params, anchor))
  )
  return EWCState(precision, anchor, offset, state.num_tasks + 1)


def ewc_penalty(state: EWCState, params: Any, strength: float) -> jax.Array:
  """[] ``strength / 2 * (sum_i P_i (theta_i - a_i)^2 + offset)``: the EWC (or online
  EWC) penalty of ``params``; 0 before any task and at a single task's anchor."""
  quad = _sum(jax.tree.map(lambda p, t, a: p * (t - a) ** 2, state.precision, params, state.anchor))
  return 0.5 * strength * (quad + state.offset)


def ewc_gradient(state: EWCState, params: Any, strength: float) -> Any:
  """The penalty's gradient, ``strength * P * (theta - a)``, shaped like ``params``."""
  return jax.tree.map(
    lambda p, t, a: (strength * p * (t - a)).astype(t.dtype), state.precision, params, state.anchor
  )


def add_ewc_penalty(strength: float) -> optax.GradientTransformation:
  """An Optax transformation adding the EWC penalty's gradient to the updates.

  Chain it before the optimizer (it adds to the loss gradient):
  ``optax.chain(add_ewc_penalty(1000.0), optax.adam(1e-3))``; after each task call
  :func:`consolidate_opt_state`. Its state is an :class:`EWCState`.

  Args:
    strength: lambda, the penalty's weight.

  Example:
    >>> opt = optax.chain(add_ewc_penalty(10.0), optax.sgd(0.1))
    >>> params = {"w": jnp.ones(3)}
    >>> opt_state = opt.init(params)
    >>> opt_state = consolidate_opt_state(opt_state, params, {"w": jnp.ones(3)})
    >>> moved = {"w": jnp.full(3, 2.0)}
    >>> updates, _ = opt.update({"w": jnp.zeros(3)}, opt_state, moved)
    >>> updates["w"]  # -0.1 * 10 * 1 * (2 - 1)
    Array([-1., -1., -1.], dtype=float32)
  """

  def init_fn(params):
    return init_state(params)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("ewc needs the current params: call update(grads, state, params)")
    penalty = ewc_gradient(state, params, strength)
    return jax.tree.map(lambda u, g: u + g.astype(u.dtype), updates, penalty), state

  return optax.GradientTransformation(init_fn, update_fn)


def consolidate_opt_state(
  opt_state: Any, params: Any, fisher: Any, *, decay: float | None = None
) -> Any:
  """:func:`consolidate` applied to every :class:`EWCState` inside an Optax state.

  Raises:
    ValueError: ``opt_state`` holds no EWCState (the optimizer has no :func:`add_ewc_penalty`).
  """
  found = []

  def update(x):
    if isinstance(x, EWCState):
      found.append(True)
      return consolidate(x, params, fisher, decay=decay)
    return x

  out = jax.tree.map(update, opt_state, is_leaf=lambda x: isinstance(x, EWCState))
  if not found:
    raise ValueError(
      "the optimizer state holds no EWCState: chain memjax.continual.add_ewc_penalty(...)"
    )
  return out


def find_state(opt_state: Any) -> EWCState:
  """The (first) :class:`EWCState` inside an Optax state.

  Raises:
    ValueError: none is there.
  """
  states = [
    x
    for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, EWCState))
    if isinstance(x, EWCState)
  ]
  if not states:
    raise ValueError(
      "the optimizer state holds no EWCState: chain memjax.continual.add_ewc_penalty(...)"
    )
  return states[0]


# ----------------------------------------------------------------------------- Fisher


def fisher_diagonal(
  log_prob_fn: Callable[[Any, Any], jax.Array],
  params: Any,
  examples: Any,
  *,
  weights: jax.Array | None = None,
  chunk_size: int | None = None,
) -> Any:
  """The (weighted) mean over examples of the squared gradient of a log-likelihood.

  Args:
    log_prob_fn: ``fn(params, example) -> []``, the log-likelihood of ONE example (no
      batch axis); which label it scores decides the Fisher's kind (see the module).
    params: the parameters.
    examples: a pytree whose leaves have the B examples on axis 0.
    weights: [B] non-negative weights (default: all 1); the result divides by their sum.
    chunk_size: examples differentiated at once (vmapped); default all B. Bounds memory
      to ``chunk_size`` per-example gradients.

  Returns:
    The diagonal Fisher, shaped like ``params``.
  """
  b = jax.tree.leaves(examples)[0].shape[0]
  weights = jnp.ones((b,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  if weights.shape != (b,):
    raise ValueError(f"weights of shape {weights.shape} must be [{b}], one per example")
  chunk = b if chunk_size is None else max(1, min(int(chunk_size), b))
  pad = (-b) % chunk
  if pad:  # the padding repeats example 0 with weight 0
    examples = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]), examples)
    weights = jnp.concatenate([weights, jnp.zeros((pad,), jnp.float32)])
  chunks = jax.tree.map(lambda x: x.reshape(-1, chunk, *x.shape[1:]), (examples, weights))
  per_example = jax.vmap(jax.grad(log_prob_fn), in_axes=(None, 0))

  def body(total, chunk_data):
    ex, w = chunk_data
    grads = per_example(params, ex)
    squares = jax.tree.map(lambda g: jnp.tensordot(w, g.astype(jnp.float32) ** 2, axes=1), grads)
    return jax.tree.map(jnp.add, total, squares), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  total, _ = jax.lax.scan(body, zeros, chunks)
  denominator = jnp.maximum(jnp.sum(weights), 1e-12)
  return jax.tree.map(lambda t, p: (t / denominator).astype(p.dtype), total, params)


def classifier_fisher(
  apply_fn: Callable[[Any, jax.Array], jax.Array],
  params: Any,
  inputs: jax.Array,
  labels: jax.Array | None = None,
  *,
  kind: str = "exact",
  key: jax.Array | None = None,
  num_samples: int = 1,
  class_mask: jax.Array | None = None,
  chunk_size: int | None = None,
) -> Any:
  """The diagonal Fisher of a softmax classifier over a set of inputs.

  Args:
    apply_fn: ``fn(params, x) -> logits [B, C]`` for a batch ``x`` [B, ...].
    params: the parameters.
    inputs: [B, ...] the examples.
    labels: [B] int the observed labels (``kind='empirical'`` only).
    kind: ``'exact'`` (true Fisher, summed over the classes), ``'sampled'`` (true Fisher,
      ``num_samples`` labels drawn from the model per example) or ``'empirical'``.
    key: a PRNG key (``'sampled'`` only).
    num_samples: labels drawn per example (``'sampled'``).
    class_mask: [C] bool: the softmax runs over these classes only (the classes a task-
      or class-incremental model was trained on); default all.
    chunk_size: examples differentiated at once (see :func:`fisher_diagonal`).

  Returns:
    The diagonal Fisher, shaped like ``params``.

  Raises:
    ValueError: an unknown ``kind``, or a missing ``labels`` / ``key``.
  """
  if kind not in FISHER_KINDS:
    raise ValueError(f"kind={kind!r} must be one of {FISHER_KINDS}")

  def log_probs(p, x):
    logits = apply_fn(p, x[None])[0]
    if class_mask is not None:
      logits = jnp.where(class_mask, logits, -jnp.inf)
    return jax.nn.log_softmax(logits)

  if kind == "empirical":
    if labels is None:
      raise ValueError("kind='empirical' needs the observed labels")
    fn = lambda p, ex: log_probs(p, ex[0])[ex[1]]
    return fisher_diagonal(fn, params, (inputs, labels), chunk_size=chunk_size)
  if kind == "sampled":
    if key is None:
      raise ValueError("kind='sampled' needs a PRNG key")
    logits = apply_fn(params, inputs)
    if class_mask is not None:
      logits = jnp.where(class_mask, logits, -jnp.inf)
    drawn = jax.random.categorical(key, logits, shape=(num_samples, logits.shape[0]))
    repeated = jnp.concatenate([inputs] * num_samples)
    fn = lambda p, ex: log_probs(p, ex[0])[ex[1]]
    return fisher_diagonal(fn, params, (repeated, drawn.reshape(-1)), chunk_size=chunk_size)

  def expected(p, x):  # sum_c stop(p_c) * (d log p_c)^2 = one weighted squared Jacobian
    return log_probs(p, x)

  def exact_one(p, x):
    jac = jax.jacrev(expected)(p, x)  # leaves [C, *param]
    probs = jnp.exp(jax.lax.stop_gradient(expected(p, x)))
    probs = jnp.where(jnp.isfinite(probs), probs, 0.0)
    return jax.tree.map(
      lambda j: jnp.tensordot(probs, jnp.where(jnp.isfinite(j), j, 0.0) ** 2, axes=1), jac
    )

  b = inputs.shape[0]
  chunk = b if chunk_size is None else max(1, min(int(chunk_size), b))
  pad = (-b) % chunk
  weights = jnp.concatenate([jnp.ones((b,)), jnp.zeros((pad,))])
  padded = jnp.concatenate([inputs, jnp.repeat(inputs[:1], pad, 0)]) if pad else inputs
  per = jax.vmap(exact_one, in_axes=(None, 0))

  def body(total, data):
    x, w = data
    fisher = per(params, x)
    return jax.tree.map(lambda t, f: t + jnp.tensordot(w, f, axes=1), total, fisher), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  data = (padded.reshape(-1, chunk, *inputs.shape[1:]), weights.reshape(-1, chunk))
  total, _ = jax.lax.scan(body, zeros, data)
  return jax.tree.map(lambda t, p: (t / b).astype(p.dtype), total, params)


__all__ = [
  "FISHER_KINDS",
  "EWCState",
  "init_state",
  "consolidate",
  "ewc_penalty",
  "ewc_gradient",
  "add_ewc_penalty",
  "consolidate_opt_state",
  "find_state",
  "fisher_diagonal",
  "classifier_fisher",
]
