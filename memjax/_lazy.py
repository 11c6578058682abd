"""Names a package loads on first use (PEP 562), so importing it stays light.

A package lists ``name -> (module, attribute or None)`` and takes its ``__getattr__`` and
``__dir__`` from :func:`attach`::

    __getattr__, __dir__ = _lazy.attach(__name__, {"babi": ("memjax.data.babi", None)})

The first access imports the module, caches the value in the package's namespace (later
accesses are plain attribute lookups) and returns it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def attach(
  package: str, names: Mapping[str, tuple[str, str | None]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
  """``(__getattr__, __dir__)`` for ``package`` with ``names`` loaded on first use.

  Args:
    package: the package's ``__name__``.
    names: ``name -> (module, attribute)``; attribute None = the module itself.

  Returns:
    The module-level ``__getattr__`` (raises ``AttributeError`` naming the package for any
    other name) and ``__dir__`` (the loaded and the lazy names).
  """
  table = dict(names)

  def __getattr__(name: str) -> Any:
    if name not in table:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module_name, attr = table[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    setattr(sys.modules[package], name, value)
    return value

  def __dir__() -> list[str]:
    return sorted(set(vars(sys.modules[package])) | set(table))

  return __getattr__, __dir__


__all__ = ["attach"]
