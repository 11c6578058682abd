"""A persistent long-term fact store on disk: shards of ``.npy`` files and a JSON manifest.

Layout of a store folder::

  MANIFEST.json            format, sizes, dtypes, the shard list, owner names -> ids
  shards/<shard>/<field>.npy   one file per FactState field (keys, values, timestamp, ...)

The rows of the store are the slots of a :class:`memjax.knowledge.FactState`, cut into
shards of ``shard_capacity`` rows, so a store grows past what one device array (or host
memory) holds: a query streams the shards (memory-mapped) through the exact top-k of
:func:`memjax.ops.top_k_search` and merges the per-shard results into the exact top-k
over the whole store.

Crash safety: nothing is ever modified in place. A save writes the changed shards under
new names (a temporary folder, fsynced, then renamed), then the new manifest to a
temporary file, fsynced, and ``os.replace`` s it over ``MANIFEST.json``: that rename is
the commit. Only then are the files the new manifest does not name removed. A crash at
any point leaves the last committed manifest and every file it names intact; leftovers
of an unfinished save are removed by the next :meth:`FactStore.open` or save.

Deletion (:meth:`FactStore.delete_owner`, :meth:`FactStore.delete_key`) rewrites every
shard that held a deleted row with the row zeroed, commits, and removes the old shard
files, and drops the owner's name from the manifest: afterwards no file under the store
holds the deleted rows' bytes or the owner's name.

No pickle: arrays are written by ``np.save(allow_pickle=False)`` and read by
``np.load(allow_pickle=False)``; dtypes numpy cannot describe (bfloat16) are stored as
their unsigned-integer bits with the dtype's name in the manifest, so every reload is
bit-exact with its dtype.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from memjax.knowledge import facts
from memjax.memory import kv
from memjax.ops import retrieval

FORMAT = "memjax.knowledge.store"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
SHARDS = "shards"
# The per-row arrays of a shard, in FactState order (kv fields, then the fact fields).
ROW_FIELDS = (
  "keys",
  "values",
  "written",
  "last_read",
  "hits",
  "valid",
  "timestamp",
  "confidence",
  "owner",
  "version",
  "active",
)


class StoreError(ValueError):
  """A store folder that is missing, damaged or of another format (names the path)."""


class StoreHits(NamedTuple):
  """What :meth:`FactStore.query` returns (best first)."""

  scores: np.ndarray  # [Q, k] similarity (-inf: fewer than k live rows)
  rows: np.ndarray  # [Q, k] int64 global row ids (shard index * capacity + row)
  values: np.ndarray  # [Q, k, V]
  owners: np.ndarray  # [Q, k] int32 owner ids (-1 none)


# ----------------------------------------------------------------------------- files


def _fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _write_array(path: str, array: np.ndarray) -> None:
  """Writes one ``.npy`` file and fsyncs it (tests replace this to simulate a crash)."""
  with open(path, "wb") as f:
    np.save(f, array, allow_pickle=False)
    f.flush()
    os.fsync(f.fileno())


def _disk_form(array: np.ndarray) -> tuple[np.ndarray, str]:
  """The array numpy can save without pickle, and its dtype's name."""
  name = str(array.dtype)
  if array.dtype.kind == "V" or array.dtype.type.__module__ not in ("numpy",):
    return array.view(f"u{array.dtype.itemsize}"), name  # e.g. bfloat16 as its bits
  return array, name


def _from_disk(array: np.ndarray, name: str) -> np.ndarray:
  if str(array.dtype) == name:
    return array
  return array.view(jnp.dtype(name))


def _write_json_atomic(path: str, payload: dict) -> None:
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  _fsync_dir(os.path.dirname(path))


def _state_rows(state: facts.FactState) -> dict[str, np.ndarray]:
  s = jax.device_get(state)
  rows = {name: np.asarray(getattr(s.kv, name)) for name in ROW_FIELDS[:6]}
  rows.update({name: np.asarray(getattr(s, name)) for name in ROW_FIELDS[6:]})
  return rows


def _assign_owner(manifest: dict, owner: str | int) -> int:
  """The id of ``owner`` in ``manifest``, giving a new name a fresh id (never a retired one)."""
  if isinstance(owner, (int, np.integer)):
    return int(owner)
  owners = manifest["owners"]
  if owner not in owners:
    used = list(owners.values()) + list(manifest.get("retired_ids", []))
    owners[str(owner)] = max(used + [-1]) + 1
  return owners[owner]


def _zero_rows(rows: dict[str, np.ndarray], drop: np.ndarray) -> dict[str, np.ndarray]:
  """The rows with ``drop`` ones emptied exactly as :func:`facts.delete_slots` does."""
  out = {}
  empty = {"written": -1, "last_read": -1, "owner": facts.NO_OWNER}
  for name, array in rows.items():
    array = np.array(array)  # a writable copy (shards are memory-mapped read-only)
    array[drop] = empty.get(name, 0)
    out[name] = array
  return out


class FactStore:
  """A fact store on disk (see the module docstring). Not thread-safe; one writer.

  Create one with :meth:`create` or :func:`save_state`, open it with :meth:`open`.

  Example:
    >>> import tempfile
    >>> path = tempfile.mkdtemp()
    >>> store = FactStore.create(path, key_size=3, value_size=2, shard_capacity=4)
    >>> store.append(jnp.eye(3), jnp.ones((3, 2)), times=[1, 2, 3], owners=["mary"] * 3)
    >>> hits = FactStore.open(path).query(jnp.array([[0.0, 1.0, 0.0]]), k=1)
    >>> hits.rows.tolist(), store.num_rows
    ([[1]], 3)
  """

  def __init__(self, path: str, manifest: dict):
    self.path = os.path.abspath(path)
    self._manifest = manifest
    self._device_cache: dict[str, tuple[jax.Array, jax.Array]] = {}

  # -- opening and creating

  @classmethod
  def create(
    cls,
    path: str | os.PathLike,
    key_size: int,
    value_size: int,
    shard_capacity: int = 65536,
    dtype: Any = jnp.float32,
  ) -> FactStore:
    """An empty store at ``path`` (created; it must not hold a store already)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(os.path.join(path, MANIFEST)):
      raise StoreError(f"{path}: a store exists here already (open it, or remove it first)")
    if shard_capacity < 1:
      raise ValueError(f"shard_capacity={shard_capacity} must be >= 1")
    os.makedirs(os.path.join(path, SHARDS), exist_ok=True)
    manifest = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "generation": 0,
      "key_size": int(key_size),
      "value_size": int(value_size),
      "dtype": str(jnp.dtype(dtype)),
      "shard_capacity": int(shard_capacity),
      "shards": [],
      "owners": {},
      "step": 0,
      "clock": 0.0,
    }
    _write_json_atomic(os.path.join(path, MANIFEST), manifest)
    return cls(path, manifest)

  @classmethod
  def open(cls, path: str | os.PathLike) -> FactStore:
    """Opens a store and removes what an interrupted save left behind.

    Raises:
      StoreError: no ``MANIFEST.json``, a manifest of another format, or a shard file it
        names is missing (each names the path).
    """
    path = os.path.abspath(os.fspath(path))
    file = os.path.join(path, MANIFEST)
    if not os.path.isfile(file):
      raise StoreError(f"{file}: no store manifest here (create the store first)")
    try:
      with open(file, encoding="utf-8") as f:
        manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise StoreError(f"{file}: unreadable manifest: {e}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
      raise StoreError(
        f"{file}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}, "
        f"expected {FORMAT!r} version {FORMAT_VERSION}"
      )
    for shard in manifest["shards"]:
      for field in ROW_FIELDS:
        name = os.path.join(path, SHARDS, shard["name"], f"{field}.npy")
        if not os.path.isfile(name):
          raise StoreError(f"{name}: missing shard file named by {file}")
    store = cls(path, manifest)
    store._collect_garbage()
    return store

  # -- properties

  @property
  def key_size(self) -> int:
    return self._manifest["key_size"]

  @property
  def value_size(self) -> int:
    return self._manifest["value_size"]

  @property
  def shard_capacity(self) -> int:
    return self._manifest["shard_capacity"]

  @property
  def num_rows(self) -> int:
    """Rows held (live or emptied) over all shards."""
    return sum(s["rows"] for s in self._manifest["shards"])

  @property
  def num_shards(self) -> int:
    return len(self._manifest["shards"])

  @property
  def owners(self) -> dict[str, int]:
    """Owner names -> ids."""
    return dict(self._manifest["owners"])

  def owner_id(self, owner: str | int) -> int:
    """The id of an owner name; ints are returned as they are.

    Raises:
      KeyError: no owner of that name (naming the store).
    """
    if isinstance(owner, (int, np.integer)):
      return int(owner)
    if owner not in self._manifest["owners"]:
      raise KeyError(f"{self.path}: no owner named {owner!r}")
    return self._manifest["owners"][owner]

  # -- shards

  def _shard_dir(self, name: str) -> str:
    return os.path.join(self.path, SHARDS, name)

  def load_shard(self, index: int, mmap: bool = True) -> dict[str, np.ndarray]:
    """The arrays of shard ``index`` (memory-mapped, read-only, unless ``mmap=False``)."""
    shard = self._manifest["shards"][index]
    dtypes = self._manifest["array_dtypes"]
    out = {}
    for field in ROW_FIELDS:
      file = os.path.join(self._shard_dir(shard["name"]), f"{field}.npy")
      try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
      except (OSError, ValueError) as e:
        raise StoreError(f"{file}: unreadable shard file: {e}") from None
      out[field] = _from_disk(array, dtypes[field])
    return out

  def _write_shard(self, index: int, rows: dict[str, np.ndarray], generation: int) -> dict:
    """Writes a shard under a new name (temporary folder, then a rename); returns its entry."""
    name = f"{index:06d}-g{generation:06d}"
    shards = os.path.join(self.path, SHARDS)
    tmp = os.path.join(shards, f".tmp-{uuid.uuid4().hex}")
    os.makedirs(tmp)
    dtypes = {}
    for field in ROW_FIELDS:
      array, dtypes[field] = _disk_form(np.ascontiguousarray(rows[field]))
      _write_array(os.path.join(tmp, f"{field}.npy"), array)
    _fsync_dir(tmp)
    os.rename(tmp, os.path.join(shards, name))
    _fsync_dir(shards)
    self._manifest.setdefault("array_dtypes", {}).update(dtypes)
    return {"name": name, "rows": int(rows["keys"].shape[0])}

  def _commit(self, manifest: dict) -> None:
    """Makes ``manifest`` the store's (the atomic rename), then removes unnamed files."""
    _write_json_atomic(os.path.join(self.path, MANIFEST), manifest)
    self._manifest = manifest
    self._device_cache.clear()
    self._collect_garbage()

  def _collect_garbage(self) -> None:
    named = {s["name"] for s in self._manifest["shards"]}
    shards = os.path.join(self.path, SHARDS)
    os.makedirs(shards, exist_ok=True)
    for entry in os.listdir(shards):
      if entry not in named:
        shutil.rmtree(os.path.join(shards, entry), ignore_errors=True)
    for entry in os.listdir(self.path):
      if entry.startswith(f"{MANIFEST}.tmp-"):
        os.remove(os.path.join(self.path, entry))

  def _next_manifest(self) -> dict:
    manifest = json.loads(json.dumps(self._manifest))
    manifest["generation"] += 1
    return manifest

  # -- writing

  def append(
    self,
    keys: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    times: jax.typing.ArrayLike,
    confidences: jax.typing.ArrayLike | None = None,
    owners: list | np.ndarray | None = None,
  ) -> None:
    """Appends M facts as new rows and commits (only the last shard and new ones are
    written). Conflicts are not resolved here: integrate in a :class:`FactState` first
    when they matter, and save that (:func:`save_state`).

    Args:
      keys: [M, K].
      values: [M, V].
      times: [M].
      confidences: [M] (default 1).
      owners: [M] owner names (str) or ids (int), or None (no owner).
    """
    dtype = jnp.dtype(self._manifest["dtype"])
    keys = np.asarray(jnp.asarray(keys, dtype))
    values = np.asarray(jnp.asarray(values, dtype))
    m = keys.shape[0]
    if keys.shape != (m, self.key_size) or values.shape != (m, self.value_size):
      raise ValueError(
        f"append: keys {keys.shape} / values {values.shape} must be ({m}, {self.key_size}) / "
        f"({m}, {self.value_size}) for the store at {self.path}"
      )
    manifest = self._next_manifest()
    ids = np.full((m,), facts.NO_OWNER, np.int32)
    if owners is not None:
      if len(owners) != m:
        raise ValueError(f"append: {len(owners)} owners for {m} facts")
      ids = np.asarray([_assign_owner(manifest, o) for o in owners], np.int32)
    step = manifest["step"]
    new = {
      "keys": keys,
      "values": values,
      "written": np.arange(step, step + m, dtype=np.int32),
      "last_read": np.full((m,), -1, np.int32),
      "hits": np.zeros((m,), np.int32),
      "valid": np.ones((m,), bool),
      "timestamp": np.asarray(times, np.float32).reshape(m),
      "confidence": np.ones((m,), np.float32)
      if confidences is None
      else np.asarray(confidences, np.float32).reshape(m),
      "owner": ids,
      "version": np.zeros((m,), np.int32),
      "active": np.ones((m,), bool),
    }
    manifest["step"] = step + m
    shards = manifest["shards"]
    cap, start = self.shard_capacity, 0
    if shards and shards[-1]["rows"] < cap:  # fill the last shard (copy-on-write)
      last = self.load_shard(len(shards) - 1)
      take = min(cap - shards[-1]["rows"], m)
      rows = {f: np.concatenate([last[f], new[f][:take]]) for f in ROW_FIELDS}
      shards[-1] = self._write_shard(len(shards) - 1, rows, manifest["generation"])
      start = take
    while start < m:
      rows = {f: new[f][start : start + cap] for f in ROW_FIELDS}
      shards.append(self._write_shard(len(shards), rows, manifest["generation"]))
      start += cap
    manifest["array_dtypes"] = self._manifest["array_dtypes"]
    self._commit(manifest)

  def _rewrite(self, drop_fn, manifest: dict) -> int:
    """Rewrites every shard where ``drop_fn(rows) -> [n] bool`` drops rows; returns the
    number of rows dropped. ``manifest`` is committed (also when nothing was dropped)."""
    dropped = 0
    for i in range(len(manifest["shards"])):
      rows = self.load_shard(i)
      drop = np.asarray(drop_fn(rows)) & rows["valid"]
      if drop.any():
        dropped += int(drop.sum())
        manifest["shards"][i] = self._write_shard(i, _zero_rows(rows, drop), manifest["generation"])
    manifest["array_dtypes"] = self._manifest["array_dtypes"]
    self._commit(manifest)
    return dropped

  def delete_owner(self, owner: str | int) -> int:
    """Deletes every row of ``owner`` from every file (see the module docstring).

    Args:
      owner: the owner's name or id.

    Returns:
      The number of rows deleted.
    """
    oid = self.owner_id(owner)
    manifest = self._next_manifest()
    names = [n for n, i in manifest["owners"].items() if i == oid]
    for name in names:
      del manifest["owners"][name]
    manifest.setdefault("retired_ids", []).append(oid)  # never reused for another owner
    return self._rewrite(lambda rows: rows["owner"] == oid, manifest)

  def delete_key(self, key: jax.typing.ArrayLike, threshold: float = 0.95) -> int:
    """Deletes every row whose key has cosine similarity ``>= threshold`` with ``key``."""
    key = np.asarray(key, np.float64).reshape(self.key_size)
    unit = key / (np.linalg.norm(key) + 1e-12)

    def drop(rows):
      k = np.asarray(rows["keys"], np.float64)
      return (k @ unit) / (np.linalg.norm(k, axis=1) + 1e-12) >= threshold

    return self._rewrite(drop, self._next_manifest())

  # -- reading

  def query(
    self,
    queries: jax.typing.ArrayLike,
    k: int = 1,
    similarity: str = "cosine",
    cache_on_device: bool = False,
  ) -> StoreHits:
    """Exact top-k over every live (valid, active) row: top-k per shard, then merged.

    Args:
      queries: [Q, K].
      k: results per query (at most one shard's capacity).
      similarity: ``'cosine'`` (as :func:`memjax.knowledge.read`) or ``'dot'``.
      cache_on_device: keep each shard's keys on the device between queries (faster
        repeated queries; the store must then fit in device memory).

    Returns:
      :class:`StoreHits`; equal to the exact top-k of the whole store (ties: lower row).
    """
    q = jnp.asarray(queries, jnp.dtype(self._manifest["dtype"]))
    if q.ndim != 2 or q.shape[1] != self.key_size:
      raise ValueError(
        f"query: queries have shape {q.shape}, the store's keys are {self.key_size} wide"
      )
    cap = self.shard_capacity
    if not 1 <= k <= cap:
      raise ValueError(f"query: k={k} must be in [1, {cap}] (the shard capacity)")
    if not self.num_shards:
      raise StoreError(f"{self.path}: the store is empty")
    all_scores, all_rows = [], []
    for i, shard in enumerate(self._manifest["shards"]):
      if cache_on_device and shard["name"] in self._device_cache:
        keys, live = self._device_cache[shard["name"]]
      else:
        rows = self.load_shard(i)
        pad = cap - shard["rows"]  # one compiled search for every shard
        keys = jnp.asarray(np.pad(np.asarray(rows["keys"]), ((0, pad), (0, 0))))
        live = jnp.asarray(np.pad(np.asarray(rows["valid"] & rows["active"]), (0, pad)))
        if cache_on_device:
          self._device_cache[shard["name"]] = (keys, live)
      s, r = _shard_top_k(q, keys, live, k, similarity)
      all_scores.append(s)
      all_rows.append(np.asarray(r, np.int64) + i * cap)
    scores, pos = retrieval.top_k_scores(jnp.concatenate(all_scores, -1), k)
    rows = np.take_along_axis(np.concatenate(all_rows, -1), np.asarray(pos, np.int64), -1)
    values, owners = self._gather(rows)
    return StoreHits(np.asarray(scores), rows, values, owners)

  def _gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cap = self.shard_capacity
    values = np.zeros(rows.shape + (self.value_size,), jnp.dtype(self._manifest["dtype"]))
    owners = np.full(rows.shape, facts.NO_OWNER, np.int32)
    for i in np.unique(rows // cap):
      if i >= self.num_shards:
        continue
      shard = self.load_shard(int(i))
      # Rows past the shard's end (padding, returned only with score -inf) read as empty.
      here = ((rows // cap) == i) & ((rows % cap) < shard["keys"].shape[0])
      local = rows[here] % cap
      values[here] = shard["values"][local]
      owners[here] = shard["owner"][local]
    return values, owners


@functools.partial(jax.jit, static_argnums=(3, 4))
def _shard_top_k(q, keys, live, k, similarity):
  """One shard's exact top-k (every shard padded to the capacity: one compilation)."""
  return retrieval.top_k_search(q, keys, k, similarity, mask=live)


# ----------------------------------------------------------------------------- states


def save_state(
  path: str | os.PathLike,
  state: facts.FactState,
  shard_capacity: int | None = None,
  owners: Mapping[str, int] | None = None,
) -> FactStore:
  """Saves a :class:`FactState` as a store at ``path``, replacing the store there (if any)
  by one atomic commit: a crash leaves the previous copy loadable.

  Args:
    path: the store folder (created).
    state: the memory to save (one example, no batch axes).
    shard_capacity: rows per shard (default: all rows in one shard).
    owners: owner names -> the ids used in ``state.owner`` (saved in the manifest).

  Returns:
    The opened store.
  """
  if not isinstance(state, facts.FactState):
    raise TypeError(f"save_state: state must be a FactState, got {type(state).__name__}")
  rows = _state_rows(state)
  n, key_size = rows["keys"].shape
  cap = int(shard_capacity or n)
  path = os.path.abspath(os.fspath(path))
  if os.path.isfile(os.path.join(path, MANIFEST)):
    store = FactStore.open(path)
    if store.key_size != key_size or store.value_size != rows["values"].shape[1]:
      raise StoreError(
        f"{path}: the store there holds keys {store.key_size} / values {store.value_size} "
        f"wide, the state {key_size} / {rows['values'].shape[1]}"
      )
  else:
    store = FactStore.create(path, key_size, rows["values"].shape[1], cap, rows["keys"].dtype)
  manifest = store._next_manifest()
  manifest.update(
    shard_capacity=cap,
    dtype=str(rows["keys"].dtype),
    owners={str(k): int(v) for k, v in (owners or {}).items()},
    step=int(np.asarray(state.kv.step)),
    clock=float(np.asarray(state.clock)),
    state_rows=int(n),
  )
  manifest["shards"] = [
    store._write_shard(i, {f: a[s : s + cap] for f, a in rows.items()}, manifest["generation"])
    for i, s in enumerate(range(0, n, cap))
  ]
  manifest["array_dtypes"] = store._manifest["array_dtypes"]
  store._commit(manifest)
  return store


def load_state(path: str | os.PathLike) -> tuple[facts.FactState, dict[str, int]]:
  """Loads a store as one :class:`FactState` (all shards concatenated), bit-exact.

  Returns:
    ``(state, owner names -> ids)``.
  """
  store = FactStore.open(path)
  if not store.num_shards:
    raise StoreError(f"{store.path}: the store is empty, no state to load")
  parts = [store.load_shard(i, mmap=False) for i in range(store.num_shards)]
  rows = {f: np.concatenate([p[f] for p in parts]) for f in ROW_FIELDS}
  m = store._manifest
  state = facts.FactState(
    kv=kv.KVState(
      keys=jnp.asarray(rows["keys"]),
      values=jnp.asarray(rows["values"]),
      written=jnp.asarray(rows["written"]),
      last_read=jnp.asarray(rows["last_read"]),
      hits=jnp.asarray(rows["hits"]),
      valid=jnp.asarray(rows["valid"]),
      step=jnp.asarray(m["step"], jnp.int32),
    ),
    timestamp=jnp.asarray(rows["timestamp"]),
    confidence=jnp.asarray(rows["confidence"]),
    owner=jnp.asarray(rows["owner"]),
    version=jnp.asarray(rows["version"]),
    active=jnp.asarray(rows["active"]),
    clock=jnp.asarray(m["clock"], jnp.float32),
  )
  return state, store.owners


__all__ = [
  "FORMAT",
  "FactStore",
  "StoreError",
  "StoreHits",
  "load_state",
  "save_state",
]
