"""memjax.data.sinusoid: the MAML sinusoid tasks (ranges, targets, purity, errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.data import sinusoid


def test_targets_are_the_sine_of_each_task():
  tasks = jax.device_get(sinusoid.sample_tasks(jax.random.key(0), 50, 5, 7))
  assert tasks.support_x.shape == (50, 5, 1) and tasks.query_x.shape == (50, 7, 1)
  amp, phase = tasks.amplitude[:, None, None], tasks.phase[:, None, None]
  np.testing.assert_allclose(tasks.support_y, amp * np.sin(tasks.support_x - phase), atol=1e-5)
  np.testing.assert_allclose(tasks.query_y, amp * np.sin(tasks.query_x - phase), atol=1e-5)
  assert tasks.query_y.dtype == np.float32


def test_ranges_and_spread_of_the_draws():
  tasks = jax.device_get(sinusoid.sample_tasks(jax.random.key(1), 4000, 10))
  for values, lo, hi in (
    (tasks.amplitude, 0.1, 5.0),
    (tasks.phase, 0.0, np.pi),
    (tasks.support_x, -5.0, 5.0),
    (tasks.query_x, -5.0, 5.0),
  ):
    assert values.min() >= lo and values.max() <= hi
    # uniform: the mean is the middle of the range, the extremes near its ends
    assert abs(values.mean() - (lo + hi) / 2) < 0.03 * (hi - lo)
    assert values.min() < lo + 0.01 * (hi - lo) and values.max() > hi - 0.01 * (hi - lo)
  # support and query points are separate draws
  assert not np.allclose(tasks.support_x, tasks.query_x)


def test_pure_same_key_same_tasks_and_usable_in_scan():
  a = sinusoid.sample_tasks(jax.random.key(3), 4, 10)
  b = jax.jit(sinusoid.sample_tasks, static_argnums=(1, 2))(jax.random.key(3), 4, 10)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  c = sinusoid.sample_tasks(jax.random.key(4), 4, 10)
  assert not np.allclose(a.amplitude, c.amplitude)

  def body(key, _):
    key, sub = jax.random.split(key)
    return key, sinusoid.sample_tasks(sub, 2, 3).amplitude

  _, amps = jax.lax.scan(body, jax.random.key(0), length=5)
  assert amps.shape == (5, 2) and len(np.unique(np.asarray(amps))) == 10


def test_custom_ranges_and_dtype():
  tasks = sinusoid.sample_tasks(
    jax.random.key(0),
    100,
    3,
    amplitude=(1.0, 1.0),
    phase=(0.0, 0.0),
    x_range=(0.0, 1.0),
    dtype=jnp.bfloat16,
  )
  assert tasks.support_x.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(tasks.amplitude, np.float32), 1.0)
  assert float(tasks.support_x.min()) >= 0.0 and float(tasks.support_x.max()) <= 1.0


def test_bad_arguments_name_the_problem():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="num_shots=0 must be a positive integer"):
    sinusoid.sample_tasks(key, 4, 0)
  with pytest.raises(ValueError, match="num_queries=-1"):
    sinusoid.sample_tasks(key, 4, 5, -1)
  with pytest.raises(ValueError, match=r"amplitude=\(5.0, 0.1\) must be \(low, high\)"):
    sinusoid.sample_tasks(key, 4, 5, amplitude=(5.0, 0.1))
  with pytest.raises(TypeError, match="dtype must be floating"):
    sinusoid.sample_tasks(key, 4, 5, dtype=jnp.int32)
