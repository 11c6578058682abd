"""Dialogue-memory data: timestamped facts that change, and questions asked long after.

Two sources of :class:`FactStream` s (a stream is one dialogue: facts in time order and
questions about them, each question knowing how long ago its fact last changed):

* :func:`babi_streams`: real bAbI stories (tasks 1, 2, 3, 6, 7, 8: people move between
  places and pick up, drop and pass objects) read with :mod:`memjax.data.babi`'s reader
  and tokenizer. Each sentence becomes a fact: ``(person, 'location', place)`` for a
  move, ``(object, 'holder', person)`` for a pick-up or a hand-over, ``(object, 'holder',
  'nobody')`` for a drop; its owner is the person it is about. Consecutive stories of a
  task file are chained into one dialogue (the same four people keep moving), the time
  is the sentence's index in the dialogue, and at the end of every story every fact
  known so far is asked: the answer is its latest value.
* :func:`generate_profiles`: seeded synthetic user profiles (person, attribute, value)
  whose true values change over time, reported by sources of varying reliability with a
  confidence: true changes (``change_rate``), noisy wrong reports (``noise_rate``) and
  confirmations; a question per step about a random fact, its answer the current truth.

:func:`to_events` turns a stream into fixed-shape int / float arrays (one event per fact
or question, in time order) over a :class:`FactVocab`, for a ``lax.scan``.

The bAbI data root is the ``data_dir`` argument or ``$MEMJAX_DATA_DIR`` (see
:mod:`memjax.data.babi`); nothing is downloaded here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from memjax.data.babi import parse

MOVE_VERBS = ("moved", "went", "journeyed", "travelled")
TAKE_VERBS = ("got", "grabbed", "picked", "took")
DROP_VERBS = ("dropped", "left", "discarded", "put")
GIVE_VERBS = ("passed", "handed", "gave")
BABI_TASKS = (1, 2, 3, 6, 7, 8)  # the tasks whose stories move people and objects
NOBODY = "nobody"

# Generated profiles: attribute -> the values it takes.
PROFILE_ATTRIBUTES = {
  "city": ("paris", "rome", "oslo", "lima", "cairo", "tokyo", "delhi", "quito"),
  "employer": ("acme", "globex", "initech", "umbrella", "hooli", "stark"),
  "pet": ("cat", "dog", "parrot", "rabbit", "turtle"),
  "food": ("pasta", "sushi", "tacos", "curry", "salad", "ramen"),
}
PROFILE_PEOPLE = ("ann", "bob", "cleo", "dev", "eve", "finn", "gus", "hana")


class Fact(NamedTuple):
  time: int
  subject: str
  relation: str
  object: str
  confidence: float = 1.0
  owner: str = ""
  correct: bool = True  # generated profiles: the report states the truth


class Question(NamedTuple):
  time: int  # asked after every fact with time <= this
  subject: str
  relation: str
  answer: str
  since_update: int  # time since the asked fact last changed (its latest true update)
  latest: str = ""  # the latest reported value (may be a wrong report); '' = the answer


class FactStream(NamedTuple):
  name: str
  facts: list[Fact]
  questions: list[Question]


class UnknownSentenceError(ValueError):
  """A bAbI statement that is neither a move, a pick-up, a drop nor a hand-over."""


def sentence_facts(words: Sequence[str], time: int) -> list[Fact]:
  """The facts one tokenized bAbI statement states (``parse.tokenize``'s words).

  Args:
    words: e.g. ``['mary', 'moved', 'to', 'the', 'bathroom']``.
    time: the statement's time.

  Returns:
    One fact, e.g. ``Fact(time, 'mary', 'location', 'bathroom', owner='mary')``.

  Raises:
    UnknownSentenceError: a statement of another kind.
  """
  w = list(words)
  if len(w) >= 4 and w[1] in MOVE_VERBS and w[-2] == "the":
    return [Fact(time, w[0], "location", w[-1], owner=w[0])]
  if len(w) >= 4 and w[1] in GIVE_VERBS and w[-2] == "to":
    return [Fact(time, w[w.index("the") + 1], "holder", w[-1], owner=w[-1])]
  if len(w) >= 4 and w[1] in TAKE_VERBS and "the" in w:
    return [Fact(time, w[w.index("the") + 1], "holder", w[0], owner=w[0])]
  if len(w) >= 4 and w[1] in DROP_VERBS and "the" in w:
    return [Fact(time, w[w.index("the") + 1], "holder", NOBODY, owner=w[0])]
  raise UnknownSentenceError(f"not a move / pick-up / drop / hand-over: {' '.join(w)!r}")


def read_babi_stories(
  task: int, split: str = "test", data_dir: str | os.PathLike | None = None, lang: str = "en"
) -> list[list[list[str]]]:
  """The statements (tokenized) of every story of a bAbI task file, questions left out.

  Args:
    task: 1..20.
    split: 'train' or 'test'.
    data_dir: the data root; default ``$MEMJAX_DATA_DIR``.
    lang: the archive folder.

  Raises:
    parse.BabiDataNotFoundError: no bAbI folder or archive under the root (says where).
    parse.BabiFormatError: a malformed file (its path and line).
  """
  root = data_dir if data_dir is not None else os.environ.get(parse.ENV_VAR) or None
  source, looked_in = parse.find_source(root)
  if source is None:
    raise parse.BabiDataNotFoundError(parse.missing_data_message(root, looked_in))
  name = parse.task_filename(lang, task, split)
  lines = source.read([name])[name]
  if lines is None:
    raise parse.BabiDataNotFoundError(f"{source.display_path(name)}: no such file")
  parse.parse_raw(lines, source.display_path(name), task)  # validates the whole file
  stories: list[list[list[str]]] = []
  for line in lines:
    line = line.strip()
    if not line:
      continue
    number, text = line.split(" ", 1)
    if number == "1":
      stories.append([])
    if "\t" not in text:
      stories[-1].append(parse.tokenize(text))
  return stories


def babi_stream(stories: Sequence[Sequence[Sequence[str]]], name: str) -> FactStream:
  """One dialogue from consecutive stories (see the module docstring)."""
  facts, questions = [], []
  latest: dict[tuple[str, str], tuple[str, int]] = {}  # (subject, relation) -> (object, time)
  t = 0
  for story in stories:
    for words in story:
      for fact in sentence_facts(words, t):
        facts.append(fact)
        key = (fact.subject, fact.relation)
        if latest.get(key, (None,))[0] != fact.object:
          latest[key] = (fact.object, t)
        else:  # a repeated statement: the value did not change
          latest[key] = (fact.object, latest[key][1])
      t += 1
    for (subject, relation), (obj, since) in sorted(latest.items()):
      questions.append(Question(t - 1, subject, relation, obj, t - 1 - since))
  return FactStream(name, facts, questions)


def babi_streams(
  tasks: Sequence[int] = BABI_TASKS,
  split: str = "test",
  stories_per_stream: int = 20,
  max_streams_per_task: int | None = None,
  data_dir: str | os.PathLike | None = None,
) -> list[FactStream]:
  """Dialogues of ``stories_per_stream`` consecutive stories from each task's file.

  Returns:
    Streams named ``qa<task>_<split>_<index>``.
  """
  streams = []
  for task in tasks:
    stories = read_babi_stories(task, split, data_dir)
    count = len(stories) // stories_per_stream
    if max_streams_per_task is not None:
      count = min(count, max_streams_per_task)
    for i in range(count):
      chunk = stories[i * stories_per_stream : (i + 1) * stories_per_stream]
      streams.append(babi_stream(chunk, f"qa{task}_{split}_{i}"))
  return streams


def generate_profiles(
  seed: int,
  num_steps: int = 150,
  num_people: int = 6,
  attributes: dict[str, Sequence[str]] | None = None,
  change_rate: float = 0.25,
  noise_rate: float = 0.25,
  true_confidence: tuple[float, float] = (0.4, 1.0),
  noise_confidence: tuple[float, float] = (0.05, 0.7),
) -> FactStream:
  """A seeded synthetic profile dialogue (see the module docstring).

  At time 0 every (person, attribute) is stated truly with confidence 1. Each later step
  is one report: with probability ``change_rate`` a fact changes and the change is
  reported (confidence uniform in ``true_confidence``), with ``noise_rate`` a wrong value
  is reported (confidence uniform in ``noise_confidence``), otherwise the current value
  is confirmed (``true_confidence``). Then one question about a random fact is asked.

  Args:
    seed: the stream's seed.
    num_steps: reports after the initial profile.
    num_people: people (from ``PROFILE_PEOPLE``).
    attributes: attribute -> values (default ``PROFILE_ATTRIBUTES``).
    change_rate: probability that a step is a true change.
    noise_rate: probability that a step is a wrong report.
    true_confidence: the confidence range of true reports.
    noise_confidence: the confidence range of wrong reports.

  Returns:
    A :class:`FactStream` named ``profiles_<seed>``.
  """
  attributes = dict(PROFILE_ATTRIBUTES if attributes is None else attributes)
  if not 1 <= num_people <= len(PROFILE_PEOPLE):
    raise ValueError(f"num_people={num_people} must be in [1, {len(PROFILE_PEOPLE)}]")
  if not 0 <= change_rate + noise_rate <= 1:
    raise ValueError(f"change_rate + noise_rate = {change_rate + noise_rate} must be in [0, 1]")
  rng = np.random.default_rng(seed)
  people = PROFILE_PEOPLE[:num_people]
  names = sorted(attributes)
  truth, changed, facts, questions, reported = {}, {}, [], [], {}
  for p in people:
    for a in names:
      truth[p, a] = attributes[a][rng.integers(len(attributes[a]))]
      changed[p, a] = 0
      facts.append(Fact(0, p, a, truth[p, a], 1.0, p, True))
      reported[p, a] = truth[p, a]
  for t in range(1, num_steps + 1):
    p, a = people[rng.integers(len(people))], names[rng.integers(len(names))]
    values = attributes[a]
    others = [v for v in values if v != truth[p, a]]
    u = rng.random()
    if u < change_rate:
      truth[p, a], changed[p, a] = others[rng.integers(len(others))], t
      facts.append(Fact(t, p, a, truth[p, a], float(rng.uniform(*true_confidence)), p, True))
    elif u < change_rate + noise_rate:
      wrong = others[rng.integers(len(others))]
      facts.append(Fact(t, p, a, wrong, float(rng.uniform(*noise_confidence)), p, False))
    else:
      facts.append(Fact(t, p, a, truth[p, a], float(rng.uniform(*true_confidence)), p, True))
    reported[p, a] = facts[-1].object
    qp, qa = people[rng.integers(len(people))], names[rng.integers(len(names))]
    questions.append(Question(t, qp, qa, truth[qp, qa], t - changed[qp, qa], reported[qp, qa]))
  return FactStream(f"profiles_{seed}", facts, questions)


class FactVocab(NamedTuple):
  """Names -> ids: entities (subjects and objects), relations, owners."""

  entities: tuple[str, ...]
  relations: tuple[str, ...]
  owners: tuple[str, ...]
  candidates: dict[str, tuple[str, ...]]  # relation -> the objects it takes

  def entity(self, name: str) -> int:
    return self.entities.index(name)


def build_vocab(streams: Sequence[FactStream]) -> FactVocab:
  """The sorted names of every stream's entities, relations, owners and each relation's
  objects (answers included)."""
  entities, relations, owners = set(), set(), set()
  candidates: dict[str, set[str]] = {}
  for s in streams:
    for f in s.facts:
      entities |= {f.subject, f.object}
      relations.add(f.relation)
      owners.add(f.owner)
      candidates.setdefault(f.relation, set()).add(f.object)
    for q in s.questions:
      entities |= {q.subject, q.answer}
      relations.add(q.relation)
      candidates.setdefault(q.relation, set()).add(q.answer)
  return FactVocab(
    tuple(sorted(entities)),
    tuple(sorted(relations)),
    tuple(sorted(owners - {""})),
    {r: tuple(sorted(v)) for r, v in sorted(candidates.items())},
  )


class Events(NamedTuple):
  """A stream as arrays, one event per fact or question, in time order ([E] each)."""

  is_fact: np.ndarray  # bool: a fact (written) or a question (answered)
  subject: np.ndarray  # int32 entity id
  relation: np.ndarray  # int32 relation id
  object: np.ndarray  # int32 entity id: the fact's object or the question's answer
  latest: np.ndarray  # int32 entity id: the latest reported value (questions; else object)
  time: np.ndarray  # float32
  confidence: np.ndarray  # float32 (1 for questions)
  owner: np.ndarray  # int32 owner id (-1: none / a question)
  since_update: np.ndarray  # int32 (questions; -1 for facts)
  valid: np.ndarray  # bool: False for padding


def to_events(stream: FactStream, vocab: FactVocab, length: int | None = None) -> Events:
  """The stream's events (facts before the questions of the same time), padded to
  ``length`` (default: the stream's own number of events).

  Raises:
    ValueError: ``length`` shorter than the stream.
  """
  rows = []
  for f in stream.facts:
    owner = vocab.owners.index(f.owner) if f.owner else -1
    rows.append(
      (f.time, 0, True, f.subject, f.relation, f.object, f.object, f.confidence, owner, -1)
    )
  for q in stream.questions:
    latest = q.latest or q.answer
    rows.append(
      (q.time, 1, False, q.subject, q.relation, q.answer, latest, 1.0, -1, q.since_update)
    )
  rows.sort(key=lambda r: (r[0], r[1]))
  n = len(rows)
  length = n if length is None else length
  if length < n:
    raise ValueError(f"to_events: length={length} < the {n} events of {stream.name}")
  out = Events(
    is_fact=np.zeros(length, bool),
    subject=np.zeros(length, np.int32),
    relation=np.zeros(length, np.int32),
    object=np.zeros(length, np.int32),
    latest=np.zeros(length, np.int32),
    time=np.zeros(length, np.float32),
    confidence=np.ones(length, np.float32),
    owner=np.full(length, -1, np.int32),
    since_update=np.full(length, -1, np.int32),
    valid=np.zeros(length, bool),
  )
  for i, (t, _, is_fact, s, r, o, latest, c, owner, since) in enumerate(rows):
    out.is_fact[i], out.subject[i] = is_fact, vocab.entity(s)
    out.relation[i], out.object[i] = vocab.relations.index(r), vocab.entity(o)
    out.latest[i], out.time[i], out.confidence[i] = vocab.entity(latest), t, c
    out.owner[i], out.since_update[i], out.valid[i] = owner, since, True
  return out


def stack_events(streams: Sequence[FactStream], vocab: FactVocab) -> Events:
  """Every stream's events padded to the longest, stacked: ``[S, E]`` arrays."""
  length = max(len(s.facts) + len(s.questions) for s in streams)
  per = [to_events(s, vocab, length) for s in streams]
  return Events(*(np.stack(column) for column in zip(*per, strict=True)))


__all__ = [
  "BABI_TASKS",
  "NOBODY",
  "PROFILE_ATTRIBUTES",
  "PROFILE_PEOPLE",
  "Events",
  "Fact",
  "FactStream",
  "FactVocab",
  "Question",
  "UnknownSentenceError",
  "babi_stream",
  "babi_streams",
  "build_vocab",
  "generate_profiles",
  "read_babi_stories",
  "sentence_facts",
  "stack_events",
  "to_events",
]
