"""Tests for memjax.knowledge.kg: triple keys, lookups and the KGFusion layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from memjax import knowledge as K
from memjax.memory import load_linen_params

D, R, H = 4, 3, 5
_add_triples = jax.jit(K.add_triples)
_facts_about = jax.jit(K.facts_about)


def _world():
  """Entities 0..3 (one-hot), relations 0..2; triples: (0, r0, 2), (0, r1, 3), (1, r0, 3);
  then (0, r0, 1) replaces (0, r0, 2) (newest wins)."""
  ents, rels = np.eye(D, dtype=np.float32), np.eye(R, dtype=np.float32)
  kg = K.init_kg(8, D, R)
  subj, rel, obj = [0, 0, 1, 0], [0, 1, 0, 0], [2, 3, 3, 1]
  kg = _add_triples(kg, ents[subj], rels[rel], ents[obj], jnp.arange(4.0), owners=jnp.array(subj))
  return kg, ents, rels


def _numpy_fusion(params, h, entities, mask, kg, relations, threshold=0.95):
  """KGFusion computed directly: a cosine argmax over the live keys, then the gate."""
  p = jax.tree.map(np.asarray, params)
  keys, values = np.asarray(kg.kv.keys, np.float64), np.asarray(kg.kv.values, np.float64)
  live = np.asarray(kg.kv.valid & kg.active)
  out, gates = np.array(h, np.float64), np.zeros(h.shape)
  for t in range(h.shape[0]):
    per = []
    for r in relations:
      e = entities[t] / np.linalg.norm(entities[t])
      q = np.concatenate([e, r / np.linalg.norm(r)]) / np.sqrt(2)
      cos = keys @ q / (np.linalg.norm(keys, axis=1) * np.linalg.norm(q) + 1e-30)
      cos = np.where(live, cos, -np.inf)
      best = int(np.argmax(cos))
      if mask[t] and cos[best] >= threshold:
        per.append(np.concatenate([r, values[best]]) @ p["fact"]["kernel"] + p["fact"]["bias"])
    if per:
      f = np.mean(per, axis=0)
      z = np.concatenate([h[t], f]) @ p["gate"]["kernel"] + p["gate"]["bias"]
      g = 1 / (1 + np.exp(-z))
      out[t], gates[t] = g * f + (1 - g) * h[t], g
  return out, gates


def test_triple_key_is_unit_and_separates_pairs():
  ents, rels = np.eye(D, dtype=np.float32), np.eye(R, dtype=np.float32)
  k = K.triple_key(3.0 * ents[[0, 0, 1]], rels[[0, 1, 0]])
  np.testing.assert_allclose(np.linalg.norm(np.asarray(k), axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
    np.asarray(k @ k.T), [[1, 0.5, 0.5], [0.5, 1, 0], [0.5, 0, 1]], atol=1e-5
  )


def test_facts_about_reads_the_newest_object():
  kg, ents, rels = _world()
  objects, found = _facts_about(kg, ents[:3], rels)
  np.testing.assert_array_equal(
    np.asarray(found), [[True, True, False], [True, False, False], [False, False, False]]
  )
  np.testing.assert_allclose(np.asarray(objects[0, 0]), ents[1])  # (0, r0): 2 -> 1
  np.testing.assert_allclose(np.asarray(objects[0, 1]), ents[3])
  np.testing.assert_array_equal(np.asarray(objects[2]), np.zeros((R, D)))
  # Deleting entity 0's triples (its owner id) leaves nothing about it.
  _, found = _facts_about(K.delete_owner(kg, 0), ents[:2], rels)
  np.testing.assert_array_equal(np.asarray(found), [[False] * 3, [True, False, False]])


def test_fusion_against_a_direct_computation():
  kg, ents, rels = _world()
  h = jax.random.normal(jax.random.key(1), (4, H))
  entities = ents[[0, 1, 2, 0]]
  mask = np.array([True, True, True, False])
  (out, g), variables = jax.jit(K.KGFusion().init_with_output)(
    jax.random.key(0), h, entities, mask, kg, rels
  )
  want, want_g = _numpy_fusion(variables["params"], np.asarray(h), entities, mask, kg, rels)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g), want_g, rtol=1e-5, atol=1e-6)
  # Tokens 2 (no triple) and 3 (masked) keep their hidden state exactly.
  np.testing.assert_array_equal(np.asarray(out[2:]), np.asarray(h[2:]))


def test_batch_axes_and_nnx_twin():
  kg, ents, rels = _world()
  h = jax.random.normal(jax.random.key(2), (2, 3, H))
  entities = jnp.broadcast_to(ents[:3], (2, 3, D))
  fusion = K.KGFusion()
  variables = jax.jit(fusion.init)(jax.random.key(0), h, entities, None, kg, rels)
  apply = jax.jit(fusion.apply)
  out, _ = apply(variables, h, entities, None, kg, rels)
  for b in range(2):
    one, _ = apply(variables, h[b], entities[b], None, kg, rels)
    np.testing.assert_allclose(np.asarray(out[b]), np.asarray(one), rtol=1e-6)
  twin = load_linen_params(K.NNXKGFusion(H, D, R, rngs=nnx.Rngs(5)), variables["params"])
  np.testing.assert_allclose(
    np.asarray(nnx.jit(lambda m: m(h, entities, None, kg, rels)[0])(twin)),
    np.asarray(out),
    rtol=1e-6,
  )


def test_fusion_gradients():
  kg, ents, rels = _world()
  h = jax.random.normal(jax.random.key(3), (3, H))
  fusion = K.KGFusion()
  params = fusion.init(jax.random.key(0), h, ents[:3], None, kg, rels)["params"]

  @jax.jit
  def f(p, hh):
    return fusion.apply({"params": p}, hh, ents[:3], None, kg, rels)[0]

  check_grads(f, (params, h), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_errors_name_the_problem():
  kg, ents, rels = _world()
  with pytest.raises(ValueError, match="entity_mask must be bool of shape"):
    K.KGFusion().init(jax.random.key(0), jnp.zeros((3, H)), ents[:3], jnp.ones(3), kg, rels)
  with pytest.raises(ValueError, match="do not fit the memory"):
    K.facts_about(kg, np.ones((2, D + 1), np.float32), rels)
  with pytest.raises(ValueError, match="same leading axes"):
    K.triple_key(ents[:2], rels)
