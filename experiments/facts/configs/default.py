"""The dialogue-memory study's default setting (a few minutes on 2 CPU cores).

Command (data root: ``$MEMJAX_DATA_DIR`` or ``--config.data.data_dir``):

  python -m experiments.facts.main --config=experiments/facts/configs/default.py \
      --workdir=runs/facts

bAbI test stories of tasks 1, 2, 3, 6, 7, 8 chained 20 at a time into 60 dialogues, and
64 held-out generated profiles; every conflict policy; three decay settings; "forget
mary" on the first bAbI dialogue. Expected: newest-wins (and the latest version) answer
every bAbI question (1.000); on the profiles the learned gate beats every fixed rule.
"""

import ml_collections


def get_config(arg=None):
  """The default config (``arg`` is unused)."""
  del arg
  config = ml_collections.ConfigDict()
  config.seed = 0  # embeddings and gate initialisation
  # Conflict policies compared ('keep' is the no-update baseline).
  config.policies = ("keep", "newest", "confident", "versions", "merge", "gate")
  # Lower edges of the buckets of time since the asked fact last changed.
  config.buckets = (0, 1, 5, 20, 50)
  config.forget = "mary"  # the person deleted in the deletion check (bAbI)
  config.store_shard_capacity = 8  # rows per shard of the on-disk store of that check
  config.progress_bar = True  # tqdm progress bar of the gate's training
  config.plots = True  # accuracy_vs_time_since_update.png

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ""  # bAbI data root ('' = $MEMJAX_DATA_DIR)
  config.data.babi_tasks = (1, 2, 3, 6, 7, 8)  # () skips bAbI
  config.data.babi_split = "test"  # the stories' file
  config.data.stories_per_stream = 20  # consecutive stories chained into one dialogue
  config.data.max_streams_per_task = 0  # 0 = as many as the file holds
  config.data.num_test_profiles = 64  # held-out generated profiles (seeds 0..63)
  config.data.num_train_profiles = 256  # the gate's training profiles (seeds 100000..)
  config.data.profile_steps = 150  # reports per profile dialogue
  config.data.num_people = 6  # people per profile dialogue
  config.data.change_rate = 0.25  # probability that a report is a true change
  config.data.noise_rate = 0.25  # probability that a report is wrong

  config.model = ml_collections.ConfigDict()
  config.model.num_slots = 48  # memory capacity (facts, versions included)
  config.model.entity_size = 32  # entity embedding size (the values)
  config.model.relation_size = 16  # relation embedding size
  config.model.match_threshold = 0.95  # cosine of keys holding the same fact
  config.model.answer_scale = 10.0  # initial softmax scale of the answer
  config.model.gate_hidden = 16  # hidden units of the conflict gate
  config.model.gate_time_scale = 10.0  # the gate reads (time since the old fact) / this

  config.gate_training = ml_collections.ConfigDict()
  config.gate_training.learning_rate = 0.01  # Adam
  config.gate_training.batch_size = 16  # profile dialogues per step
  config.gate_training.steps_per_round = 20  # steps per jitted call
  config.gate_training.num_rounds = 15  # 300 steps
  config.gate_training.log_every = 3  # rounds between validation rows
  config.gate_training.checkpoint_every = 5  # rounds between Orbax checkpoints
  config.gate_training.num_val_profiles = 32  # of the training profiles, held for validation

  # Decay settings, run with the newest-wins policy (None = off).
  config.decay_settings = ml_collections.ConfigDict()
  config.decay_settings.none = {"max_age": None}
  config.decay_settings.max_age_20 = {"max_age": 20.0}
  config.decay_settings.half_life_20 = {"half_life": 20.0, "min_confidence": 0.25}
  return config
