"""Tests for memjax.memory.persistent (persistent-memory attention)."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from memjax.memory import persistent


def _np_layer(params, x, causal, mask=None, window=None):
  """Independent numpy multi-head attention over [persistent ; inputs] for x [B, T, F]."""
  p = jax.tree.map(np.asarray, params)
  proj = lambda name: np.einsum("btf,fhd->bthd", x, p[name]["kernel"]) + p[name]["bias"]
  q, k, v = proj("query"), proj("key"), proj("value")
  pk, pv = p["persistent_keys"], p["persistent_values"]  # [Hd, P, Dh]
  b_size, t_size, heads, dh = q.shape
  out = np.zeros_like(q)
  for b in range(b_size):
    for h in range(heads):
      for i in range(t_size):
        scores, vals = [], []
        for j in range(pk.shape[1]):
          scores.append(q[b, i, h] @ pk[h, j] / math.sqrt(dh))
          vals.append(pv[h, j])
        for j in range(t_size):
          visible = (not causal or j <= i) and (mask is None or mask[b, i, j])
          if window is not None:
            visible = visible and i - j < window
          if visible:
            scores.append(q[b, i, h] @ k[b, j, h] / math.sqrt(dh))
            vals.append(v[b, j, h])
        w = np.exp(np.array(scores) - max(scores))
        out[b, i, h] = (w / w.sum()) @ np.array(vals)
  return np.einsum("bthd,hdo->bto", out, p["out"]["kernel"]) + p["out"]["bias"]


def test_with_persistent_known_answer():
  keys = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  values = jnp.array([[5.0], [6.0]])
  pk, pv = jnp.array([[9.0, 9.0]]), jnp.array([[7.0]])
  k, v, m = persistent.with_persistent(keys, values, pk, pv)
  np.testing.assert_array_equal(k, [[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]])
  np.testing.assert_array_equal(v, [[7.0], [5.0], [6.0]])
  assert m is None
  mask = jnp.array([[True, False], [False, False]])  # [Q, S]
  _, _, m = persistent.with_persistent(keys, values, pk, pv, mask)
  np.testing.assert_array_equal(m, [[True, True, False], [True, False, False]])
  # Leading axes: persistent slots are broadcast to every batch/head entry.
  k, v, _ = persistent.with_persistent(jnp.ones((3, 2, 2)), jnp.ones((3, 2, 1)), pk, pv)
  assert k.shape == (3, 3, 2) and v.shape == (3, 3, 1)
  np.testing.assert_array_equal(k[2, 0], [9.0, 9.0])


def test_attention_known_answer():
  # K = 1: scores = q . k. Persistent key ln 3, input key 0 -> weights [3/4, 1/4].
  q = jnp.array([1.0])
  pk, pv = jnp.array([[math.log(3.0)]]), jnp.array([[1.0]])
  keys, values = jnp.array([[0.0]]), jnp.array([[2.0]])
  out, w = persistent.persistent_attention(q, keys, values, pk, pv)
  np.testing.assert_allclose(w, [0.75, 0.25], rtol=1e-6)
  np.testing.assert_allclose(out, [1.25], rtol=1e-6)
  # Masking every input leaves the persistent slot: weight 1, never an empty read.
  out, w = persistent.persistent_attention(q, keys, values, pk, pv, jnp.array([False]))
  np.testing.assert_allclose(w, [1.0, 0.0])
  np.testing.assert_allclose(out, [1.0])


@pytest.mark.parametrize("causal", [False, True])
def test_layer_matches_numpy(causal):
  layer = persistent.PersistentMemoryAttention(num_heads=2, num_persistent=3, causal=causal)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 6)), jnp.float32)
  params = layer.init(jax.random.key(0), x)["params"]
  y, w = layer.apply({"params": params}, x, return_weights=True)
  np.testing.assert_allclose(y, _np_layer(params, np.asarray(x), causal), rtol=1e-4, atol=1e-5)
  assert w.shape == (2, 2, 4, 3 + 4)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
  if causal:  # future tokens get zero weight, persistent slots never do
    np.testing.assert_array_equal(w[..., 0, 3 + 1 :], 0.0)
    assert bool((w[..., :3] > 0).all())


def test_layer_user_mask_and_persistent_always_visible():
  layer = persistent.PersistentMemoryAttention(
    num_heads=2, num_persistent=2, causal=True, qkv_features=4, out_features=3
  )
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 5, 6)), jnp.float32)
  mask = jnp.asarray(rng.uniform(size=(2, 5, 5)) > 0.5)
  mask = mask.at[:, 2].set(False)  # query 2 sees no input token at all
  params = layer.init(jax.random.key(1), x)["params"]
  y, w = layer.apply({"params": params}, x, mask, return_weights=True)
  assert y.shape == (2, 5, 3)
  np.testing.assert_allclose(
    y, _np_layer(params, np.asarray(x), True, np.asarray(mask)), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(w[:, :, 2, :2].sum(-1), 1.0, rtol=1e-6)  # only persistent slots


def test_causal_layer_ignores_the_future():
  layer = persistent.PersistentMemoryAttention(num_heads=1, num_persistent=2, causal=True)
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(1, 6, 4)), jnp.float32)
  params = layer.init(jax.random.key(0), x)
  x2 = x.at[:, 4:].set(jnp.asarray(rng.normal(size=(1, 2, 4)), jnp.float32))
  np.testing.assert_allclose(
    layer.apply(params, x)[:, :4], layer.apply(params, x2)[:, :4], rtol=1e-6
  )
  assert not np.allclose(layer.apply(params, x)[:, 4:], layer.apply(params, x2)[:, 4:])


def test_cell_equals_causal_layer_and_sliding_window():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, 6)), jnp.float32)
  layer = persistent.PersistentMemoryAttention(num_heads=2, num_persistent=3, causal=True)
  params = layer.init(jax.random.key(0), x)["params"]
  want = layer.apply({"params": params}, x)
  full = persistent.PersistentMemoryCell(num_heads=2, num_persistent=3, window=7)
  carry, y = nn.RNN(full, return_carry=True).apply({"params": {"cell": params}}, x)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(carry.count, [7, 7])
  assert carry.keys.shape == (2, 7, 2, 3)
  # A window of 3: query i sees tokens i-2..i, as the layer with a banded mask does.
  small = persistent.PersistentMemoryCell(num_heads=2, num_persistent=3, window=3)
  y3 = nn.RNN(small).apply({"params": {"cell": params}}, x)
  band = persistent.causal_mask(7, window=3)
  np.testing.assert_allclose(y3, layer.apply({"params": params}, x, band), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    y3, _np_layer(params, np.asarray(x), True, window=3), rtol=1e-4, atol=1e-5
  )


def test_cache_ops_ring_and_known_read():
  state = persistent.init_state(2, 1, 1)
  for i in range(3):
    state = persistent.write(state, jnp.array([[float(i)]]), jnp.array([[10.0 * i]]))
  np.testing.assert_array_equal(state.keys[:, 0, 0], [2.0, 1.0])  # write 2 overwrote slot 0
  np.testing.assert_array_equal(state.values[:, 0, 0], [20.0, 10.0])
  # One persistent slot with key 0 / value 0; query 1 with Dh = 1: scores [0, 2, 1].
  out, w = persistent.read(state, jnp.array([[1.0]]), jnp.zeros((1, 1, 1)), jnp.zeros((1, 1, 1)))
  e = np.exp([0.0, 2.0, 1.0])
  np.testing.assert_allclose(w[0], e / e.sum(), rtol=1e-6)
  np.testing.assert_allclose(out[0, 0], (20 * e[1] + 10 * e[2]) / e.sum(), rtol=1e-6)
  fresh = persistent.write(persistent.init_state(2, 1, 1), jnp.ones((1, 1)), jnp.ones((1, 1)))
  _, w = persistent.read(fresh, jnp.array([[1.0]]), jnp.zeros((1, 1, 1)), jnp.zeros((1, 1, 1)))
  assert float(w[0, 2]) == 0.0  # the empty slot
  chex.assert_trees_all_equal(persistent.reset(state), persistent.init_state(2, 1, 1))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_layer_batch_axes_equal_each_example(batch):
  layer = persistent.PersistentMemoryAttention(num_heads=2, num_persistent=2)
  xs = jnp.asarray(np.random.default_rng(4).normal(size=batch + (3, 6)), jnp.float32)
  lp = layer.init(jax.random.key(1), xs)
  ys = layer.apply(lp, xs)
  assert ys.shape == xs.shape
  flat = xs.reshape(-1, 3, 6)
  apply1 = jax.jit(layer.apply)
  for i in range(flat.shape[0]):
    np.testing.assert_allclose(ys.reshape(-1, 3, 6)[i], apply1(lp, flat[i]), rtol=1e-5, atol=1e-6)


class JitTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_attention_jit_equals_eager(self):
    rng = np.random.default_rng(5)
    args = [
      jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(3, 2), (4, 2), (4, 1), (2, 2), (2, 1)]
    ]
    mask = persistent.causal_mask(4)[:3]
    out, w = self.variant(persistent.persistent_attention)(*args, mask)
    q, k, v, pk, pv = (np.asarray(a) for a in args)
    for i in range(3):
      s = np.concatenate([pk @ q[i], (k @ q[i])[: i + 1]]) / math.sqrt(2)
      e = np.exp(s - s.max())
      np.testing.assert_allclose(
        out[i], (e / e.sum()) @ np.concatenate([pv, v[: i + 1]]), rtol=1e-5, atol=1e-6
      )


def test_grads():
  rng = np.random.default_rng(6)
  args = tuple(
    jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(3, 2), (4, 2), (4, 2), (2, 2), (2, 2)]
  )
  f = lambda *a: persistent.persistent_attention(*a, persistent.causal_mask(4)[:3])[0]
  check_grads(jax.jit(f), args, order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
  layer = persistent.PersistentMemoryAttention(num_heads=2, num_persistent=2, causal=True)
  x = jnp.asarray(rng.normal(size=(1, 3, 4)), jnp.float32)
  params = layer.init(jax.random.key(0), x)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2)))(params)["params"]
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["persistent_values"]).sum()) > 0
  assert float(jnp.abs(grads["persistent_keys"]).sum()) > 0


_K, _V = jnp.ones((3, 4)), jnp.ones((3, 2))
_S = persistent.init_state(2, 2, 3)
_with = persistent.with_persistent


@pytest.mark.parametrize(
  "call, error, match",
  [
    (lambda: _with(_K, _V, jnp.ones((2, 5)), jnp.ones((2, 2))), ValueError, "persistent_keys"),
    (lambda: _with(_K, _V, jnp.ones((2, 4)), jnp.ones((2, 3))), ValueError, "persistent_values"),
    (
      lambda: _with(_K, _V, jnp.ones((2, 4)), jnp.ones((1, 2))),
      ValueError,
      "persistent_values has 1 slots",
    ),
    (
      lambda: _with(_K, jnp.ones((2, 2)), jnp.ones((2, 4)), jnp.ones((2, 2))),
      ValueError,
      r"\bvalues\b",
    ),
    (
      lambda: _with(_K, _V, jnp.ones((2, 4)), jnp.ones((2, 2)), jnp.ones(3)),
      TypeError,
      r"\bmask\b",
    ),
    (
      lambda: _with(_K.astype(jnp.int32), _V, jnp.ones((2, 4)), jnp.ones((2, 2))),
      TypeError,
      "keys must have a floating",
    ),
    (
      lambda: persistent.write(_S, jnp.ones((3, 2)), jnp.ones((2, 3))),
      ValueError,
      r"key must have shape \(2, 3\) \[Hd, Dh\], got \(3, 2\)",
    ),
    (
      lambda: persistent.read(_S, jnp.ones(3), jnp.ones((2, 1, 3)), jnp.ones((2, 1, 3))),
      ValueError,
      r"query must have shape \(2, 3\) \[Hd, Dh\], got \(3,\)",
    ),
    (lambda: persistent.init_state(0, 2, 3), ValueError, r"\bwindow\b"),
    (
      lambda: persistent.PersistentMemoryAttention(num_heads=3, num_persistent=2).init(
        jax.random.key(0), jnp.ones((2, 4))
      ),
      ValueError,
      "qkv_features=4 must be divisible by num_heads=3",
    ),
    (
      lambda: persistent.PersistentMemoryAttention(num_heads=2, num_persistent=2).init(
        jax.random.key(0), jnp.ones((2, 4)), jnp.ones((3, 3), bool)
      ),
      ValueError,
      "mask must have shape",
    ),
    (
      lambda: persistent.PersistentMemoryAttention(num_heads=2, num_persistent=2).init(
        jax.random.key(0), jnp.ones(4)
      ),
      ValueError,
      "x must have rank",
    ),
  ],
)
def test_bad_inputs_name_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
