"""Knowledge-graph memory: triples in a fact memory, fused into hidden states by a gate.

A triple (subject, relation, object) is held in a :class:`memjax.knowledge.FactState`
under the key ``triple_key(subject, relation)`` (the unit-normalised subject and relation
embeddings side by side, scaled to unit norm) with the object embedding as its value, so
a changed fact ("Mary lives in Paris" -> "Mary lives in Rome") is a conflict resolved
by the fact memory's policies, and a user's triples can be deleted by owner.

:class:`KGFusion` (linen) and :class:`NNXKGFusion` (NNX, same parameters under the same
names) retrieve, for every token that mentions an entity, the objects of that entity's
triples over the given relations and gate them into the token's hidden state::

  f_t  = mean over the relations r with a stored triple (e_t, r, o) of W_f [r, o] + b_f
  g_t  = sigmoid(W_g [h_t, f_t] + b_g)                  # [H], per feature
  h'_t = g_t * f_t + (1 - g_t) * h_t   (h'_t = h_t where no triple is found)

The retrieval is a hard top-1 lookup (not differentiable in the choice of triple);
gradients reach ``W_f``, ``W_g``, the hidden states and the stored object embeddings.

References:
  Peters et al. 2019, "Knowledge Enhanced Contextual Word Representations" (KnowBert).
  Zhang et al. 2019, "ERNIE: Enhanced Language Representation with Informative Entities"
  (gated fusion of entity knowledge into token states).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from memjax.knowledge import facts
from memjax.ops import _checks

_EPS = 1e-6


def _unit(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + _EPS)


def triple_key(subject: jax.Array, relation: jax.Array) -> jax.Array:
  """The key of (subject, relation): ``[unit(subject), unit(relation)] / sqrt(2)``.

  Args:
    subject: [..., D] entity embeddings.
    relation: [..., R] relation embeddings (same leading axes).

  Returns:
    [..., D + R] unit-norm keys: two keys have cosine 1 exactly when both the subjects
    and the relations point the same way.
  """
  subject = _checks.as_array("subject", subject)
  relation = _checks.as_array("relation", relation)
  _checks.check_floating("subject", subject)
  _checks.check_floating("relation", relation)
  if subject.shape[:-1] != relation.shape[:-1]:
    raise ValueError(
      f"triple_key: subject {subject.shape} and relation {relation.shape} must have the "
      "same leading axes"
    )
  return jnp.concatenate([_unit(subject), _unit(relation)], axis=-1) / jnp.sqrt(2.0)


def init_kg(
  num_slots: int, entity_size: int, relation_size: int, dtype: Any = jnp.float32
) -> facts.FactState:
  """An empty triple memory: keys ``entity_size + relation_size`` wide, values
  ``entity_size`` wide (object embeddings)."""
  return facts.init_state(num_slots, entity_size + relation_size, entity_size, dtype)


def add_triples(
  state: facts.FactState,
  subjects: jax.Array,
  relations: jax.Array,
  objects: jax.Array,
  times: jax.typing.ArrayLike,
  confidences: jax.typing.ArrayLike | None = None,
  owners: jax.typing.ArrayLike | None = None,
  policy: facts.ConflictPolicy = "newest",
  **kwargs: Any,
) -> facts.FactState:
  """Integrates M triples in order (:func:`memjax.knowledge.integrate_batch`).

  Args:
    state: a memory from :func:`init_kg`.
    subjects: [M, D].
    relations: [M, R].
    objects: [M, D].
    times: [M].
    confidences: [M] or None (all 1).
    owners: [M] int or None (none).
    policy: the conflict policy.
    **kwargs: passed to :func:`memjax.knowledge.integrate` (``threshold``, ...).

  Returns:
    The new state.
  """
  keys = triple_key(subjects, relations)
  return facts.integrate_batch(state, keys, objects, times, confidences, owners, policy, **kwargs)


def facts_about(
  state: facts.FactState, entities: jax.Array, relations: jax.Array, threshold: float = 0.95
) -> tuple[jax.Array, jax.Array]:
  """The stored objects of every (entity, relation) pair.

  Args:
    state: a memory from :func:`init_kg`.
    entities: [..., D] entity embeddings.
    relations: [Rn, R] the relations to look up.
    threshold: the least cosine similarity of a stored key to count as the pair's triple.

  Returns:
    ``(objects [..., Rn, D], found [..., Rn] bool)``; objects are zero where not found.
  """
  entities = _checks.as_array("entities", entities)
  relations = _checks.as_array("relations", relations)
  _checks.check_rank("relations", relations, 2, "[Rn, R]")
  d = state.kv.values.shape[-1]
  if entities.shape[-1] != d or d + relations.shape[-1] != state.kv.keys.shape[-1]:
    raise ValueError(
      f"facts_about: entities {entities.shape} and relations {relations.shape} do not fit "
      f"the memory (values {d} wide, keys {state.kv.keys.shape[-1]} = entity + relation)"
    )
  lead = entities.shape[:-1] + relations.shape[:1]
  subject = jnp.broadcast_to(entities[..., None, :], lead + entities.shape[-1:])
  relation = jnp.broadcast_to(relations, lead + relations.shape[-1:])
  objects, _, found = facts.lookup(state, triple_key(subject, relation), threshold)
  return objects, found


def fuse(
  h: jax.Array,
  objects: jax.Array,
  found: jax.Array,
  relations: jax.Array,
  fact_layer,
  gate_layer,
) -> tuple[jax.Array, jax.Array]:
  """The fusion of :class:`KGFusion` given the retrieved triples (any layer objects).

  Args:
    h: [..., H] hidden states.
    objects: [..., Rn, D] retrieved objects.
    found: [..., Rn] bool.
    relations: [Rn, R].
    fact_layer: ``[..., R + D] -> [..., H]`` (``W_f``).
    gate_layer: ``[..., 2H] -> [..., H]`` (``W_g``).

  Returns:
    ``(h' [..., H], g [..., H])``; ``g`` is 0 where no triple was found.
  """
  relation = jnp.broadcast_to(relations, objects.shape[:-1] + relations.shape[-1:])
  per_fact = fact_layer(jnp.concatenate([relation, objects.astype(relation.dtype)], axis=-1))
  weight = found.astype(per_fact.dtype)
  count = jnp.sum(weight, axis=-1)
  f = jnp.sum(weight[..., None] * per_fact, axis=-2) / jnp.maximum(count, 1.0)[..., None]
  g = nn.sigmoid(gate_layer(jnp.concatenate([h, f.astype(h.dtype)], axis=-1)))
  any_fact = (count > 0)[..., None]
  out = jnp.where(any_fact, g * f + (1 - g) * h, h)
  return out, jnp.where(any_fact, g, 0.0)


def _check_inputs(h, entities, entity_mask):
  h = _checks.as_array("h", h)
  entities = _checks.as_array("entities", entities)
  if h.shape[:-1] != entities.shape[:-1]:
    raise ValueError(f"KGFusion: h {h.shape} and entities {entities.shape} need the same [..., T]")
  if entity_mask is None:
    entity_mask = jnp.ones(h.shape[:-1], bool)
  entity_mask = _checks.as_array("entity_mask", entity_mask)
  if entity_mask.shape != h.shape[:-1] or entity_mask.dtype != jnp.bool_:
    raise ValueError(
      f"KGFusion: entity_mask must be bool of shape {h.shape[:-1]}, got "
      f"{entity_mask.dtype}{entity_mask.shape}"
    )
  return h, entities, entity_mask


class KGFusion(nn.Module):
  """Gates the knowledge-graph facts about the entities in context into hidden states.

  See the module docstring for the computation.

  Attributes:
    threshold: the least cosine similarity of a retrieved triple's key.
    param_dtype: dtype of ``W_f`` and ``W_g``.

  Example:
    >>> kg = init_kg(8, entity_size=4, relation_size=2)
    >>> kg = add_triples(kg, jnp.eye(4)[:1], jnp.eye(2)[:1], jnp.eye(4)[2:3], jnp.zeros(1))
    >>> h, ents = jnp.zeros((3, 5)), jnp.eye(4)[:3]          # 3 tokens, H = 5
    >>> (out, g), variables = KGFusion().init_with_output(
    ...     jax.random.key(0), h, ents, None, kg, jnp.eye(2))
    >>> out.shape, bool(jnp.all(g[1:] == 0))                 # only token 0 has a triple
    ((3, 5), True)
  """

  threshold: float = 0.95
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    h: jax.Array,
    entities: jax.Array,
    entity_mask: jax.Array | None,
    kg: facts.FactState,
    relations: jax.Array,
  ) -> tuple[jax.Array, jax.Array]:
    """Args: ``h [..., H]``, ``entities [..., D]`` (each token's entity embedding),
    ``entity_mask [..., ]`` bool (tokens that mention an entity; None = all), ``kg`` a
    memory from :func:`init_kg`, ``relations [Rn, R]``. Returns ``(h', g)``, both
    ``[..., H]``."""
    h, entities, entity_mask = _check_inputs(h, entities, entity_mask)
    objects, found = facts_about(kg, entities, relations, self.threshold)
    found = found & entity_mask[..., None]
    size = h.shape[-1]
    fact = nn.Dense(size, name="fact", param_dtype=self.param_dtype)
    gate = nn.Dense(size, name="gate", param_dtype=self.param_dtype)
    return fuse(h, objects, found, relations, fact, gate)


class NNXKGFusion(nnx.Module):
  """The NNX form of :class:`KGFusion` (layers ``fact`` and ``gate``, as linen's).

  Args:
    hidden_size: H.
    entity_size: D.
    relation_size: R.
    threshold: see :class:`KGFusion`.
    rngs: initialises the layers.

  Example:
    >>> fusion = NNXKGFusion(5, 4, 2, rngs=nnx.Rngs(0))
    >>> kg = init_kg(8, entity_size=4, relation_size=2)
    >>> fusion(jnp.zeros((3, 5)), jnp.eye(4)[:3], None, kg, jnp.eye(2))[0].shape
    (3, 5)
  """

  def __init__(
    self,
    hidden_size: int,
    entity_size: int,
    relation_size: int,
    threshold: float = 0.95,
    param_dtype: Any = jnp.float32,
    *,
    rngs: nnx.Rngs,
  ):
    self.threshold = threshold
    self.fact = nnx.Linear(
      relation_size + entity_size, hidden_size, param_dtype=param_dtype, rngs=rngs
    )
    self.gate = nnx.Linear(2 * hidden_size, hidden_size, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, h, entities, entity_mask, kg, relations):
    """As :meth:`KGFusion.__call__`."""
    h, entities, entity_mask = _check_inputs(h, entities, entity_mask)
    objects, found = facts_about(kg, entities, relations, self.threshold)
    return fuse(h, objects, found & entity_mask[..., None], relations, self.fact, self.gate)


__all__ = [
  "KGFusion",
  "NNXKGFusion",
  "add_triples",
  "facts_about",
  "fuse",
  "init_kg",
  "triple_key",
]
