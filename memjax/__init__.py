"""memjax: memory-augmented neural networks in JAX/Flax.

Every memory is a pytree state with pure ``write`` / ``read`` functions, run over
time with ``jax.lax.scan``; Flax cells wrap them with learned parameters.

Subpackages: ``ops`` (similarity, retrieval, addressing, HRR), ``memory`` (the memory
families, linen and NNX cells), ``models`` (MemN2N, NTM), ``data`` (bAbI, Omniglot,
sinusoid, digits, algorithmic tasks), ``train`` (checkpoints, results, device mesh),
``meta`` (MAML, FOMAML, Reptile, ANIL, Meta-SGD), ``continual`` (replay, EWC, distillation),
``knowledge`` (facts with conflict policies, decay, deletion; a persistent store; KG fusion),
``layers`` (attention layers for long context: sliding window, relative positions, segment
recurrence, kNN memory).
"""

from memjax import _lazy, memory, models, ops

__version__ = "0.1.0"


# data, train and what builds on train pull in tensorflow_datasets / orbax: loaded on first
# use.
__getattr__, __dir__ = _lazy.attach(
  __name__,
  {
    name: (f"memjax.{name}", None)
    for name in ("data", "train", "meta", "continual", "knowledge", "layers")
  },
)


__all__ = [
  "continual",
  "data",
  "knowledge",
  "layers",
  "memory",
  "meta",
  "models",
  "ops",
  "train",
  "__version__",
]
