"""Test configuration: 8 fake CPU devices, strict rank promotion, no inherited JAX settings.

The test platform is decided here, once: every test runs on the CPU backend with 8 fake
devices (``JAX_PLATFORMS=cpu`` and ``--xla_force_host_platform_device_count=8`` are set,
not defaulted), on any machine, with or without an accelerator or a preset variable. So
tests state what they expect of that platform (8 devices, the CPU compile options, exact
CPU top-k) as plain assertions and never skip on the device count; the notebooks that
nbmake runs inherit the same environment. Accelerator checks belong in scripts run on
purpose, not in this suite.

Tests set the environment they depend on and never read the developer's: every JAX_* and
XLA_FLAGS variable is dropped here, before JAX is imported (a developer's JAX_ENABLE_X64 or
XLA flags would otherwise change what the tests compute), and a test that starts a process
builds its environment with the ``clean_env`` fixture.
"""

import os

import pytest

# Variables that change what JAX, XLA or the BLAS under numpy do. Dropped from this process
# (JAX / XLA) and from every environment a test builds for a subprocess (all of them).
_INHERITED = ("JAX_", "XLA_FLAGS", "OPENBLAS_", "OMP_")

for _name in [n for n in os.environ if n.startswith(("JAX_", "XLA_FLAGS"))]:
  del os.environ[_name]
# The XLA flag must be set before JAX initialises its backends, so it is set at import time
# of this file (pytest imports conftest before any test module).
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def _clean_env(**values: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
  env.update(values)
  return env


@pytest.fixture(scope="session")
def clean_env():
  """``clean_env(**values) -> dict``: the environment for a subprocess a test starts.

  This process's environment without any JAX_*, XLA_FLAGS, OPENBLAS_* or OMP_* variable
  (not even the fake-device flag set above: a subprocess is one CPU device unless the test
  says otherwise), plus ``values``.
  """
  return _clean_env
