"""memjax.train.compile: CPU compile options that change speed, never results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memjax.train import compile as compile_lib
from memjax.train.compile import CPU_OPTIONS, compiler_options


def _f(x, w):  # gather, reduce and elementwise fusions, as in MemN2N's embedding
  v = jnp.take(w, x, axis=0) * jnp.linspace(0.5, 1.5, x.shape[-1]).reshape(1, 1, -1, 1)
  return jnp.sum(jnp.tanh(jnp.sum(v, axis=-2)) ** 2)


def _inputs():
  x = jnp.asarray(np.random.default_rng(0).integers(0, 30, (16, 9, 7)))
  w = jnp.asarray(np.random.default_rng(1).normal(size=(30, 20)), jnp.float32)
  return x, w


def test_options_per_backend():
  # conftest.py runs the suite on the CPU backend, whose jaxlib (pinned) knows the option.
  assert jax.default_backend() == "cpu"
  assert compiler_options() == compiler_options("cpu") == CPU_OPTIONS
  assert compiler_options("gpu") == {}
  assert compiler_options("tpu") == {}


def test_unknown_option_falls_back_to_xla_defaults(monkeypatch):
  monkeypatch.setattr(compile_lib, "CPU_OPTIONS", {"xla_memjax_no_such_option": ""})
  assert compiler_options.__wrapped__("cpu") == {}  # uncached: the probe compiles again


def test_cpu_options_change_the_fusions_not_the_numbers():
  x, w = _inputs()
  lowered = jax.jit(jax.value_and_grad(_f, argnums=1)).lower(x, w)
  # XLA's CPU default hands fusions to YNNPACK; the options keep them in XLA's own emitter.
  library_fusion = '"fusion_config":{"kind":"__ynn_fusion"}'
  assert library_fusion in lowered.compile().as_text()
  assert library_fusion not in lowered.compile(compiler_options=compiler_options()).as_text()
  want = jax.jit(jax.value_and_grad(_f, argnums=1))(x, w)
  got = jax.jit(jax.value_and_grad(_f, argnums=1), compiler_options=compiler_options())(x, w)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)  # float32 sum order


def test_train_steps_compile_with_the_options_asked_for(monkeypatch):
  import optax  # noqa: PLC0415

  from memjax import meta, train  # noqa: PLC0415
  from memjax.data import sinusoid  # noqa: PLC0415
  from memjax.meta import steps as meta_steps  # noqa: PLC0415

  x, w = _inputs()
  loss = lambda params, batch, key, context: (_f(batch, params), {})
  library_fusion = '"fusion_config":{"kind":"__ynn_fusion"}'
  results = {}
  for name, options in (("memjax", None), ("xla", {})):
    steps = train.make_train_steps(loss, optax.sgd(0.1), donate=False, xla_options=options)
    state = train.TrainState.create(w, optax.sgd(0.1), jax.random.key(0))
    xs = jnp.stack([x, x])
    text = steps.lower(state, xs).compile().as_text()
    assert (library_fusion in text) == (name == "xla"), name
    results[name] = steps(state, xs)
  np.testing.assert_allclose(results["memjax"][1]["loss"], results["xla"][1]["loss"], rtol=1e-5)
  # memjax.meta's steps compile with XLA's defaults unless told otherwise.
  learner = meta.maml(lambda p, x: jnp.tanh(x @ p["w"]) @ p["v"], meta.mse)
  params = {"w": jnp.ones((1, 8)), "v": jnp.ones((8, 1))}
  sample = lambda key, context: sinusoid.sample_tasks(key, 2, 3)
  state = meta.create_state(learner, params, optax.adam(1e-3), jax.random.key(1))
  seen = []
  real = train.make_train_steps
  spy = lambda *a, **k: seen.append(k["xla_options"]) or real(*a, **k)
  monkeypatch.setattr(meta_steps, "make_train_steps", spy)
  for options in (None, compiler_options(), {"xla_memjax_no_such_option": ""}):
    steps = meta.make_meta_train_steps(
      learner, optax.adam(1e-3), sample, steps_per_call=2, donate=False, xla_options=options
    )
    if options and "xla_memjax_no_such_option" in options:  # handed to XLA, which refuses it
      with pytest.raises(Exception, match="xla_memjax_no_such_option"):
        steps(state)
    else:
      steps(state)
  assert seen == [{}, compiler_options(), {"xla_memjax_no_such_option": ""}]
