"""memjax.train.clip: optax's clipping rules with the norms in few reductions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import parameterized

from memjax.train import clip


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  # Leaves of three sizes, two sharing a size (stacked together), one int-free scalar.
  return {
    "embed": [jnp.asarray(rng.normal(size=(17, 5)) * 3, jnp.float32) for _ in range(3)],
    "time": [jnp.asarray(rng.normal(size=(5, 17)), jnp.float32)],  # same size as embed
    "bias": jnp.asarray(rng.normal(size=(4,)) * 0.01, jnp.float32),
    "scale": jnp.asarray(20.0, jnp.float32),
  }


def test_global_norm_matches_a_float64_reference():
  tree = _tree()
  want = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(tree)))
  np.testing.assert_allclose(clip.global_norm(tree), want, rtol=1e-6)
  assert float(clip.global_norm({})) == 0.0


def test_leaf_norms_match_each_leaf():
  tree = _tree()
  norms = clip.leaf_norms(tree)
  assert jax.tree.structure(norms) == jax.tree.structure(tree)
  for x, n in zip(jax.tree.leaves(tree), jax.tree.leaves(norms), strict=True):
    np.testing.assert_allclose(n, np.linalg.norm(np.asarray(x, np.float64).ravel()), rtol=1e-6)


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.5, 1e4)  # clipped / unchanged
  def test_clip_by_global_norm_matches_optax(self, max_norm):
    tree = _tree(1)
    ours = clip.clip_by_global_norm(max_norm)
    ref = optax.clip_by_global_norm(max_norm)
    got, _ = self.variant(ours.update)(tree, ours.init(tree))
    want, _ = ref.update(tree, ref.init(tree))
    chex.assert_trees_all_close(got, want, rtol=1e-6)
    if max_norm < 1:
      np.testing.assert_allclose(clip.global_norm(got), max_norm, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_clip_each_by_norm_clips_leaves_separately(self):
    tree = _tree(2)
    max_norm = 10.0
    ours = clip.clip_each_by_norm(max_norm)
    got, _ = self.variant(ours.update)(tree, ours.init(tree))
    ref = optax.clip_by_global_norm(max_norm)  # optax's rule, one leaf at a time
    for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(got), strict=True):
      np.testing.assert_allclose(y, ref.update(x, ref.init(x))[0], rtol=1e-6)
    norms = jax.tree.leaves(clip.leaf_norms(tree))
    assert any(n > max_norm for n in norms) and any(n < max_norm for n in norms)


def test_clip_each_by_norm_known_answer():
  c = clip.clip_each_by_norm(1.0)
  grads = {"a": np.array([3.0, 4.0]), "b": np.array([0.3, 0.4])}
  out, _ = c.update(grads, c.init(grads))
  np.testing.assert_allclose(out["a"], [0.6, 0.8], rtol=1e-6)  # norm 5 -> 1
  np.testing.assert_allclose(out["b"], [0.3, 0.4], rtol=1e-6)  # norm 0.5: unchanged


def test_one_reduction_for_the_global_norm():
  # The point of the module: one reduce for any number of leaves (optax: one per leaf).
  tree = _tree()
  hlo = jax.jit(clip.global_norm).lower(tree).as_text()
  assert hlo.count("stablehlo.reduce") == 1
  hlo = jax.jit(clip.leaf_norms).lower(tree).as_text()
  assert hlo.count("stablehlo.reduce") == 3  # sizes 85, 4, 1
