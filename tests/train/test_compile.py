"""memjax.train.compile: CPU compile options that change speed, never results."""

import jax
import jax.numpy as jnp
import numpy as np

from memjax.train.compile import CPU_OPTIONS, compiler_options


def test_other_backends_get_xla_defaults():
  assert compiler_options("gpu") == {}
  assert compiler_options("tpu") == {}


def test_cpu_options_compile_and_give_the_same_numbers():
  options = compiler_options("cpu")
  assert options in ({}, CPU_OPTIONS)  # {} only on a jaxlib without the option

  def f(x, w):  # gather, reduce and elementwise fusions, as in MemN2N's embedding
    v = jnp.take(w, x, axis=0) * jnp.linspace(0.5, 1.5, x.shape[-1]).reshape(1, 1, -1, 1)
    return jnp.sum(jnp.tanh(jnp.sum(v, axis=-2)) ** 2)

  x = jnp.asarray(np.random.default_rng(0).integers(0, 30, (16, 9, 7)))
  w = jnp.asarray(np.random.default_rng(1).normal(size=(30, 20)), jnp.float32)
  want = jax.jit(jax.value_and_grad(f, argnums=1))(x, w)
  got = jax.jit(jax.value_and_grad(f, argnums=1), compiler_options=options)(x, w)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)  # float32 sum order
