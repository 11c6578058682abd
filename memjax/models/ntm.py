"""Sequence models for the NTM paper's algorithmic tasks: the NTM, its LSTM baseline, a trace.

* ``nn.RNN(NTMCell(...))`` is the NTM sequence model (``[B, T, Fi] -> [B, T, Fo]`` logits);
  :func:`ntm_model` builds it; :func:`nnx_ntm_model` builds its NNX form,
  ``nnx.RNN(NNXNTMCell(...))`` (``NTMCell.to_nnx(Fi, params=...)`` moves trained linen
  parameters into it).
* :class:`LSTMBaseline`: the paper's baseline, a stack of LSTMs with a linear read-out.
* :func:`trace_ntm`: runs the cell over one sequence and records every step's read and
  write weightings; :func:`plot_trace` draws them (the paper's Fig. 6).

Example:
  >>> model = ntm_model(output_size=4, num_slots=16, slot_size=6, controller_size=16)
  >>> x = jnp.zeros((2, 7, 5))
  >>> params = model.init(jax.random.key(0), x)["params"]
  >>> model.apply({"params": params}, x).shape
  (2, 7, 4)
  >>> trace = trace_ntm(model.cell, params, x[0])
  >>> trace["write_weights"].shape  # [T, write heads, N]
  (7, 1, 16)

References:
  Graves, Wayne, Danihelka 2014, "Neural Turing Machines", arXiv:1410.5401.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx

from memjax.memory.ntm import NNXNTMCell, NTMCell


def ntm_model(output_size: int, **cell_kwargs: Any) -> nn.RNN:
  """``nn.RNN(NTMCell(output_size, **cell_kwargs))``: ``[B, T, Fi]`` -> ``[B, T, Fo]`` logits.

  Args:
    output_size: Fo.
    **cell_kwargs: the other :class:`memjax.memory.ntm.NTMCell` attributes (num_slots,
      slot_size, controller, controller_size, ...).

  Returns:
    The model; its parameters are ``{'cell': ...}``.
  """
  return nn.RNN(NTMCell(output_size=output_size, **cell_kwargs), name="ntm")


def nnx_ntm_model(
  in_features: int, output_size: int, *, rngs: nnx.Rngs, **cell_kwargs: Any
) -> nnx.RNN:
  """``nnx.RNN(NNXNTMCell(in_features, output_size, **cell_kwargs))``, the NNX NTM model.

  Args:
    in_features: Fi.
    output_size: Fo.
    rngs: initialises the parameters.
    **cell_kwargs: the other :class:`memjax.memory.ntm.NNXNTMCell` arguments.

  Returns:
    The model, ``[B, T, Fi] -> [B, T, Fo]`` logits; the cell is ``model.cell``.

  Example:
    >>> model = nnx_ntm_model(5, 4, num_slots=16, slot_size=6, controller_size=16,
    ...                       rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 7, 5))).shape
    (2, 7, 4)
  """
  return nnx.RNN(NNXNTMCell(in_features, output_size, **cell_kwargs, rngs=rngs))


class LSTMBaseline(nn.Module):
  """A stack of LSTMs with a linear read-out (the paper's baseline: 3 x 256).

  Attributes:
    output_size: Fo.
    hidden_size: units per LSTM layer.
    num_layers: LSTM layers.

  Example:
    >>> model = LSTMBaseline(output_size=3, hidden_size=8, num_layers=2)
    >>> x = jnp.zeros((2, 5, 4))
    >>> model.apply(model.init(jax.random.key(0), x), x).shape
    (2, 5, 3)
  """

  output_size: int
  hidden_size: int = 256
  num_layers: int = 3

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits ``[B, T, output_size]`` of inputs ``[B, T, Fi]``."""
    h = inputs
    for i in range(self.num_layers):
      h = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size), name=f"lstm_{i}")(h)
    return nn.Dense(self.output_size, name="output")(h)


def trace_ntm(cell: NTMCell, params: Any, inputs: jax.Array) -> dict[str, jax.Array]:
  """Runs the NTM on one sequence and records its head weightings at every step.

  Args:
    cell: the NTM cell.
    params: the parameters of ``nn.RNN(cell)`` (``{'cell': ...}``).
    inputs: [T, Fi] one input sequence.

  Returns:
    ``{'outputs': [T, Fo] sigmoid outputs, 'read_weights': [T, R, N],
    'write_weights': [T, Wh, N]}``.
  """
  carry = cell.initialize_carry(None, inputs.shape[1:])

  def body(carry, x):
    carry, y = cell.apply({"params": params["cell"]}, carry, x)
    return carry, (jax.nn.sigmoid(y), carry.read_weights, carry.write_weights)

  _, (outputs, reads, writes) = jax.lax.scan(body, carry, inputs)
  return {"outputs": outputs, "read_weights": reads, "write_weights": writes}


def plot_trace(path: str, inputs, targets, trace: dict, title: str, mask=None) -> None:
  """Saves a PNG of inputs, targets, outputs and the head weightings over time (Fig. 6).

  Args:
    path: the PNG file.
    inputs: [T, Fi] one sequence's inputs.
    targets: [T, Fo] its targets.
    trace: :func:`trace_ntm`'s output for it (the first read and write head are shown,
      on the slots either head used).
    title: the figure title.
    mask: [T] optional; blanks the outputs of unscored steps, as the paper's figures.
  """
  import matplotlib  # noqa: PLC0415  (a plotting backend only when plotting)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  write_w = np.asarray(trace["write_weights"][:, 0])  # [T, N]
  read_w = np.asarray(trace["read_weights"][:, 0])
  used = np.nonzero((write_w.max(0) > 0.01) | (read_w.max(0) > 0.01))[0]
  lo, hi = (int(used.min()), int(used.max()) + 1) if used.size else (0, write_w.shape[1])
  panels = [
    ("inputs", np.asarray(inputs)),
    ("targets", np.asarray(targets)),
    (
      "outputs",
      np.asarray(trace["outputs"]) * (1.0 if mask is None else np.asarray(mask)[:, None]),
    ),
    (f"write weightings (slots {lo}-{hi - 1})", write_w[:, lo:hi]),
    (f"read weightings (slots {lo}-{hi - 1})", read_w[:, lo:hi]),
  ]
  fig, axes = plt.subplots(len(panels), 1, figsize=(7, 9))
  for ax, (name, arr) in zip(axes, panels, strict=True):
    ax.imshow(arr.T, aspect="auto", cmap="gray_r", interpolation="nearest")
    ax.set_ylabel(name, fontsize=8)
  axes[-1].set_xlabel("time")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


__all__ = ["nnx_ntm_model", "ntm_model", "LSTMBaseline", "trace_ntm", "plot_trace"]
