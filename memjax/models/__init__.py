"""Complete models built from memories and layers."""

from memjax.models import memn2n, ntm
from memjax.models.memn2n import (
  MemN2N,
  memory_mask,
  position_encoding,
  random_noise_ages,
  random_noise_ages_from_uniform,
  random_noise_draws,
  reference_position_encoding,
  sentence_ages,
)
from memjax.models.ntm import LSTMBaseline, nnx_ntm_model, ntm_model, trace_ntm

__all__ = [
  "memn2n",
  "ntm",
  "LSTMBaseline",
  "ntm_model",
  "nnx_ntm_model",
  "trace_ntm",
  "MemN2N",
  "memory_mask",
  "position_encoding",
  "random_noise_ages",
  "random_noise_ages_from_uniform",
  "random_noise_draws",
  "reference_position_encoding",
  "sentence_ages",
]
