"""The PyTorch peer of ``benchmarks/meta.py``: MAML written with torch.func, and a check that
its meta-gradient equals memjax's (float64) on the same parameters and tasks.

learn2learn, the PyTorch meta-learning library, does not build on Python 3.11 (its
pre-generated Cython C includes ``longintrepr.h``), so the same loop is written here:
``functional_call`` + ``torch.func.grad`` for the inner step (its graph kept for the second
order; detached for first order), ``vmap`` over the tasks of the MLP, a Python loop over
the tasks of the conv net, ``torch.optim.Adam`` outside.
"""

from __future__ import annotations

import numpy as np


def import_torch():
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    return None
  return torch


def torch_peer(setting, algorithm, args, images=None):
  """``fn() -> meta-steps done`` (one meta-step) and the module, for the torch MAML."""
  torch = import_torch()
  from torch import nn  # noqa: PLC0415
  from torch.func import functional_call, grad, vmap  # noqa: PLC0415

  first_order = algorithm == "fomaml"
  torch.manual_seed(args.seed)
  if setting == "sinusoid":
    model = nn.Sequential(
      nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
    )
    lr, loss_of = 0.01, lambda out, y: ((out - y) ** 2).mean()
  else:
    f, layers, c = args.omniglot_filters, [], 1
    for _ in range(4):
      layers += [
        nn.Conv2d(c, f, 3, stride=2, padding=1),
        nn.BatchNorm2d(f, track_running_stats=False),
        nn.ReLU(),
      ]
      c = f
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(f * 2 * 2, 5))
    lr, loss_of = 0.4, nn.functional.cross_entropy
  params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
  opt = torch.optim.Adam(params.values(), lr=1e-3)

  def support_loss(p, x, y):
    return loss_of(functional_call(model, p, (x,)), y)

  def task_loss(p, sx, sy, qx, qy):
    g = grad(support_loss)(p, sx, sy)
    if first_order:
      g = {k: v.detach() for k, v in g.items()}
    return support_loss({k: p[k] - lr * g[k] for k in p}, qx, qy)

  def meta_loss(p, tasks):
    if setting == "sinusoid":
      return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(p, *tasks).mean()
    return torch.stack([task_loss(p, *t) for t in zip(*tasks, strict=True)]).mean()

  def sample():
    if setting == "sinusoid":
      amp = torch.rand(25, 1, 1) * 4.9 + 0.1
      phase = torch.rand(25, 1, 1) * np.pi
      x = torch.rand(25, 20, 1) * 10 - 5
      y = amp * torch.sin(x - phase)
      return x[:, :10], y[:, :10], x[:, 10:], y[:, 10:]
    t = args.omniglot_tasks
    chars = torch.stack([torch.randperm(images.shape[0])[:5] for _ in range(t)])  # [T, 5]
    draws = torch.stack([torch.randperm(20)[:16] for _ in range(t * 5)]).view(t, 5, 16)
    picked = images[chars[:, :, None], draws]  # [T, 5, 16, 28, 28]
    labels = torch.arange(5)[None, :, None].expand(t, 5, 16)
    sx, qx = picked[:, :, :1].reshape(t, 5, 1, 28, 28), picked[:, :, 1:].reshape(t, 75, 1, 28, 28)
    return sx, labels[:, :, :1].reshape(t, 5), qx, labels[:, :, 1:].reshape(t, 75)

  def run():
    opt.zero_grad()
    meta_loss(params, sample()).backward()
    opt.step()
    return 1

  return run, params, meta_loss, model


def check_peer(setting, learner, params, torch_params, torch_meta_loss, problem, context, seed):
  """Max |torch meta-gradient - memjax meta-gradient| on the same parameters and tasks, both
  in float64 (float32 rounding, amplified by second order through batch norm over a 5-image
  support set, would hide nothing but blur the comparison)."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  torch = import_torch()
  tasks = jax.device_get(problem[2](jax.random.key(seed + 7), context))
  names = list(torch_params)
  converted = {
    name: torch.tensor(np.ascontiguousarray(leaf), dtype=torch.float64, requires_grad=True)
    for name, leaf in zip(names, _flax_to_torch_order(params), strict=True)
  }
  images = setting == "omniglot"

  def to_torch(a, labels=False):
    a = np.asarray(a)
    if labels:
      return torch.tensor(a).long()
    return torch.tensor(np.moveaxis(a, -1, 2) if images else a, dtype=torch.float64)

  batch = (
    to_torch(tasks.support_x),
    to_torch(tasks.support_y, images),
    to_torch(tasks.query_x),
    to_torch(tasks.query_y, images),
  )
  torch_meta_loss(converted, batch).backward()
  with jax.enable_x64(True):
    as64 = lambda t: jax.tree.map(
      lambda a: (
        jnp.asarray(a, jnp.float64)
        if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a)
      ),
      t,
    )
    grad_fn = jax.jit(jax.grad(lambda mp, t: learner.loss(mp, t)[0]))
    ours = jax.device_get(grad_fn(learner.init(as64(params)), as64(tasks)).params)
  diffs = [
    float(np.max(np.abs(converted[n].grad.numpy() - g)))
    for n, g in zip(names, _flax_to_torch_order(ours), strict=True)
  ]
  return max(diffs), max(float(np.max(np.abs(g))) for g in jax.tree.leaves(ours))


def _flax_to_torch_order(params):
  """Flax params as torch tensors' layouts, in torch's named_parameters order."""
  out = []
  layers = [params[k] for k in sorted(params, key=_layer_index)]
  conv = any("conv" in k for k in params)
  for layer in layers:
    if "kernel" in layer:
      k = np.asarray(layer["kernel"])
      if k.ndim == 4:  # HWIO -> OIHW
        k = np.transpose(k, (3, 2, 0, 1))
      elif conv:  # the head after flattening NHWC (flax) vs NCHW (torch), 2x2 maps
        c = k.shape[0] // 4
        k = k.reshape(2, 2, c, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1)
      else:
        k = k.T
      out.append(k)
      out.append(np.asarray(layer["bias"]))
    elif "scale" in layer:  # batch norm: weight, bias
      out += [np.asarray(layer["scale"]), np.asarray(layer["bias"])]
  return out


def _layer_index(name: str) -> tuple[int, int]:
  kind = {"conv": 0, "norm": 0, "layers": 0, "head": 1}[name.split("_")[0]]
  index = int(name.split("_")[-1]) if name[-1].isdigit() else 0
  return (kind, 2 * index + name.startswith("norm"))
