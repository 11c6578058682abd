"""Learning-curve plots of a run's metrics (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def plot_curves(
  path: str,
  x: Sequence[float],
  curves: Mapping[str, Sequence[float]],
  *,
  title: str = "",
  xlabel: str = "",
  symlog: float | None = None,
) -> None:
  """Saves one figure with a line per curve against ``x``.

  Args:
    path: the PNG file to write.
    x: [P] the x values (sequences seen, epochs, ...).
    curves: label -> [P] values.
    title: the figure title.
    xlabel: the x axis label.
    symlog: when given, a symmetric log y scale, linear below this value.
  """
  import matplotlib  # noqa: PLC0415  (a plotting backend only when plotting)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6, 3.5))
  for i, (label, y) in enumerate(curves.items()):
    ax.plot(np.asarray(x, np.float64), np.asarray(y, np.float64), label=label, alpha=1 - 0.3 * i)
  if symlog is not None:
    ax.set_yscale("symlog", linthresh=symlog)
  ax.set_xlabel(xlabel)
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


__all__ = ["plot_curves"]
