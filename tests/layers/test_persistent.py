"""Tests for memjax.layers.persistent (persistent memory tokens as a layer)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.layers import PersistentAttention, PersistentTokens
from memjax.memory.persistent import PersistentMemoryAttention


def _np_layer(p, x, causal, num_persistent):
  """Attention over [persistent ; inputs] from the definition (float64 loops)."""
  p = jax.tree.map(lambda a: np.asarray(a).astype(np.float64), p)
  proj = lambda n: np.einsum("btf,fhd->bthd", x, p[n]["kernel"]) + p[n]["bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  pk, pv = p["tokens"]["persistent_keys"], p["tokens"]["persistent_values"]  # [H, P, D]
  b_size, t, heads, d = q.shape
  out = np.zeros_like(q)
  for b in range(b_size):
    for h in range(heads):
      for i in range(t):
        keys = list(pk[h]) + [k[b, j, h] for j in range(t) if not causal or j <= i]
        vals = list(pv[h]) + [v[b, j, h] for j in range(t) if not causal or j <= i]
        s = np.array([q[b, i, h] @ kk for kk in keys]) / np.sqrt(d)
        w = np.exp(s - s.max())
        out[b, i, h] = (w / w.sum()) @ np.array(vals)
  return np.einsum("bthd,hdo->bto", out, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("causal", [True, False])
def test_matches_numpy_and_the_memory_family_layer(causal):
  x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype(np.float32)
  layer = PersistentAttention(num_heads=2, num_persistent=3, causal=causal)
  params = layer.init(jax.random.key(0), x)["params"]
  y = jax.jit(layer.apply)({"params": params}, x)
  np.testing.assert_allclose(y, _np_layer(params, x, causal, 3), atol=1e-5)
  # Same parameters in memjax.memory.persistent's layout: the same function.
  flat = {n: params[n] for n in ("query", "key", "value", "out")}
  flat.update(params["tokens"])
  other = PersistentMemoryAttention(num_heads=2, num_persistent=3, causal=causal)
  np.testing.assert_allclose(other.apply({"params": flat}, x), y, atol=1e-5)


def test_tokens_prepend_and_keep_the_mask():
  k = v = jnp.ones((2, 4, 3, 5))
  tokens = PersistentTokens(num_heads=3, num_persistent=2, head_dim=5)
  mask = np.tril(np.ones((4, 4), bool))
  (k2, v2, m2), params = tokens.init_with_output(jax.random.key(0), k, v, mask)
  assert k2.shape == (2, 6, 3, 5) and m2.shape == (2, 3, 4, 6)
  np.testing.assert_array_equal(
    k2[:, :2], np.broadcast_to(np.moveaxis(params["params"]["persistent_keys"], 0, 1), (2, 2, 3, 5))
  )
  assert np.all(m2[..., :2]) and np.array_equal(m2[0, 0, :, 2:], mask)
  with pytest.raises(ValueError, match="must end in \\[H, D\\]"):
    tokens.init(jax.random.key(0), jnp.ones((2, 4, 3, 4)), jnp.ones((2, 4, 3, 4)))
