"""results.json: atomic, JSON-clean, with versions and device."""

import json
import os
import sys

import chex
import flax
import jax
import jax.numpy as jnp
import jaxlib
import ml_collections
import numpy as np
import optax
import orbax.checkpoint
import tensorflow_datasets

import memjax
from memjax.train import device_info, library_versions, write_results


def test_write_results_records_everything(tmp_path):
  config = ml_collections.ConfigDict({"lr": 0.01, "hops": 3})
  metrics = {"mean_error": np.float32(0.125), "per_task": jnp.arange(3), "nan": float("nan")}
  path = write_results(tmp_path, metrics, config, wall_time_s=12.5, extra={"note": "x"})
  record = json.loads(open(path).read())
  assert record["metrics"] == {"mean_error": 0.125, "per_task": [0, 1, 2], "nan": "nan"}
  assert record["config"] == {"lr": 0.01, "hops": 3}
  assert record["wall_time_s"] == 12.5
  assert record["note"] == "x"
  assert record["versions"] == library_versions()
  assert record["device"] == device_info()
  assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away


def test_library_versions_are_the_imported_modules():
  python = ".".join(str(v) for v in sys.version_info[:3])
  assert library_versions() == {
    "python": python,
    "memjax": memjax.__version__,
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "orbax-checkpoint": orbax.checkpoint.__version__,
    "chex": chex.__version__,
    "numpy": np.__version__,
    "tensorflow-datasets": tensorflow_datasets.__version__,
  }


def test_device_info_is_conftests_cpu_mesh():
  info = device_info()
  assert info == {
    "backend": "cpu",
    "device_kind": "cpu",
    "device_count": 8,  # conftest.py: 8 fake CPU devices
    "cpu_count": os.cpu_count(),
    "platform": info["platform"],  # platform.platform(): free text
  }
