"""memjax: memory-augmented neural networks in JAX/Flax.

Every memory is a pytree state with pure ``write`` / ``read`` functions, run over
time with ``jax.lax.scan``; Flax cells wrap them with learned parameters.

Subpackages: ``ops`` (similarity, retrieval, addressing, HRR), ``memory`` (the memory
families), ``models`` (MemN2N), ``data`` (bAbI, algorithmic tasks), ``train``
(checkpoints, results, device mesh).
"""

import importlib

from memjax import memory, models, ops

__version__ = "0.1.0"


def __getattr__(name):
  # data and train pull in tensorflow_datasets / orbax: loaded on first use.
  if name in ("data", "train"):
    module = importlib.import_module(f"memjax.{name}")
    globals()[name] = module
    return module
  raise AttributeError(f"module 'memjax' has no attribute {name!r}")


__all__ = ["data", "memory", "models", "ops", "train", "__version__"]
