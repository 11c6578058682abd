"""memjax.continual.distill: the KD, distillation and LwF losses against their formulas in
numpy (float64), masks, zero at agreement, no gradient into the teacher, jit vs no-jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.continual import distill


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kd(s, t, labels, temperature, alpha, mask=None):
  s, t = np.float64(s), np.float64(t)
  if mask is not None:
    s, t = s[..., mask], t[..., mask]
  log_p, log_q = _log_softmax(t / temperature), _log_softmax(s / temperature)
  kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1).mean()
  soft = temperature**2 * kl
  if labels is None:
    return soft
  hard = -_log_softmax(s)[np.arange(len(labels)), labels].mean()
  return alpha * soft + (1 - alpha) * hard


def _logits(seed, shape=(6, 5), scale=3.0):
  return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0)])
@pytest.mark.parametrize("jit", [False, True])
def test_kd_loss_matches_the_formula(temperature, alpha, jit):
  s, t = _logits(0), _logits(1)
  labels = np.array([0, 4, 2, 1, 3, 3], np.int32)
  fn = lambda a, b, c: distill.kd_loss(a, b, c, temperature=temperature, alpha=alpha)
  got = (jax.jit(fn) if jit else fn)(s, t, labels)
  np.testing.assert_allclose(got, _np_kd(s, t, labels, temperature, alpha), rtol=1e-5)


def test_soft_term_is_t_squared_kl_and_zero_at_agreement():
  s, t = _logits(2, (3, 2, 7)), _logits(3, (3, 2, 7))  # two leading axes
  for temperature in (1.0, 3.0, 10.0):
    got = distill.distillation_loss(s, t, temperature=temperature)
    expect = _np_kd(s.reshape(6, 7), t.reshape(6, 7), None, temperature, 1.0)
    np.testing.assert_allclose(got, expect, rtol=1e-5)
  assert float(distill.distillation_loss(t, t, temperature=3.0)) == pytest.approx(0.0, abs=1e-6)
  assert float(distill.kd_loss(s, t, temperature=2.0, alpha=1.0)) > 0


def test_gradients_reach_the_student_only():
  s, t = _logits(4), _logits(5)
  labels = np.zeros(6, np.int32)
  g_s, g_t = jax.grad(lambda a, b: distill.kd_loss(a, b, labels, temperature=3.0), argnums=(0, 1))(
    s, t
  )
  assert np.all(np.asarray(g_t) == 0.0) and np.abs(g_s).max() > 0
  # The soft term's gradient in closed form: T^2 * (q - p) / T / B = T (q - p) / B.
  temperature = 3.0
  g = jax.grad(lambda a: distill.distillation_loss(a, t, temperature=temperature))(s)
  p, q = np.exp(_log_softmax(t / temperature)), np.exp(_log_softmax(s / temperature))
  np.testing.assert_allclose(g, temperature * (q - p) / 6, rtol=1e-4, atol=1e-7)


def test_masked_distillation_and_lwf():
  s, t = _logits(6), _logits(7)
  mask = np.array([True, False, True, True, False])
  got = distill.lwf_loss(s, t, jnp.asarray(mask))
  np.testing.assert_allclose(got, _np_kd(s, t, None, 2.0, 1.0, mask), rtol=1e-5)
  # The masked-out logits do not matter, and get no gradient.
  s2 = s.copy()
  s2[:, ~mask] += 100.0
  np.testing.assert_allclose(distill.lwf_loss(s2, t, jnp.asarray(mask)), got, rtol=1e-5)
  g = jax.grad(lambda a: distill.lwf_loss(a, t, jnp.asarray(mask)))(s)
  assert np.all(np.asarray(g)[:, ~mask] == 0.0)
  # No old class (the first task): 0, with a finite, zero gradient.
  none = jnp.zeros(5, bool)
  assert float(distill.lwf_loss(s, t, none)) == 0.0
  g = jax.grad(lambda a: distill.lwf_loss(a, t, none))(s)
  assert np.all(np.asarray(g) == 0.0)


def test_errors_name_the_problem():
  s = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="alpha=0.5 < 1 mixes in hard targets: pass the labels"):
    distill.kd_loss(s, s, alpha=0.5)
  with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0, 1\]"):
    distill.kd_loss(s, s, alpha=1.5)
  with pytest.raises(ValueError, match="temperature=0.0 must be positive"):
    distill.distillation_loss(s, s, temperature=0.0)
  with pytest.raises(AssertionError, match="equal_shape"):
    distill.distillation_loss(s, jnp.zeros((2, 4)))
