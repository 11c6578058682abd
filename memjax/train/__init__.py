"""Training utilities: Orbax checkpoints, results.json, data-parallel sharding."""

from memjax.train.checkpoint import Checkpointer
from memjax.train.parallel import (
  DATA_AXIS,
  batch_sharding,
  data_mesh,
  replicate,
  shard_batch,
)
from memjax.train.results import (
  device_info,
  library_versions,
  to_jsonable,
  write_json_atomic,
  write_results,
)

__all__ = [
  "Checkpointer",
  "DATA_AXIS",
  "batch_sharding",
  "data_mesh",
  "replicate",
  "shard_batch",
  "device_info",
  "library_versions",
  "to_jsonable",
  "write_json_atomic",
  "write_results",
]
