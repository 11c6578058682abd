"""Dialogue-memory study: facts that change over time, answered from a fact memory.

Streams of facts (``memjax.data.facts``: real bAbI stories where people move and pass
objects around, and generated user profiles whose values change and are reported by
sources of varying reliability) are written into a :class:`memjax.knowledge.FactState`
under each conflict policy; questions asked along the way are answered from the memory.

The model that answers is the memory's embedding read: a fact (subject, relation,
object) is stored under ``triple_key(E[subject], R[relation])`` with value ``E[object]``
(fixed random unit embeddings), and a question (subject, relation) reads the active fact
under its key and answers the candidate object (of that relation) whose embedding is the
nearest to the value read (cosine). The learned part is the conflict gate
(:class:`memjax.knowledge.ConflictGate`), trained with ``memjax.train.fit`` end to end
through the memory (a ``lax.scan`` over the events) on generated training profiles: the
loss is the cross-entropy of the answers, ``softmax(scale * cos(read, E[candidate]))``.

Outputs in ``workdir``: ``results.json`` (accuracy per policy, overall and per bucket of
time since the asked fact last changed, for bAbI and for the held-out profiles; decay
settings; the deletion check), ``accuracy_vs_time_since_update.png``, the gate's training
run under ``gate/`` (Orbax checkpoints, ``metrics.jsonl``; a killed run resumes) and the
on-disk store of the deletion check under ``store/``.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memjax import knowledge, ops, train
from memjax.data import facts as fact_data

# ----------------------------------------------------------------------------- data


def load_streams(config: ml_collections.ConfigDict) -> dict[str, list[fact_data.FactStream]]:
  """The streams of the study: bAbI (if any tasks), held-out and training profiles."""
  d = config.data
  streams = {}
  if d.babi_tasks:
    streams["babi"] = fact_data.babi_streams(
      tuple(d.babi_tasks),
      d.babi_split,
      d.stories_per_stream,
      d.max_streams_per_task or None,
      d.data_dir or None,
    )
  profile = functools.partial(
    fact_data.generate_profiles,
    num_steps=d.profile_steps,
    num_people=d.num_people,
    change_rate=d.change_rate,
    noise_rate=d.noise_rate,
  )
  streams["profiles"] = [profile(seed) for seed in range(d.num_test_profiles)]
  streams["train_profiles"] = [profile(100_000 + s) for s in range(d.num_train_profiles)]
  return streams


def embeddings(vocab: fact_data.FactVocab, config) -> dict[str, jax.Array]:
  """Fixed random unit embeddings of the entities and relations, and each relation's
  candidate mask over the entities."""
  ke, kr = jax.random.split(jax.random.key(config.seed))

  def unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

  cand = np.zeros((len(vocab.relations), len(vocab.entities)), bool)
  for r, objects in vocab.candidates.items():
    cand[vocab.relations.index(r), [vocab.entity(o) for o in objects]] = True
  return {
    "entity": unit(jax.random.normal(ke, (len(vocab.entities), config.model.entity_size))),
    "relation": unit(jax.random.normal(kr, (len(vocab.relations), config.model.relation_size))),
    "candidates": jnp.asarray(cand),
  }


# ----------------------------------------------------------------------------- the model


class ModelSpec(NamedTuple):
  """The model's static settings (hashable: a static argument of the jitted functions)."""

  num_slots: int
  entity_size: int
  relation_size: int
  match_threshold: float
  gate_hidden: int
  gate_time_scale: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> ModelSpec:
    m = config.model
    return cls(
      m.num_slots,
      m.entity_size,
      m.relation_size,
      m.match_threshold,
      m.gate_hidden,
      m.gate_time_scale,
    )


def run_stream(
  events: fact_data.Events,
  emb: dict[str, jax.Array],
  gate_params: Any,
  scale: jax.Array,
  *,
  policy: str,
  spec: ModelSpec,
  decay: tuple[tuple[str, float], ...] = (),
) -> tuple[knowledge.FactState, dict[str, jax.Array]]:
  """Writes a stream's facts and answers its questions (one stream, ``[E]`` events).

  Returns:
    ``(final memory, per event: logits [E, entities], correct [E], latest [E] (the answer
    is the latest report), found [E], held [E])``.
  """
  m = spec
  state = knowledge.init_state(m.num_slots, m.entity_size + m.relation_size, m.entity_size)
  gate = knowledge.ConflictGate(m.gate_hidden, m.gate_time_scale)

  def step(state, e):
    key = knowledge.triple_key(emb["entity"][e.subject], emb["relation"][e.relation])
    value = emb["entity"][e.object]
    written = knowledge.integrate(
      state,
      key,
      value,
      e.time,
      e.confidence,
      e.owner,
      policy,
      threshold=m.match_threshold,
      gate=gate,
      gate_params=gate_params if policy == "gate" else None,
    )
    if decay:
      written = knowledge.decay(written, e.time, **dict(decay))
    write = e.is_fact & e.valid
    state = jax.tree.map(lambda a, b: jnp.where(write, a, b), written, state)
    read, _, found = knowledge.lookup(state, key, m.match_threshold)
    unit = read / (jnp.linalg.norm(read) + 1e-6)
    logits = scale * (emb["entity"] @ unit)
    logits = jnp.where(emb["candidates"][e.relation], logits, -1e9)
    predicted = jnp.argmax(logits)
    correct = found & (predicted == e.object)
    latest = found & (predicted == e.latest)
    held = knowledge.num_facts(state)
    out = {"logits": logits, "correct": correct, "latest": latest, "found": found, "held": held}
    return state, out

  return jax.lax.scan(step, state, events)


def _question_loss(out, events):
  """Mean cross-entropy of the answers over the valid questions of ``[S, E]`` events."""
  ask = (~events.is_fact & events.valid).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], events.object)
  accuracy = jnp.sum(out["correct"] * ask) / jnp.maximum(jnp.sum(ask), 1.0)
  return jnp.sum(ce * ask) / jnp.maximum(jnp.sum(ask), 1.0), accuracy


@functools.partial(jax.jit, static_argnames=("policy", "spec", "decay"))
def evaluate(events, emb, gate_params, scale, *, policy, spec, decay=()):
  """Every stream of ``events [S, E]`` under ``policy``: per-event outputs ``[S, E]``.

  Module-level and jitted on its static settings, so runs in one process (a resumed run,
  a notebook) compile each policy once.
  """
  run = functools.partial(run_stream, policy=policy, spec=spec, decay=decay)
  _, out = jax.vmap(lambda ev: run(ev, emb, gate_params, scale))(events)
  return out


# ----------------------------------------------------------------------------- the gate


@functools.cache
def _gate_steps(spec: ModelSpec, batch_size: int, steps_per_round: int, learning_rate: float):
  """The gate's optimizer and jitted training steps (cached: a resumed run in the same
  process, or the next run of a notebook, does not compile them again)."""
  optimizer = optax.adam(learning_rate)

  def loss_fn(params, batch, key, context):
    del key
    scale = jnp.exp(params["log_scale"])
    out = evaluate(batch, context["emb"], params["gate"], scale, policy="gate", spec=spec)
    loss, accuracy = _question_loss(out, batch)
    return loss, {"accuracy": accuracy}

  def batch_fn(x, key, context):
    del x
    num_streams = context["events"].subject.shape[0]
    pick = jax.random.choice(key, num_streams, (batch_size,), replace=False)
    return jax.tree.map(lambda a: a[pick], context["events"])

  steps = train.make_train_steps(loss_fn, optimizer, num_steps=steps_per_round, batch_fn=batch_fn)
  return optimizer, steps


@functools.partial(jax.jit, static_argnames="spec")
def _validation_accuracy(params, events, emb, spec):
  scale = jnp.exp(params["log_scale"])
  out = evaluate(events, emb, params["gate"], scale, policy="gate", spec=spec)
  return _question_loss(out, events)[1]


def train_gate(config, workdir: str, emb, train_events, val_events) -> tuple[Any, dict]:
  """Trains the conflict gate (and the answer scale) on generated profiles with ``fit``."""
  m, t = config.model, config.gate_training
  spec = ModelSpec.from_config(config)
  gate = knowledge.ConflictGate(m.gate_hidden, m.gate_time_scale)
  v = jnp.zeros(m.entity_size)
  optimizer, steps = _gate_steps(spec, t.batch_size, t.steps_per_round, t.learning_rate)

  def init():
    params = {
      "gate": gate.init(jax.random.key(config.seed + 1), v, v, 1.0, 1.0, 1.0)["params"],
      "log_scale": jnp.log(jnp.asarray(m.answer_scale, jnp.float32)),
    }
    return train.TrainState.create(params, optimizer, jax.random.key(config.seed + 2))

  context = {"events": jax.tree.map(jnp.asarray, train_events), "emb": emb}
  val = jax.tree.map(jnp.asarray, val_events)

  def validation_accuracy(params):
    return _validation_accuracy(params, val, emb, spec)

  result = train.fit(
    init,
    lambda state, r: steps(state, None, context),
    workdir=os.path.join(workdir, "gate"),
    num_rounds=t.num_rounds,
    eval_fn=lambda state: {"val_accuracy": float(validation_accuracy(state.params))},
    log_every=t.log_every,
    checkpoint_every=t.checkpoint_every,
    steps_per_round=t.steps_per_round,
    progress=config.progress_bar,
    desc="facts: conflict gate",
    postfix=("loss", "val_accuracy"),
  )
  curve = [[r["step"], r["loss"], r["val_accuracy"]] for r in result.history]
  info = {
    "steps": int(result.state.step),
    "curve_columns": ["step", "loss", "val_accuracy"],
    "curve": curve,
    "wall_time_s": result.wall_time_s,
    "answer_scale": float(jnp.exp(result.state.params["log_scale"])),
  }
  return result.state.params, info


# ----------------------------------------------------------------------------- metrics


def bucket_names(edges) -> list[str]:
  names = []
  for lo, hi in zip(edges, list(edges[1:]) + [None], strict=True):
    names.append(f"{lo}+" if hi is None else (f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}"))
  return names


def accuracy_table(out, events, edges) -> dict[str, Any]:
  """Accuracy over the questions, overall and per bucket of time since the update."""
  correct = np.asarray(out["correct"])
  ask = ~np.asarray(events.is_fact) & np.asarray(events.valid)
  since = np.asarray(events.since_update)
  idx = np.searchsorted(np.asarray(edges), since, side="right") - 1
  table = {"accuracy": float(correct[ask].mean()), "questions": int(ask.sum()), "buckets": {}}
  for b, name in enumerate(bucket_names(edges)):
    sel = ask & (idx == b)
    table["buckets"][name] = {
      "accuracy": float(correct[sel].mean()) if sel.any() else None,
      "questions": int(sel.sum()),
    }
  table["answered"] = float(np.asarray(out["found"])[ask].mean())
  # The fraction of answers equal to the latest report of the fact (right or wrong).
  table["agrees_with_latest_report"] = float(np.asarray(out["latest"])[ask].mean())
  table["mean_facts_held"] = float(np.asarray(out["held"])[np.asarray(events.valid)].mean())
  return table


# ----------------------------------------------------------------------------- deletion


@functools.partial(jax.jit, static_argnames=("policy", "spec"))
def _final_state(events, emb, gate_params, scale, *, policy, spec):
  return run_stream(events, emb, gate_params, scale, policy=policy, spec=spec)[0]


_delete_owner = jax.jit(knowledge.delete_owner)


def deletion_check(config, workdir, emb, vocab, events, person: str) -> dict[str, Any]:
  """ "Forget <person>" on one dialogue written under the ``'versions'`` policy (so the
  person's past versions are held too): delete their facts from the memory and from a
  store on disk, then ask every (subject, relation) of the dialogue again.

  No answer may be about the person (a fact with them as the subject, or an object they
  hold), and no file of the store may hold their name, their embedding (the value of
  "X is held by <person>") or the key of (person, relation) for any relation.
  """
  spec = ModelSpec.from_config(config)
  state = _final_state(events, emb, None, jnp.float32(1.0), policy="versions", spec=spec)
  owner = vocab.owners.index(person)
  theirs = np.asarray(state.kv.valid) & (np.asarray(state.owner) == owner)
  me = vocab.entity(person)
  # What identifies the person: the name, their embedding (the value of "X is held by
  # <person>") and the stored keys of (person, relation), as held in the memory.
  about = np.zeros(len(theirs), bool)
  for r in range(len(vocab.relations)):
    key = knowledge.triple_key(emb["entity"][me], emb["relation"][r])
    about |= np.asarray(ops.cosine(key, state.kv.keys)) > 0.999
  patterns = [person.encode(), np.asarray(emb["entity"][me]).tobytes()]
  patterns += sorted(
    {np.asarray(state.kv.keys[i]).tobytes() for i in np.flatnonzero(about & theirs)}
  )
  path = os.path.join(workdir, "store")
  owners = {name: i for i, name in enumerate(vocab.owners)}
  knowledge.save_state(path, state, config.store_shard_capacity, owners)

  def grep():
    found = 0
    for folder, _, names in os.walk(path):
      for name in names:
        with open(os.path.join(folder, name), "rb") as f:
          data = f.read()
        found += sum(p in data for p in patterns)
    return found

  def answers_about_person(memory):
    live = np.asarray(events.valid)
    pairs = sorted(
      set(
        zip(
          np.asarray(events.subject)[live].tolist(),
          np.asarray(events.relation)[live].tolist(),
          strict=True,
        )
      )
    )
    subj = jnp.asarray([s for s, _ in pairs])
    keys = knowledge.triple_key(
      emb["entity"][subj], emb["relation"][jnp.asarray([r for _, r in pairs])]
    )
    values, _, found = knowledge.lookup(memory, keys, config.model.match_threshold)
    nearest = jnp.argmax(values @ emb["entity"].T, axis=-1)
    return int(jnp.sum(found & ((subj == me) | (nearest == me))))

  found_before = grep()
  asked_before = answers_about_person(state)
  gone = _delete_owner(state, owner)
  deleted_on_disk = knowledge.FactStore.open(path).delete_owner(person)
  loaded, _ = knowledge.load_state(path)
  return {
    "person": person,
    "policy": "versions",
    "facts_before": int(theirs.sum()),
    "facts_left_in_memory": int(
      np.sum(np.asarray(gone.kv.valid) & (np.asarray(gone.owner) == owner))
    ),
    "rows_deleted_on_disk": deleted_on_disk,
    "answers_about_person_before": asked_before,
    "answers_about_person_after_from_memory": answers_about_person(gone),
    "answers_about_person_after_from_disk": answers_about_person(loaded),
    "byte_patterns_found_before": found_before,
    "byte_patterns_found_after": grep(),
    "disk_equals_memory": all(
      np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(gone), strict=True)
    ),
  }


# ----------------------------------------------------------------------------- the study


def plot(path: str, tables: dict[str, dict[str, dict]], title: str) -> None:
  """Accuracy against time since the update, a line per policy, a panel per dataset."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.8), squeeze=False)
  for ax, (dataset, per_policy) in zip(axes[0], tables.items(), strict=True):
    styles = zip("osv^Dx", ("-", "--", ":", "-.", "-", "--"), (9, 7, 5, 5, 4, 6), strict=True)
    for (policy, table), (marker, line, size) in zip(per_policy.items(), styles, strict=False):
      names = list(table["buckets"])
      acc = [table["buckets"][n]["accuracy"] for n in names]
      x = [i for i, a in enumerate(acc) if a is not None]
      # Distinct markers and line styles: equal curves (newest / versions) stay visible.
      ax.plot(x, [acc[i] for i in x], marker=marker, linestyle=line, markersize=size, label=policy)
      ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("time since the asked fact last changed")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(dataset, fontsize=10)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the gate (resuming from ``workdir``), evaluates every policy, decay and
  deletion, and writes ``results.json`` and the plot.

  Args:
    config: see ``experiments/facts/configs/default.py``.
    workdir: the output directory.

  Returns:
    The metrics written to ``results.json``.
  """
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  unknown = set(config.policies) - set(knowledge.CONFLICT_POLICIES)
  if unknown:
    raise ValueError(f"config.policies: {sorted(unknown)} not in {knowledge.CONFLICT_POLICIES}")
  streams = load_streams(config)
  vocab = fact_data.build_vocab([s for group in streams.values() for s in group])
  emb = embeddings(vocab, config)
  events = {name: fact_data.stack_events(group, vocab) for name, group in streams.items()}
  n_val = config.gate_training.num_val_profiles
  train_events = jax.tree.map(lambda a: a[n_val:], events["train_profiles"])
  val_events = jax.tree.map(lambda a: a[:n_val], events["train_profiles"])

  gate_params, gate_info, gate_session_s = None, None, 0.0
  if "gate" in config.policies:
    gate_start = time.time()
    params, gate_info = train_gate(config, workdir, emb, train_events, val_events)
    gate_session_s = time.time() - gate_start
    # Host copies: a fresh and a resumed run then call the jitted evaluations with the
    # same kind of arguments (restored arrays are committed to a device), so a second run
    # in one process compiles nothing again.
    params = jax.device_get(params)
    gate_params, scale = params["gate"], np.exp(params["log_scale"])
  else:
    scale = np.float32(config.model.answer_scale)

  edges = list(config.buckets)
  datasets = [d for d in ("babi", "profiles") if d in events]
  tables: dict[str, dict[str, Any]] = {d: {} for d in datasets}
  spec = ModelSpec.from_config(config)
  for policy in config.policies:
    for d in datasets:
      out = evaluate(events[d], emb, gate_params, scale, policy=policy, spec=spec)
      tables[d][policy] = accuracy_table(out, events[d], edges)

  decay_tables: dict[str, dict[str, Any]] = {d: {} for d in datasets}
  for name, setting in config.decay_settings.items():
    setting = tuple(sorted((k, v) for k, v in setting.items() if v is not None))
    for d in datasets:
      out = evaluate(events[d], emb, gate_params, scale, policy="newest", spec=spec, decay=setting)
      decay_tables[d][name] = {"setting": dict(setting), **accuracy_table(out, events[d], edges)}

  deletion = None
  if "babi" in events and config.forget in vocab.owners:
    one = jax.tree.map(lambda a: a[0], events["babi"])
    deletion = deletion_check(config, workdir, emb, vocab, one, config.forget)

  metrics = {
    "policies": tables,
    "decay": decay_tables,
    "deletion": deletion,
    "gate_training": gate_info,
    "buckets": bucket_names(edges),
    "data": {
      name: {
        "streams": len(group),
        "facts": sum(len(s.facts) for s in group),
        "questions": sum(len(s.questions) for s in group),
      }
      for name, group in streams.items()
    },
    "model": "fact memory embedding read + nearest candidate object (cosine); learned: the "
    "conflict gate and the answer scale",
  }
  if config.plots:
    plot(
      os.path.join(workdir, "accuracy_vs_time_since_update.png"),
      tables,
      "answer accuracy per conflict policy against time since the fact last changed",
    )
  # This session's time, with the gate's training counted over every session (resumed runs).
  wall = time.time() - start - gate_session_s + (gate_info["wall_time_s"] if gate_info else 0.0)
  train.write_results(workdir, metrics, config, wall)
  for d in datasets:
    row = "  ".join(f"{p} {t['accuracy']:.3f}" for p, t in tables[d].items())
    print(f"facts [{d}] accuracy: {row}")
  if deletion:
    print(
      f"facts: forget {deletion['person']}: {deletion['facts_before']} facts deleted; answers "
      f"about them after: {deletion['answers_about_person_after_from_memory']} (memory), "
      f"{deletion['answers_about_person_after_from_disk']} (disk); byte patterns left on "
      f"disk: {deletion['byte_patterns_found_after']} (before: "
      f"{deletion['byte_patterns_found_before']})   results: {workdir}/results.json"
    )
  return metrics
