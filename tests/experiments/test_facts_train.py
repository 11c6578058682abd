"""Smoke tests of the dialogue-memory study: a tiny run on a small bAbI-format file, and
resume after a kill during the gate's training."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.facts import train
from experiments.facts.configs import default
from memjax.train import Checkpointer

# Three task-1 stories in the bAbI v1.2 format (moves and questions).
_QA1 = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Mary travelled to the office.
6 Where is Mary? \toffice\t5
1 Sandra journeyed to the kitchen.
2 Mary went to the garden.
3 Where is Sandra? \tkitchen\t1
1 John travelled to the bedroom.
2 Sandra moved to the garden.
3 Mary journeyed to the kitchen.
4 Where is John? \tbedroom\t1
"""


@pytest.fixture(autouse=True, scope="module")
def _quick_compiles():
  """Smoke runs: XLA's cheaper compilation (the numbers checked do not depend on it)."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def _config(data_dir):
  c = default.get_config()
  c.data.data_dir = str(data_dir)
  c.data.babi_tasks = (1,)
  c.data.stories_per_stream = 3
  c.data.num_test_profiles = 2
  c.data.num_train_profiles = 6
  c.data.profile_steps = 12
  c.data.num_people = 2
  c.model.num_slots = 12
  c.gate_training.num_val_profiles = 2
  c.gate_training.batch_size = 2
  c.gate_training.steps_per_round = 2
  c.gate_training.num_rounds = 4
  c.gate_training.log_every = 2
  c.gate_training.checkpoint_every = 2
  c.decay_settings = {"max_age_5": {"max_age": 5.0}}
  c.progress_bar = False
  return c


@pytest.fixture
def data_dir(tmp_path):
  folder = tmp_path / "data" / "babi" / "tasks_1-20_v1-2" / "en"
  folder.mkdir(parents=True)
  (folder / "qa1_single-supporting-fact_test.txt").write_text(_QA1)
  return tmp_path / "data"


def test_smoke_run_and_resume_after_kill(tmp_path, data_dir, monkeypatch):
  straight = train.train_and_evaluate(_config(data_dir), str(tmp_path / "straight"))
  babi = straight["policies"]["babi"]
  assert set(babi) == {"keep", "newest", "confident", "versions", "merge", "gate"}
  assert babi["newest"]["accuracy"] == 1.0 and babi["versions"]["accuracy"] == 1.0
  assert babi["keep"]["accuracy"] < 1.0  # Mary moved: the first fact is stale
  # Every known fact at the end of each story: 3 people, then 4, then 4.
  assert babi["newest"]["questions"] == 3 + 4 + 4
  assert sum(b["questions"] for b in babi["newest"]["buckets"].values()) == 11
  deletion = straight["deletion"]
  assert deletion["facts_before"] >= 1 and deletion["facts_left_in_memory"] == 0
  assert deletion["byte_patterns_found_before"] >= 2  # the name and the key, before
  assert deletion["byte_patterns_found_after"] == 0
  assert deletion["answers_about_person_after_from_memory"] == 0
  assert deletion["answers_about_person_after_from_disk"] == 0
  assert deletion["disk_equals_memory"]
  assert straight["gate_training"]["steps"] == 8
  decayed = straight["decay"]["babi"]["max_age_5"]
  assert decayed["setting"] == {"max_age": 5.0}
  assert decayed["buckets"]["5-19"]["accuracy"] == 0.0  # older than 5: forgotten
  assert decayed["buckets"]["0"]["accuracy"] == 1.0
  assert os.path.getsize(tmp_path / "straight" / "accuracy_vs_time_since_update.png") > 1000
  with open(tmp_path / "straight" / "results.json") as f:
    assert json.load(f)["metrics"]["buckets"] == ["0", "1-4", "5-19", "20-49", "50+"]

  real_save = Checkpointer.save

  def save_then_die(self, step, state, metadata=None):
    real_save(self, step, state, metadata)
    self._manager.wait_until_finished()
    raise KeyboardInterrupt(f"killed after the checkpoint of step {step}")

  monkeypatch.setattr(Checkpointer, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(_config(data_dir), str(tmp_path / "killed"))
  monkeypatch.setattr(Checkpointer, "save", real_save)
  assert not os.path.exists(tmp_path / "killed" / "results.json")
  resumed = train.train_and_evaluate(_config(data_dir), str(tmp_path / "killed"))
  np.testing.assert_allclose(
    resumed["gate_training"]["curve"], straight["gate_training"]["curve"], rtol=1e-6
  )
  for dataset in ("babi", "profiles"):
    for policy, table in straight["policies"][dataset].items():
      assert resumed["policies"][dataset][policy]["accuracy"] == table["accuracy"]


def test_bad_config_values_name_the_field(tmp_path, data_dir):
  c = _config(data_dir)
  c.policies = ("newest", "oldest")
  with pytest.raises(ValueError, match=r"config.policies: \['oldest'\]"):
    train.train_and_evaluate(c, str(tmp_path))
