"""Algorithmic task generators: formats checked example by example, seeds, jit, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.data import algorithmic


def test_copy_format():
  b = jax.device_get(algorithmic.copy_task(jax.random.key(0), 16, 1, 6, num_bits=4))
  t_total = algorithmic.copy_sequence_length(6)
  assert b.inputs.shape == (16, t_total, 5) and b.targets.shape == (16, t_total, 4)
  assert b.mask.shape == (16, t_total) and b.lengths.shape == (16,)
  for x, y, m, n in zip(b.inputs, b.targets, b.mask, b.lengths, strict=True):
    assert 1 <= n <= 6
    np.testing.assert_array_equal(x[:, 4], np.arange(t_total) == n)  # delimiter at step L
    np.testing.assert_array_equal(x[n:, :4], 0)  # no bits after the sequence
    np.testing.assert_array_equal(y[n + 1 : 2 * n + 1], x[:n, :4])  # the copy
    np.testing.assert_array_equal(m, (np.arange(t_total) > n) & (np.arange(t_total) <= 2 * n))
    np.testing.assert_array_equal(y[m == 0], 0)
  assert set(np.unique(b.inputs)) <= {0.0, 1.0}


def test_copy_statistics_and_seeds():
  a = algorithmic.copy_task(jax.random.key(1), 512, 1, 20)
  b = algorithmic.copy_task(jax.random.key(1), 512, 1, 20)
  c = algorithmic.copy_task(jax.random.key(2), 512, 1, 20)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a.inputs, c.inputs)
  lengths = np.asarray(a.lengths)
  assert lengths.min() == 1 and lengths.max() == 20
  bits = np.asarray(a.inputs[..., :8])[np.asarray(a.inputs[..., 8]).cumsum(1) == 0]
  assert abs(bits.mean() - 0.5) < 0.02


def test_copy_fixed_length_and_pad_to_under_jit():
  fn = jax.jit(lambda k: algorithmic.copy_task(k, 3, 7, 7, pad_to=20))
  b = fn(jax.random.key(3))
  assert b.inputs.shape == (3, 20, 9)
  np.testing.assert_array_equal(b.lengths, [7, 7, 7])
  np.testing.assert_array_equal(b.mask.sum(1), [7, 7, 7])


def test_repeat_copy_format():
  b = jax.device_get(algorithmic.repeat_copy_task(jax.random.key(4), 16, 1, 4, 1, 3, num_bits=3))
  t_total = algorithmic.repeat_copy_sequence_length(4, 3)
  assert b.inputs.shape == (16, t_total, 5) and b.targets.shape == (16, t_total, 4)
  for x, y, m, n in zip(b.inputs, b.targets, b.mask, b.lengths, strict=True):
    repeats = round(float(x[n, 4]) * 3)
    assert 1 <= repeats <= 3 and x[n, 3] == 1 and x[:, 3].sum() == 1
    end = n * (repeats + 1) + 1
    np.testing.assert_array_equal(y[n + 1 : end, :3], np.tile(x[:n, :3], (repeats, 1)))
    np.testing.assert_array_equal(y[:, 3], np.arange(t_total) == end)  # end marker
    assert m.sum() == n * repeats + 1 and m[end] == 1 and m[n] == 0


def test_associative_recall_format():
  b = jax.device_get(algorithmic.associative_recall_task(jax.random.key(5), 32, 2, 5, 3, 4))
  t_total = algorithmic.associative_recall_sequence_length(5, 3)
  assert b.inputs.shape == (32, t_total, 6) and b.targets.shape == (32, t_total, 4)
  for x, y, m, n in zip(b.inputs, b.targets, b.mask, b.lengths, strict=True):
    assert 2 <= n <= 5
    item_starts = np.nonzero(x[:, 4])[0]
    np.testing.assert_array_equal(item_starts, np.arange(n) * 4)
    items = [x[s + 1 : s + 4, :4] for s in item_starts]
    q0, q1 = np.nonzero(x[:, 5])[0]
    assert q0 == n * 4 and q1 == q0 + 4
    query = x[q0 + 1 : q1, :4]
    matches = [i for i, item in enumerate(items[:-1]) if np.array_equal(item, query)]
    assert matches, "the query is one of the items (not the last)"
    answer = y[m == 1]
    assert answer.shape == (3, 4)
    assert any(np.array_equal(items[i + 1], answer) for i in matches)
    np.testing.assert_array_equal(np.nonzero(m)[0], np.arange(q1 + 1, q1 + 4))


@pytest.mark.parametrize(
  "call, name",
  [
    (lambda: algorithmic.copy_task(jax.random.key(0), 2, 5, 3), "min_length"),
    (lambda: algorithmic.copy_task(jax.random.key(0), 0), "batch_size"),
    (lambda: algorithmic.copy_task(jax.random.key(0), 2, 1, 5, pad_to=4), "pad_to"),
    (lambda: algorithmic.repeat_copy_task(jax.random.key(0), 2, min_repeats=0), "min_repeats"),
    (lambda: algorithmic.associative_recall_task(jax.random.key(0), 2, min_items=1), "min_items"),
  ],
)
def test_bad_arguments_name_the_argument(call, name):
  with pytest.raises(ValueError, match=rf"\b{name}\b"):
    call()


def test_generator_dtypes():
  b = algorithmic.associative_recall_task(jax.random.key(0), 2)
  assert b.inputs.dtype == jnp.float32 and b.mask.dtype == jnp.float32
  assert b.lengths.dtype == jnp.int32


@pytest.mark.parametrize(
  "name,direct",
  [
    ("copy", lambda k, b, lo, hi: algorithmic.copy_task(k, b, lo, hi, 4)),
    ("repeat_copy", lambda k, b, lo, hi: algorithmic.repeat_copy_task(k, b, lo, hi, 1, 3, 4)),
    (
      "associative_recall",
      lambda k, b, lo, hi: algorithmic.associative_recall_task(k, b, lo, hi, 3, 4),
    ),
  ],
)
def test_tasks_by_name_are_the_generators(name, direct):
  settings = dict(num_bits=4, min_length=2, max_length=5, max_repeats=3, min_items=2, max_items=4)
  task = algorithmic.make_task(name, **settings)
  lo, hi = (2, 4) if name == "associative_recall" else (2, 5)
  key = jax.random.key(5)
  got, want = task.train_batch(key, 6), direct(key, 6, lo, hi)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a, b)
  assert task.input_size == got.inputs.shape[-1] and task.output_size == got.targets.shape[-1]
  np.testing.assert_array_equal(task.eval_batch(key, 6, 3).lengths, 3)
  groups = algorithmic.length_groups(name, 2, **settings)
  assert sum(groups.probs) == pytest.approx(1.0)
  for fn in groups.batches:
    lengths = np.asarray(fn(key, 32).lengths)
    assert lo <= lengths.min() and lengths.max() <= hi


def test_unknown_task_name():
  with pytest.raises(ValueError, match="task name='sort'"):
    algorithmic.make_task("sort", num_bits=4)
