"""Low-level memory operations: similarity, soft attention read, top-k retrieval,
NTM addressing and holographic (HRR) binding."""

from memjax.ops import addressing, hrr
from memjax.ops.addressing import (
  address,
  circular_shift,
  content_weights,
  interpolate,
  sharpen,
)
from memjax.ops.attention import attention_read, masked_softmax
from memjax.ops.retrieval import (
  Retrieval,
  approx_top_k_search,
  argmax_read,
  top_k_read,
  top_k_scores,
  top_k_search,
)
from memjax.ops.similarity import (
  cosine,
  dot,
  get_similarity,
  neg_sq_l2,
  scaled_dot,
  similarity_scores,
)

__all__ = [
  "addressing",
  "hrr",
  "address",
  "circular_shift",
  "content_weights",
  "interpolate",
  "sharpen",
  "attention_read",
  "masked_softmax",
  "Retrieval",
  "approx_top_k_search",
  "argmax_read",
  "top_k_read",
  "top_k_scores",
  "top_k_search",
  "cosine",
  "dot",
  "get_similarity",
  "neg_sq_l2",
  "scaled_dot",
  "similarity_scores",
]
