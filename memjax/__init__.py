"""memjax: memory-augmented neural networks in JAX/Flax.

Every memory is a pytree state with pure ``write`` / ``read`` functions, run over
time with ``jax.lax.scan``; Flax cells wrap them with learned parameters.
"""

from memjax import ops

__version__ = "0.1.0"

__all__ = ["ops", "__version__"]
