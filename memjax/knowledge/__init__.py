"""Knowledge memory: facts that change, decay and are deleted; a knowledge graph; a store on disk.

* ``facts``: :class:`FactState` (a key-value memory with per-fact time, confidence, owner,
  version and an active flag) and pure, jittable :func:`integrate` / :func:`integrate_batch`
  that resolve a conflict between a new fact and the one held under the same key by a
  policy (``'newest'``, ``'confident'``, ``'versions'``, ``'merge'``, ``'gate'`` with a
  learned :class:`ConflictGate`, or ``'keep'``); :func:`decay` (half-life, maximum age,
  minimum reads); :func:`delete_key` and :func:`delete_owner`, which zero the arrays.
* ``kg``: triples (subject, relation, object) keyed by (subject, relation);
  :class:`KGFusion` / :class:`NNXKGFusion` gate the facts about the entities in context
  into hidden states, ``g = sigmoid(W [h, f])``, ``h' = g f + (1 - g) h``.
* ``store``: :class:`FactStore`, a sharded store on disk (``.npy`` files and a JSON
  manifest, no pickle): bit-exact reload, exact top-k queries over shards, crash-safe
  commits, deletion by owner or key that leaves no trace in any file.

Example:
  >>> from memjax import knowledge
  >>> state = knowledge.init_state(num_slots=8, key_size=4, value_size=3)
  >>> key = jnp.array([1.0, 0.0, 0.0, 0.0])
  >>> state = knowledge.integrate(state, key, jnp.array([1.0, 0, 0]), time=1.0, owner=7)
  >>> state = knowledge.integrate(state, key, jnp.array([0, 1.0, 0]), time=2.0, owner=7)
  >>> int(knowledge.num_facts(state)), int(knowledge.num_facts(knowledge.delete_owner(state, 7)))
  (1, 0)
"""

from memjax.knowledge import facts, kg, store
from memjax.knowledge.facts import (
  CONFLICT_POLICIES,
  NO_OWNER,
  ConflictGate,
  ConflictPolicy,
  FactState,
  decay,
  delete_key,
  delete_owner,
  delete_slots,
  find_match,
  init_state,
  integrate,
  integrate_batch,
  lookup,
  num_facts,
  read,
  read_and_touch,
)
from memjax.knowledge.kg import KGFusion, NNXKGFusion, add_triples, facts_about, init_kg, triple_key
from memjax.knowledge.store import FactStore, StoreError, StoreHits, load_state, save_state

__all__ = [
  "facts",
  "kg",
  "store",
  "CONFLICT_POLICIES",
  "NO_OWNER",
  "ConflictGate",
  "ConflictPolicy",
  "FactState",
  "FactStore",
  "KGFusion",
  "NNXKGFusion",
  "StoreError",
  "StoreHits",
  "add_triples",
  "decay",
  "delete_key",
  "delete_owner",
  "delete_slots",
  "facts_about",
  "find_match",
  "init_kg",
  "init_state",
  "integrate",
  "integrate_batch",
  "load_state",
  "lookup",
  "num_facts",
  "read",
  "read_and_touch",
  "save_state",
  "triple_key",
]
