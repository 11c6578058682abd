"""XLA compile options for memjax's jitted training loops (the one place they are chosen).

On CPU, XLA (jaxlib 0.10) hands reductions and elementwise fusions to YNNPACK library
fusions by default. For the small, many-op steps of memjax's models this is slower than
XLA's own loop emitter: MemN2N's joint bAbI epoch (PE, 3 hops, d=50, batch 32) runs
about 1.6x faster with them off (2 shared CPU cores; ``benchmarks/memn2n.py``). They are
not a rule: ``make_train_steps(xla_options=...)`` takes others, and ``memjax.meta`` keeps
XLA's defaults, ~1.15x faster for MAML's small MLPs (``benchmarks/meta.py --xla_options``).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}  # no YNNPACK library fusions


@functools.cache
def compiler_options(backend: str | None = None) -> dict[str, str]:
  """Options for ``jax.jit(fn, compiler_options=...)`` on ``backend``.

  Args:
    backend: 'cpu', 'gpu', 'tpu'; None = ``jax.default_backend()``.

  Returns:
    :data:`CPU_OPTIONS` on CPU when this jaxlib knows them, else ``{}`` (XLA's defaults).
  """
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return {}
  try:  # an option this jaxlib does not know fails at compile time
    jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS)(np.float32(0))
  except Exception:  # noqa: BLE001 - any compile error: fall back to XLA's defaults
    return {}
  return dict(CPU_OPTIONS)


__all__ = ["CPU_OPTIONS", "compiler_options"]
