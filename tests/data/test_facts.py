"""Tests for memjax.data.facts: bAbI statements as facts, generated profiles, event arrays."""

import os
import pathlib

import numpy as np
import pytest

from memjax.data import facts as F


def _real_root():
  for root in (
    os.environ.get("MEMJAX_DATA_DIR"),
    str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"),
  ):
    if root and (pathlib.Path(root) / "babi" / "tasks_1-20_v1-2" / "en").is_dir():
      return root
  pytest.skip("bAbI data not available (MEMJAX_DATA_DIR)")


@pytest.mark.parametrize(
  "sentence, fact",
  [
    ("mary moved to the bathroom", ("mary", "location", "bathroom", "mary")),
    ("john went back to the hallway", ("john", "location", "hallway", "john")),
    ("daniel picked up the apple there", ("apple", "holder", "daniel", "daniel")),
    ("sandra got the football there", ("football", "holder", "sandra", "sandra")),
    ("mary put down the milk", ("milk", "holder", "nobody", "mary")),
    ("john discarded the football", ("football", "holder", "nobody", "john")),
    ("fred handed the apple to bill", ("apple", "holder", "bill", "bill")),
  ],
)
def test_sentence_facts(sentence, fact):
  (got,) = F.sentence_facts(sentence.split(), 7)
  assert (got.subject, got.relation, got.object, got.owner) == fact and got.time == 7


def test_unknown_sentence_is_named():
  with pytest.raises(F.UnknownSentenceError, match="'the kitchen is north of the garden'"):
    F.sentence_facts("the kitchen is north of the garden".split(), 0)


def test_babi_stream_answers_equal_the_files_answers():
  """Each task-1 story ends with "Where is X?": our end-of-story answer for (x, location)
  must be the file's answer (read here line by line, independently of the module)."""
  root = _real_root()
  path = (
    pathlib.Path(root) / "babi" / "tasks_1-20_v1-2" / "en" / "qa1_single-supporting-fact_test.txt"
  )
  last = []  # per story: (person, answer) of its last question
  for line in path.read_text().splitlines():
    number, text = line.split(" ", 1)
    if number == "1":
      last.append(None)
    if "\t" in text:
      question, answer = text.split("\t")[:2]
      last[-1] = (question.split()[-1].rstrip("?").lower(), answer)
  streams = F.babi_streams((1,), "test", stories_per_stream=10, data_dir=root)
  assert len(streams) == len(last) // 10
  checked = 0
  for s, stream in enumerate(streams):
    ends = sorted({q.time for q in stream.questions})
    assert len(ends) == 10
    for i, t in enumerate(ends):
      person, answer = last[s * 10 + i]
      asked = {(q.subject, q.relation): q.answer for q in stream.questions if q.time == t}
      assert asked[person, "location"] == answer
      checked += 1
  assert checked == len(streams) * 10 >= 190


def test_every_statement_of_the_six_tasks_is_a_fact():
  root = _real_root()
  for task in F.BABI_TASKS:
    streams = F.babi_streams((task,), "test", stories_per_stream=50, data_dir=root)
    assert streams and all(len(s.facts) > 100 for s in streams)


def test_babi_since_update_and_repeated_statements():
  story = [["mary", "moved", "to", "the", "office"], ["john", "went", "to", "the", "garden"]]
  story2 = [["mary", "went", "to", "the", "office"], ["mary", "got", "the", "milk", "there"]]
  stream = F.babi_stream([story, story2], "s")
  at_end = {
    (q.subject, q.relation): (q.answer, q.since_update) for q in stream.questions if q.time == 3
  }
  # Mary's office was stated at t=0 and again at t=2 (no change): 3 steps since the update.
  assert at_end == {
    ("mary", "location"): ("office", 3),
    ("john", "location"): ("garden", 2),
    ("milk", "holder"): ("mary", 0),
  }


def test_profiles_questions_follow_the_true_reports():
  stream = F.generate_profiles(3, num_steps=200, num_people=3)
  assert stream == F.generate_profiles(3, num_steps=200, num_people=3)  # seeded
  assert stream != F.generate_profiles(4, num_steps=200, num_people=3)
  # Replay: a correct report sets the truth (a change when the value differs).
  truth, changed, reported = {}, {}, {}
  facts = iter(stream.facts)
  pending = next(facts)
  for q in stream.questions:
    while pending is not None and pending.time <= q.time:
      key = (pending.subject, pending.relation)
      if pending.correct and truth.get(key) != pending.object:
        truth[key], changed[key] = pending.object, pending.time
      reported[key] = pending.object
      pending = next(facts, None)
    key = (q.subject, q.relation)
    assert (q.answer, q.since_update, q.latest) == (
      truth[key],
      q.time - changed[key],
      reported[key],
    )
  wrong = [f for f in stream.facts if not f.correct]
  assert wrong and all(0.05 <= f.confidence <= 0.7 for f in wrong)


def test_events_are_in_time_order_and_padded():
  streams = [F.generate_profiles(0, num_steps=5, num_people=2), F.generate_profiles(1, 3, 2)]
  vocab = F.build_vocab(streams)
  events = F.stack_events(streams, vocab)
  n0 = len(streams[0].facts) + len(streams[0].questions)
  assert events.subject.shape == (2, n0)
  t = events.time[0]
  assert np.all(np.diff(t) >= 0)
  # At equal times the facts come before the questions.
  for i in range(n0 - 1):
    if t[i] == t[i + 1]:
      assert events.is_fact[0, i] >= events.is_fact[0, i + 1]
  n1 = len(streams[1].facts) + len(streams[1].questions)
  assert events.valid[1].sum() == n1 and not events.valid[1, n1:].any()
  q = ~events.is_fact[0] & events.valid[0]
  assert [vocab.entities[i] for i in events.object[0][q]] == [
    x.answer for x in streams[0].questions
  ]
  with pytest.raises(ValueError, match="length=3 < the"):
    F.to_events(streams[0], vocab, 3)
