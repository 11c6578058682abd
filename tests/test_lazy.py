"""memjax._lazy: the packages' names loaded on first use (memjax, memjax.data, its bAbI
and Omniglot packages)."""

import subprocess
import sys
import types

import pytest

from memjax import _lazy


@pytest.fixture
def package(monkeypatch):
  module = types.ModuleType("memjax_lazy_probe")
  monkeypatch.setitem(sys.modules, module.__name__, module)
  module.__getattr__, module.__dir__ = _lazy.attach(
    module.__name__, {"json": ("json", None), "dumps": ("json", "dumps")}
  )
  return module


def test_loads_on_first_use_and_caches(package):
  import json  # noqa: PLC0415

  assert "dumps" not in vars(package)
  assert package.dumps is json.dumps and package.json is json
  assert vars(package)["dumps"] is json.dumps  # cached: no second __getattr__ call
  assert {"json", "dumps"} <= set(dir(package))


def test_unknown_name_names_the_package(package):
  with pytest.raises(AttributeError, match="module 'memjax_lazy_probe' has no attribute 'loads'"):
    package.loads  # noqa: B018


@pytest.mark.parametrize(
  ("package", "name", "module"),
  [
    ("memjax", "meta", "memjax.meta"),
    ("memjax", "continual", "memjax.continual"),
    ("memjax", "knowledge", "memjax.knowledge"),
    ("memjax.data", "facts", "memjax.data.facts"),
    ("memjax.data", "omniglot", "memjax.data.omniglot"),
    ("memjax.data", "sinusoid", "memjax.data.sinusoid"),
    ("memjax.data.omniglot", "Omniglot", "memjax.data.omniglot.builder"),
    ("memjax.data.babi", "Babi", "memjax.data.babi.builder"),
  ],
)
def test_each_package_defers_its_heavy_names(package, name, module):
  code = (
    f"import sys, importlib; p = importlib.import_module({package!r});"
    f"assert {module!r} not in sys.modules, 'imported early';"
    f"assert {name!r} in dir(p); getattr(p, {name!r});"
    f"assert {module!r} in sys.modules"
  )
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
