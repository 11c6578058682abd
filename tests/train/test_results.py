"""results.json: atomic, JSON-clean, with versions and device."""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np

from memjax.train import write_results


def test_write_results_records_everything(tmp_path):
  config = ml_collections.ConfigDict({"lr": 0.01, "hops": 3})
  metrics = {"mean_error": np.float32(0.125), "per_task": jnp.arange(3), "nan": float("nan")}
  path = write_results(tmp_path, metrics, config, wall_time_s=12.5, extra={"note": "x"})
  record = json.loads(open(path).read())
  assert record["metrics"] == {"mean_error": 0.125, "per_task": [0, 1, 2], "nan": "nan"}
  assert record["config"] == {"lr": 0.01, "hops": 3}
  assert record["wall_time_s"] == 12.5
  assert record["note"] == "x"
  assert "jax" in record["versions"] and "flax" in record["versions"]
  assert record["device"]["backend"] == "cpu"
  assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away
