"""The models from NNX: the NTM model as NNX modules, MemN2N through Flax's bridge."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from memjax.models import MemN2N, nnx_ntm_model, ntm_model


def test_nnx_ntm_model_with_linen_parameters_matches_ntm_model():
  kwargs = dict(num_slots=8, slot_size=4, controller_size=12, num_read_heads=2)
  x = jax.random.bernoulli(jax.random.key(1), 0.5, (3, 6, 5)).astype(jnp.float32)
  linen = ntm_model(4, **kwargs)
  params = linen.init(jax.random.key(0), x)["params"]
  model = nnx_ntm_model(5, 4, **kwargs, rngs=nnx.Rngs(0))
  assert type(model.cell).__name__ == "NNXNTMCell"
  twin = linen.cell.to_nnx(5, params=params["cell"])
  nnx.update(model.cell, nnx.state(twin))
  np.testing.assert_allclose(model(x), linen.apply({"params": params}, x), rtol=1e-5, atol=1e-6)


def test_memn2n_through_the_bridge_equals_linen_and_trains():
  model = MemN2N(vocab_size=12, embedding_size=6, num_slots=4, num_hops=2)
  rng = np.random.default_rng(0)
  story = jnp.asarray(rng.integers(1, 12, (8, 4, 3)), jnp.int32)
  query = jnp.asarray(rng.integers(1, 12, (8, 3)), jnp.int32)
  answer = jnp.asarray(rng.integers(1, 12, (8,)), jnp.int32)
  net = nnx.bridge.lazy_init(nnx.bridge.ToNNX(model, rngs=nnx.Rngs(0)), story, query)
  params = nnx.to_pure_dict(nnx.state(net, nnx.Param))
  want, want_attention = model.apply({"params": params}, story, query)
  logits, attention = net(story, query)
  np.testing.assert_allclose(logits, want, rtol=1e-6)
  np.testing.assert_allclose(attention, want_attention, rtol=1e-6)

  def loss_fn(net):
    logits = net(story, query)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, answer).mean()

  optimizer = nnx.Optimizer(net, optax.adam(0.05), wrt=nnx.Param)
  step = nnx.jit(
    lambda net, opt: (lambda lg: (opt.update(net, lg[1]), lg[0])[1])(
      nnx.value_and_grad(loss_fn)(net)
    )
  )
  losses = [float(step(net, optimizer)) for _ in range(20)]
  assert losses[-1] < 0.5 * losses[0]
