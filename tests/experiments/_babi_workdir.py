"""A finished bAbI run's workdir, written without training (for the interactive and CLI
tests)."""

import json
import os

import jax

from experiments.babi import train
from experiments.babi.configs import smoke
from memjax import train as memjax_train
from memjax.data.babi import synthetic
from memjax.train import Checkpointer


def config():
  """The smoke config, smaller (the model is never trained here)."""
  config = smoke.get_config()
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 32
  config.model.embedding_size = 8
  config.train.num_epochs = 1
  config.train.ls_max_epochs = 1
  config.train.num_restarts = 1
  config.train.batch_size = 32
  config.train.eval_batch_size = 32
  return config


def words():
  """A vocabulary covering the synthetic task's sentences (id 0: the null word)."""
  return ["<pad>"] + sorted(
    {w.lower() for w in (*synthetic.PLACES, *synthetic.PEOPLE, *synthetic.VERBS)}
    | {"to", "the", "where", "is"}
  )


SENTENCE_SIZE = 6


def write_workdir(workdir, checkpoint=True):
  """A finished run's workdir as ``experiments.babi.train`` leaves it, without training:
  ``results.json`` (config, selected unit), the unit's ``result.json`` (vocabulary,
  sentence size) and its checkpoint (an untrained state, saved on 8 devices here)."""
  cfg = config()
  unit = os.path.join(workdir, "runs", "unit_000")
  os.makedirs(unit)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"config": cfg.to_dict(), "metrics": {"selected_unit": {"1": 0}}}, f)
  with open(os.path.join(unit, "result.json"), "w") as f:
    json.dump({"vocab": {"words": words()}, "sentence_size": SENTENCE_SIZE}, f)
  if checkpoint:
    model = train.make_model(cfg, len(words()), SENTENCE_SIZE)
    state = train.init_state(cfg, model, SENTENCE_SIZE, 0)
    mesh = memjax_train.data_mesh()
    state = jax.device_put(state, memjax_train.replicated(mesh))
    with Checkpointer(os.path.join(unit, "checkpoints")) as ckpt:
      ckpt.save(1, state)
  return workdir
