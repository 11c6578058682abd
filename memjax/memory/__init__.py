"""Memory families: each a State NamedTuple, pure init/read/write/reset ops and a cell.

Import a family module for its pure functions (``from memjax.memory import kv;
kv.write(state, ...)``) or take its cell from here: the linen cell (``KVCell``, for
``nn.RNN``) or its NNX form (``NNXKVCell``, for ``nnx.RNN``), which run the same step.
``load_linen_params`` (or a linen cell's ``to_nnx``) moves trained parameters across.
"""

from memjax.memory import attention, gated, holographic, kv, matrix, ntm, persistent
from memjax.memory._nnx import load_linen_params
from memjax.memory.attention import AttentionMemoryCell, AttentionState, NNXAttentionMemoryCell
from memjax.memory.gated import GatedMemoryCell, GatedMemoryLayer, GatedState, NNXGatedMemoryCell
from memjax.memory.holographic import HolographicCell, HRRState, NNXHolographicCell
from memjax.memory.kv import KVCell, KVState, NNXKVCell
from memjax.memory.matrix import MatrixMemoryCell, MatrixState, NNXMatrixMemoryCell
from memjax.memory.ntm import NNXNTMCell, NTMCell, NTMState
from memjax.memory.persistent import (
  CacheState,
  NNXPersistentMemoryAttention,
  NNXPersistentMemoryCell,
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
  "NNXAttentionMemoryCell",
  "NNXGatedMemoryCell",
  "NNXHolographicCell",
  "NNXKVCell",
  "NNXMatrixMemoryCell",
  "NNXNTMCell",
  "NNXPersistentMemoryAttention",
  "NNXPersistentMemoryCell",
  "load_linen_params",
]
