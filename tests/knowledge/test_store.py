"""Tests for memjax.knowledge.store: bit-exact reload, crash-safe saves, deletion that
leaves no trace in any file, sharded exact queries."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax import knowledge as K
from memjax.knowledge import store as store_lib

SECRET = "mary_quite_contrary"
_integrate_batch = jax.jit(K.integrate_batch, static_argnames="policy")


def _state(dtype=jnp.float32, n=10, m=9):
  """A memory with versions, two owners (Mary = 1, John = 2) and distinctive floats."""
  rng = np.random.default_rng(0)
  keys = rng.standard_normal((m, 6)).astype(np.float32)
  keys[m - 3] = keys[0]  # a new version of fact 0 (both Mary's)
  values = (1000 + rng.random((m, 4))).astype(np.float32)
  owners = np.array([1, 2] * (m // 2) + [1] * (m % 2), np.int32)
  s = _integrate_batch(
    K.init_state(n, 6, 4, dtype),
    keys,
    values,
    np.arange(m, dtype=np.float32),
    rng.random(m).astype(np.float32),
    owners,
    policy="versions",
  )
  return K.decay(s, float(m), half_life=4.0)  # a non-zero clock


def _files(root):
  for folder, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(folder, name), "rb") as f:
        yield os.path.join(folder, name), f.read()


def _assert_bit_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shard_capacity", [None, 3])
def test_reload_is_bit_exact(tmp_path, dtype, shard_capacity):
  state = _state(dtype)
  K.save_state(tmp_path, state, shard_capacity, owners={SECRET: 1, "john": 2})
  loaded, owners = K.load_state(tmp_path)
  _assert_bit_equal(loaded, state)
  assert owners == {SECRET: 1, "john": 2}
  assert K.FactStore.open(tmp_path).num_shards == (4 if shard_capacity else 1)
  for name, data in _files(tmp_path):  # no pickle anywhere
    if name.endswith(".npy"):
      assert b"pickle" not in data and b"'O'" not in data[:128], name


def test_a_crash_while_writing_a_shard_keeps_the_previous_copy(tmp_path, monkeypatch):
  old = _state()
  K.save_state(tmp_path, old, 4)
  new = K.delete_owner(old, 2)
  real, calls = store_lib._write_array, []

  def crash_on_the_fifth_file(path, array):
    calls.append(path)
    if len(calls) == 5:
      with open(path, "wb") as f:  # half a file, then the process dies
        f.write(b"\x93NUMPY" + b"\0" * 7)
      raise KeyboardInterrupt("killed mid-save")
    real(path, array)

  monkeypatch.setattr(store_lib, "_write_array", crash_on_the_fifth_file)
  with pytest.raises(KeyboardInterrupt):
    K.save_state(tmp_path, new, 4)
  monkeypatch.setattr(store_lib, "_write_array", real)
  assert any(".tmp-" in name for name, _ in _files(tmp_path))  # the crash's leftovers
  loaded, _ = K.load_state(tmp_path)  # opening removes them
  _assert_bit_equal(loaded, old)
  assert not any(".tmp-" in name for name, _ in _files(tmp_path))
  K.save_state(tmp_path, new, 4)  # and the next save goes through
  _assert_bit_equal(K.load_state(tmp_path)[0], new)


def test_a_crash_before_the_manifest_commit_keeps_the_previous_copy(tmp_path, monkeypatch):
  old = _state()
  K.save_state(tmp_path, old, 4, owners={SECRET: 1})
  real = store_lib._write_json_atomic

  def die(path, payload):
    raise KeyboardInterrupt("killed before the commit")

  monkeypatch.setattr(store_lib, "_write_json_atomic", die)
  with pytest.raises(KeyboardInterrupt):
    K.FactStore.open(tmp_path).delete_owner(SECRET)
  monkeypatch.setattr(store_lib, "_write_json_atomic", real)
  loaded, owners = K.load_state(tmp_path)
  _assert_bit_equal(loaded, old)
  assert owners == {SECRET: 1}
  # The orphaned new shards (written, never committed) are gone after the open.
  shards = sorted(os.listdir(tmp_path / "shards"))
  manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
  assert shards == sorted(s["name"] for s in manifest["shards"])


def _secret_patterns(state, owner):
  """Byte strings of the owner's rows: each key / value row and each value float."""
  rows = np.flatnonzero(np.asarray(state.owner) == owner)
  assert rows.size >= 3
  out = [SECRET.encode()]
  for r in rows:
    out.append(np.asarray(state.kv.keys[r]).tobytes())
    out.append(np.asarray(state.kv.values[r]).tobytes())
    out.extend(np.asarray(state.kv.values[r]).astype(np.float32).view(np.uint8).reshape(-1, 4))
  return [bytes(p) for p in out]


def test_delete_owner_leaves_no_trace_on_disk(tmp_path):
  state = _state()
  K.save_state(tmp_path, state, 3, owners={SECRET: 1, "john": 2})
  patterns = _secret_patterns(state, 1)
  before = b"".join(data for _, data in _files(tmp_path))
  assert all(p in before for p in patterns)  # the grep finds them while they are there

  store = K.FactStore.open(tmp_path)
  deleted = store.delete_owner(SECRET)
  assert deleted == int(np.sum(np.asarray(state.owner) == 1))
  for name, data in _files(tmp_path):
    for p in patterns:
      assert p not in data, f"{name} still holds bytes of a deleted row"
  loaded, owners = K.load_state(tmp_path)
  assert owners == {"john": 2}
  _assert_bit_equal(loaded, K.delete_owner(state, 1))  # the same as deleting in memory
  # A new owner never gets the deleted owner's id.
  store.append(np.ones((1, 6)), np.ones((1, 4)), [20.0], owners=["ann"])
  assert store.owners["ann"] == 3


def test_delete_key_on_disk(tmp_path):
  state = _state()
  K.save_state(tmp_path, state, 4)
  key = np.asarray(state.kv.keys[0])
  assert K.FactStore.open(tmp_path).delete_key(key) == 2  # both versions
  _assert_bit_equal(K.load_state(tmp_path)[0], K.delete_key(state, key))
  for _, data in _files(tmp_path):
    assert key.tobytes() not in data


def test_sharded_query_equals_the_exact_top_k(tmp_path):
  rng = np.random.default_rng(1)
  n, k = 50, 5
  keys = rng.standard_normal((n, 8)).astype(np.float32)
  keys[7] = keys[30]  # a tie across shards: the lower row first
  store = K.FactStore.create(tmp_path, 8, 3, shard_capacity=8)
  store.append(keys[:20], rng.random((20, 3)), np.arange(20.0))
  store.append(keys[20:], rng.random((30, 3)), np.arange(20.0, 50.0))
  assert store.num_shards == 7 and store.num_rows == n
  state, _ = K.load_state(tmp_path)
  queries = np.concatenate([rng.standard_normal((6, 8)), keys[30:31]]).astype(np.float32)
  hits = K.FactStore.open(tmp_path).query(queries, k)
  unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
  cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
  want = np.argsort(-cos, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(hits.rows, want)
  np.testing.assert_allclose(hits.scores, np.take_along_axis(cos, want, 1), atol=1e-5)
  assert hits.rows[-1, :2].tolist() == [7, 30]
  one = K.read(state, queries, k)  # the unsharded memory's read
  np.testing.assert_array_equal(hits.rows, np.asarray(one.indices))
  np.testing.assert_array_equal(hits.values, np.asarray(one.values))
  # Repeated queries from device-resident shards give the same answer.
  again = store.query(queries, k, cache_on_device=True)
  again = store.query(queries, k, cache_on_device=True)
  np.testing.assert_array_equal(again.rows, hits.rows)


def test_append_rewrites_only_the_last_shard(tmp_path):
  store = K.FactStore.create(tmp_path, 2, 1, shard_capacity=4)
  store.append(np.eye(2)[[0, 1, 0, 1, 0]], np.ones((5, 1)), np.arange(5.0))
  first = [s["name"] for s in store._manifest["shards"]]
  store.append(np.eye(2)[[1]], np.ones((1, 1)), [5.0])
  second = [s["name"] for s in store._manifest["shards"]]
  assert second[0] == first[0] and second[1] != first[1]
  assert sorted(os.listdir(tmp_path / "shards")) == sorted(second)


def test_errors_name_the_path(tmp_path):
  with pytest.raises(K.StoreError, match=f"{tmp_path}.*no store manifest"):
    K.FactStore.open(tmp_path)
  K.save_state(tmp_path, _state(), 5)
  with pytest.raises(K.StoreError, match="a store exists here already"):
    K.FactStore.create(tmp_path, 6, 4)
  store = K.FactStore.open(tmp_path)
  with pytest.raises(ValueError, match=r"queries have shape \(1, 5\).*6 wide"):
    store.query(np.ones((1, 5)), 1)
  # A pickled object array in place of a shard file is refused, never unpickled.
  name = store._manifest["shards"][0]["name"]
  np.save(tmp_path / "shards" / name / "keys.npy", np.array([{"x": 1}], dtype=object))
  with pytest.raises(K.StoreError, match=r"keys\.npy: unreadable shard file.*allow_pickle"):
    K.load_state(tmp_path)
  os.remove(tmp_path / "shards" / name / "values.npy")
  with pytest.raises(K.StoreError, match=r"values\.npy: missing shard file"):
    K.FactStore.open(tmp_path)


def test_fewer_live_rows_than_k_read_as_empty(tmp_path):
  store = K.FactStore.create(tmp_path, 2, 1, shard_capacity=4)
  store.append(np.eye(2), np.full((2, 1), 7.0), [0.0, 1.0], owners=["ann", "bob"])
  hits = store.query(np.array([[1.0, 0.0]]), k=3)
  assert hits.rows[0, :2].tolist() == [0, 1] and hits.scores[0, 2] == -np.inf
  assert hits.values[0, :, 0].tolist() == [7.0, 7.0, 0.0]  # the padding row reads as empty
  assert hits.owners[0].tolist() == [0, 1, -1]
