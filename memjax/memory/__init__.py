"""Memory families: each a State NamedTuple, pure init/read/write ops and a Flax cell.

Import a family module for its pure functions (``from memjax.memory import kv;
kv.write(state, ...)``) or take its cell from here (``memjax.memory.KVCell``).
"""

from memjax.memory import attention, gated, holographic, kv, matrix, ntm, persistent
from memjax.memory.attention import AttentionMemoryCell, AttentionState
from memjax.memory.gated import GatedMemoryCell, GatedMemoryLayer, GatedState
from memjax.memory.holographic import HolographicCell, HRRState
from memjax.memory.kv import KVCell, KVState
from memjax.memory.matrix import MatrixMemoryCell, MatrixState
from memjax.memory.ntm import NTMCell, NTMState
from memjax.memory.persistent import (
  CacheState,
  PersistentMemoryAttention,
  PersistentMemoryCell,
  with_persistent,
)

__all__ = [
  "attention",
  "gated",
  "holographic",
  "kv",
  "matrix",
  "ntm",
  "persistent",
  "AttentionMemoryCell",
  "AttentionState",
  "CacheState",
  "GatedMemoryCell",
  "GatedMemoryLayer",
  "GatedState",
  "HRRState",
  "HolographicCell",
  "KVCell",
  "KVState",
  "MatrixMemoryCell",
  "MatrixState",
  "NTMCell",
  "NTMState",
  "PersistentMemoryAttention",
  "PersistentMemoryCell",
  "with_persistent",
]
