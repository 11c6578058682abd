"""The inner loop: a few optimizer steps on one task's support set, as a ``lax.scan``.

Everything here works on ONE task (no task axis); the meta-learners ``vmap`` it.

* Losses and metrics over predictions: :func:`mse`, :func:`cross_entropy`, :func:`accuracy`.
* Which parameters the inner loop adapts: a mask (``None`` = all; a pytree of bools like
  the params; or a predicate ``fn(path, leaf) -> bool`` where ``path`` is the tuple of
  key names, e.g. ``('head', 'kernel')``); :func:`path_contains` builds the usual one.
* :func:`adapt`: ``num_steps`` steps of any Optax optimizer (its state in the scan carry),
  optionally scaled by learned per-step / per-parameter rates (Meta-SGD, MAML++ LSLR),
  optionally first order (the inner gradients are constants to the meta-gradient), and
  optionally observing each step's parameters (the query loss of MAML++'s multi-step loss).

Example:
  >>> import optax
  >>> apply_fn = lambda p, x: x @ p["w"]
  >>> params = {"w": jnp.zeros((3, 1))}
  >>> x, y = jnp.ones((5, 3)), jnp.ones((5, 1))
  >>> adapted, _ = adapt(params, x, y, apply_fn=apply_fn, loss_fn=mse,
  ...                    optimizer=optax.sgd(0.1), num_steps=2)
  >>> adapted["w"].shape
  (3, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Mask = Any  # None | pytree of bools like the params | fn(path: tuple[str, ...], leaf) -> bool


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean squared error over every element (the MAML sinusoid loss).

  Args:
    predictions: [B, ...] model outputs.
    targets: the same shape.

  Returns:
    [] the mean of ``(predictions - targets)**2``.
  """
  if predictions.shape != targets.shape:
    raise ValueError(f"mse: predictions {predictions.shape} and targets {targets.shape} differ")
  return jnp.mean((predictions - targets) ** 2)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of integer labels.

  Args:
    logits: [B, C].
    labels: [B] integers in ``[0, C)``.

  Returns:
    [] the mean over the B examples.
  """
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f"cross_entropy: logits {logits.shape} do not match labels {labels.shape}")
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose highest logit is the label: logits [B, C], labels [B]."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def _key_name(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def leaf_paths(params: Any) -> list[tuple[str, ...]]:
  """The path of every leaf of ``params`` as a tuple of key names (flatten order)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [tuple(_key_name(e) for e in path) for path, _ in flat]


def path_contains(*names: str) -> Callable[[tuple[str, ...], Any], bool]:
  """A mask predicate: True for leaves whose path has one of ``names`` as a component.

  E.g. ``path_contains('head')`` selects a Flax submodule named ``head`` (ANIL).
  """
  wanted = set(names)
  return lambda path, leaf: bool(wanted & set(path))


def leaf_mask(params: Any, mask: Mask) -> tuple[bool, ...]:
  """``mask`` resolved to one static bool per leaf of ``params`` (flatten order).

  Raises:
    ValueError: a mask tree whose structure differs from the params', or a mask that
      selects no parameter (the message lists the parameter paths).
  """
  leaves = jax.tree.leaves(params)
  if mask is None:
    out = (True,) * len(leaves)
  elif callable(mask):
    out = tuple(bool(mask(p, leaf)) for p, leaf in zip(leaf_paths(params), leaves, strict=True))
  else:
    if jax.tree.structure(mask) != jax.tree.structure(params):
      raise ValueError(
        f"the mask's tree {jax.tree.structure(mask)} differs from the params' "
        f"{jax.tree.structure(params)}"
      )
    out = tuple(bool(m) for m in jax.tree.leaves(mask))
  if not any(out):
    names = ["/".join(p) for p in leaf_paths(params)]
    raise ValueError(f"the inner-loop mask selects no parameter; the parameters are {names}")
  return out


def _split(tree: Any, mask: Sequence[bool]) -> tuple[list[Any], list[Any]]:
  leaves = jax.tree.leaves(tree)
  adapted = [x for x, m in zip(leaves, mask, strict=True) if m]
  frozen = [x for x, m in zip(leaves, mask, strict=True) if not m]
  return adapted, frozen


def _merge(treedef: Any, mask: Sequence[bool], adapted: list[Any], frozen: list[Any]) -> Any:
  it_a, it_f = iter(adapted), iter(frozen)
  return jax.tree.unflatten(treedef, [next(it_a) if m else next(it_f) for m in mask])


def init_rates(params: Any, value: float, *, num_steps: int = 1, per_parameter: bool = True) -> Any:
  """Learned inner rates for every leaf: ``[num_steps, *leaf.shape]`` or ``[num_steps]``.

  Args:
    params: the model parameters.
    value: the initial rate.
    num_steps: 1 = one rate shared by every inner step; S = one per step (MAML++).
    per_parameter: a rate per parameter (Meta-SGD) or one per leaf (MAML++ per layer).

  Returns:
    A tree like ``params`` of rates in each leaf's dtype.
  """

  def one(leaf):
    shape = (num_steps, *leaf.shape) if per_parameter else (num_steps,)
    return jnp.full(shape, value, leaf.dtype)

  return jax.tree.map(one, params)


def _rate_at(rate: jax.Array, step: jax.Array, leaf: jax.Array) -> jax.Array:
  """The rate of one leaf at inner step ``step`` (the last rate past the learned steps)."""
  r = rate[jnp.minimum(step, rate.shape[0] - 1)]
  return r.astype(leaf.dtype)


def adapt(
  params: Any,
  x: jax.Array,
  y: jax.Array,
  *,
  apply_fn: ApplyFn,
  loss_fn: LossFn,
  optimizer: optax.GradientTransformation,
  num_steps: int,
  mask: Mask = None,
  rates: Any = None,
  first_order: bool = False,
  observe: Callable[[Any], Any] | None = None,
  unroll: bool = False,
) -> tuple[Any, Any]:
  """``num_steps`` inner steps on ``(x, y)`` from ``params`` (one task), in a ``lax.scan``.

  Step ``i``: ``g = grad loss_fn(apply_fn(p, x), y)`` over the adapted leaves,
  ``u, s = optimizer.update(g, s, p)`` and ``p = p + u`` (times ``rates[i]`` when given).
  Differentiable in ``params`` and ``rates`` through every step (second order) unless
  ``first_order``, where ``g`` is a constant to the outer gradient.

  Args:
    params: the starting parameters (the meta-parameters).
    x: [K, ...] support inputs.
    y: [K, ...] support targets.
    apply_fn: ``fn(params, x) -> predictions``.
    loss_fn: ``fn(predictions, y) -> []``.
    optimizer: the inner Optax optimizer (its state is reset for every task).
    num_steps: S >= 0 inner steps (0 returns ``params``).
    mask: which leaves adapt (see the module docstring); the others stay fixed.
    rates: None, or learned rates like :func:`init_rates` (leaves ``[R, ...]``), each
      step using ``rates[min(i, R - 1)]`` to scale the optimizer's update.
    first_order: stop the gradient through the inner gradients (FOMAML).
    observe: ``fn(params) -> pytree`` recorded after every step (e.g. the query loss).
    unroll: unroll the scan (no loop in the program: on CPU faster for conv nets).

  Returns:
    ``(adapted params, observed)``: ``observed`` stacks ``observe`` over the S steps
    (leaves ``[S, ...]``), or is None.
  """
  num_steps = int(num_steps)
  if num_steps < 0:
    raise ValueError(f"num_steps={num_steps} must be >= 0")
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"support x {x.shape} and y {y.shape} hold different numbers of examples")
  which = leaf_mask(params, mask)
  treedef = jax.tree.structure(params)
  adapted, frozen = _split(params, which)
  rate_leaves = None if rates is None else _split(rates, which)[0]

  def support_loss(leaves):
    return loss_fn(apply_fn(_merge(treedef, which, leaves, frozen), x), y)

  def step(carry, i):
    leaves, opt_state = carry
    grads = jax.grad(support_loss)(leaves)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, leaves)
    if rate_leaves is not None:
      updates = [u * _rate_at(r, i, u) for u, r in zip(updates, rate_leaves, strict=True)]
    leaves = optax.apply_updates(leaves, updates)
    seen = None if observe is None else observe(_merge(treedef, which, leaves, frozen))
    return (leaves, opt_state), seen

  if num_steps == 0:
    return params, None
  (adapted, _), observed = jax.lax.scan(
    step, (adapted, optimizer.init(adapted)), jnp.arange(num_steps), unroll=bool(unroll)
  )
  return _merge(treedef, which, adapted, frozen), observed


__all__ = [
  "ApplyFn",
  "LossFn",
  "Mask",
  "mse",
  "cross_entropy",
  "accuracy",
  "leaf_paths",
  "path_contains",
  "leaf_mask",
  "init_rates",
  "adapt",
]
