"""Attention layers for long-context models: multi-head, sliding-window (with global
tokens), relative positions (Transformer-XL, RoPE, T5 bias), XL segment recurrence,
kNN-memory attention (Memorizing Transformers) and its sharded memory, persistent tokens.

Each layer is a pure function over per-head arrays ``[..., T, H, D]`` plus a Flax linen
module that adds the projections, so a decoder block can combine them.
"""

from memjax.layers.attention import (
  MultiHeadAttention,
  attention_weights,
  causal_mask,
  dot_product_attention,
)
from memjax.layers.knn import KNNMemoryAttention, init_knn_memory, knn_read, write_segment
from memjax.layers.persistent import PersistentAttention, PersistentTokens
from memjax.layers.recurrence import XLAttention, XLMemory
from memjax.layers.relative import (
  RelativePositionBias,
  XLRelativeAttention,
  apply_rope,
  relative_position_bucket,
  sinusoidal_embedding,
  xl_relative_attention,
  xl_relative_logits,
)
from memjax.layers.sharded_knn import (
  shard_knn_memory,
  sharded_knn_read,
  sharded_kv_read,
  sharded_top_k_read,
)
from memjax.layers.window import SlidingWindowAttention, band_mask, sliding_window_attention

__all__ = [
  "MultiHeadAttention",
  "attention_weights",
  "causal_mask",
  "dot_product_attention",
  "KNNMemoryAttention",
  "init_knn_memory",
  "knn_read",
  "write_segment",
  "PersistentAttention",
  "PersistentTokens",
  "XLAttention",
  "XLMemory",
  "RelativePositionBias",
  "XLRelativeAttention",
  "apply_rope",
  "relative_position_bucket",
  "sinusoidal_embedding",
  "xl_relative_attention",
  "xl_relative_logits",
  "shard_knn_memory",
  "sharded_knn_read",
  "sharded_kv_read",
  "sharded_top_k_read",
  "SlidingWindowAttention",
  "band_mask",
  "sliding_window_attention",
]
