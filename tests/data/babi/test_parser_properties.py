"""Property tests of the bAbI parser (hypothesis): random bytes, random edits of real bAbI
files, and generated stories that must round-trip.

Every input either parses into examples that satisfy the invariants below or raises a
``BabiFormatError`` (a ValueError) whose message starts with the file's full path and a
line number of the file; never another exception, never a hang (each case is timed).
The cases tried and their outcomes are counted and printed (``pytest -s``), and each test
checks that both outcomes were reached.
"""

from __future__ import annotations

import collections
import pathlib
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memjax.data.babi import parse

SETTINGS = settings(
  max_examples=200,
  deadline=None,
  database=None,  # nothing written into the repository
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_CASE = 2.0  # a case over this is a hang (they take about a millisecond)
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
LIMITS = parse.ParseLimits(max_sentence_words=40, max_story_sentences=60)


def _check(lines: list[bytes], path: str, counts: collections.Counter, task: int = 1):
  """Parses; checks the invariants of the result or of the error; counts the outcome."""
  start = time.perf_counter()
  try:
    raws = parse.parse_raw(lines, path, task, LIMITS)
  except parse.BabiFormatError as e:
    assert time.perf_counter() - start < SECONDS_PER_CASE
    assert isinstance(e, ValueError) and e.path == path
    assert str(e).startswith(f"{path}:{e.line}: ") and len(str(e)) < 1000
    assert 1 <= e.line <= max(1, len(lines))
    counts["error"] += 1
    kind = re.sub(r"[0-9]+", "N", e.message.split(";")[0].split("(")[0].split(":")[0])
    counts["error: " + re.sub(r"'.*'", "'..'", kind).strip()[:40]] += 1
    return None
  assert time.perf_counter() - start < SECONDS_PER_CASE
  counts["parsed"] += 1
  texts = [parse._decode(line, path, i) for i, line in enumerate(lines, 1)]
  # Every line with a tab is a question: none is dropped or taken as a statement.
  assert len(raws) == sum("\t" in text for text in texts) > 0
  for raw in raws:
    assert raw.task == task
    assert raw.question == raw.question.strip() and parse.tokenize(raw.question)
    assert "\t" not in raw.question and "\n" not in raw.question
    assert raw.answer == parse.normalize_answer(raw.answer)  # normalized, non-empty
    assert not any(c in raw.answer for c in "\t\n")
    assert len(raw.story) <= LIMITS.max_story_sentences
    for sentence in raw.story:
      assert sentence == sentence.strip() and parse.tokenize(sentence)
      assert "?" not in sentence and "\t" not in sentence and "\n" not in sentence
      assert len(sentence.split()) <= LIMITS.max_sentence_words
    assert all(0 <= i < len(raw.story) for i in raw.supporting)
  return raws


# ----------------------------------------------------------------------------- random bytes

# Pieces that make random lines look like bAbI lines now and then.
_PIECES = [b"1 ", b"2 ", b"3 ", b"10 ", b"\t", b"?", b".", b" ", b",", b"\r", b"\xef\xbb\xbf"]
_PIECES += [b"Mary went home", b"Where is Mary", b"rasoi ghar", b"\xe0\xa4\xae", b"\xff", b"0 "]
_line = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=6)), max_size=8).map(
  b"".join
)


@st.composite
def _with_random_bytes(draw, files):
  """A valid file with 0-3 random byte strings written over or into it."""
  data = draw(files)
  for _ in range(draw(st.integers(0, 3))):
    i = draw(st.integers(0, len(data)))
    cut = draw(st.integers(0, 2))
    data = (
      data[:i] + draw(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=3))) + data[i + cut :]
    )
  return data


@given(
  data=st.one_of(
    st.binary(max_size=400),
    st.lists(_line, max_size=20).map(b"\n".join),
    _with_random_bytes(st.deferred(lambda: _story_file().map(lambda case: case[0]))),
  )
)
@SETTINGS
def _random_bytes(tmp: pathlib.Path, data: bytes):
  counts = COUNTS["random bytes"]
  counts["cases"] += 1
  folder = tmp / "tasks_1-20_v1-2"
  name = parse.task_filename("en", 1, "train")
  (folder / name).write_bytes(data)
  source = parse.BabiSource(folder)
  path = source.display_path(name)
  _check(parse.split_lines(source.read_bytes([name])[name]), path, counts)


def test_random_bytes_parse_or_name_path_and_line(tmp_path):
  (tmp_path / "tasks_1-20_v1-2" / "en").mkdir(parents=True)
  _random_bytes(tmp_path)
  counts = COUNTS["random bytes"]
  print(f"\nrandom bytes: {dict(counts)}")
  assert counts["cases"] >= 200 and counts["error"] > 0 and counts["parsed"] > 0


# ----------------------------------------------------------------------------- edits of real files


def _real_windows(root: str) -> list[tuple[str, list[bytes]]]:
  """Up to 100-line windows of every real file that start at a story's first line."""
  out = []
  folder = pathlib.Path(root) / "babi" / "tasks_1-20_v1-2"
  for lang in ("en", "hn", "shuffled"):
    for path in sorted((folder / lang).glob("qa*_test.txt")):
      lines = parse.split_lines(path.read_bytes())
      starts = [i for i, line in enumerate(lines) if line.startswith(b"1 ")]
      for start in starts[:: max(1, len(starts) // 3)][:3]:
        out.append((str(path), lines[start : start + 100]))
  return out


_EDITS = (
  "delete",
  "duplicate",
  "swap",
  "insert",
  "byte",
  "tabs to spaces",
  "drop a tab",
  "truncate",
  "join",
  "split",
  "renumber",
  "bom",
  "crlf",
)


@st.composite
def _edited(draw, windows):
  path, lines = draw(st.sampled_from(windows))
  lines = list(lines)
  for _ in range(draw(st.integers(1, 4))):
    edit = draw(st.sampled_from(_EDITS))
    i = draw(st.integers(0, len(lines) - 1)) if lines else 0
    if not lines:
      lines.append(draw(_line))
    elif edit == "delete":
      del lines[i]
    elif edit == "duplicate":
      lines.insert(i, lines[i])
    elif edit == "swap":
      j = draw(st.integers(0, len(lines) - 1))
      lines[i], lines[j] = lines[j], lines[i]
    elif edit == "insert":
      lines.insert(i, draw(_line))
    elif edit == "byte" and lines[i]:
      k = draw(st.integers(0, len(lines[i]) - 1))
      lines[i] = lines[i][:k] + draw(st.binary(min_size=1, max_size=2)) + lines[i][k + 1 :]
    elif edit == "tabs to spaces":
      lines[i] = lines[i].replace(b"\t", b" ")
    elif edit == "drop a tab" and b"\t" in lines[i]:
      k = draw(st.sampled_from([k for k, c in enumerate(lines[i]) if c == 9]))
      lines[i] = lines[i][:k] + draw(st.sampled_from([b"", b" "])) + lines[i][k + 1 :]
    elif edit == "truncate":
      lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    elif edit == "join" and i + 1 < len(lines):
      lines[i : i + 2] = [lines[i] + draw(st.sampled_from([b" ", b"\t", b""])) + lines[i + 1]]
    elif edit == "split" and lines[i]:
      k = draw(st.integers(0, len(lines[i])))
      lines[i : i + 1] = [lines[i][:k], lines[i][k:]]
    elif edit == "renumber" and b" " in lines[i]:
      number = str(draw(st.integers(0, 10**12))).encode()
      lines[i] = number + lines[i][lines[i].index(b" ") :]
    elif edit == "bom":
      lines[0] = b"\xef\xbb\xbf" + lines[0]
    elif edit == "crlf":
      lines[i] = lines[i] + b"\r"
  return path, lines


def test_random_edits_of_real_files_parse_or_name_path_and_line(real_root):
  windows = _real_windows(real_root)
  counts = COUNTS["edits of real files"]
  for path, lines in windows:  # unedited, every window parses
    assert _check(lines, path, collections.Counter()) is not None

  @given(case=_edited(windows))
  @SETTINGS
  def edited(case):
    counts["cases"] += 1
    path, lines = case
    raws = _check(lines, path, counts)
    if raws is not None and [raw.question for raw in raws] != [
      raw.question for raw in parse.parse_raw(lines, path, 1, LIMITS)
    ]:
      raise AssertionError("parsing is not deterministic")

  edited()
  print(f"\nedits of {len(windows)} real file windows: {dict(counts)}")
  assert counts["cases"] >= 200 and counts["error"] > 0 and counts["parsed"] > 0


# ----------------------------------------------------------------------------- round trip

_word = st.text(
  alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZéüमैरीघर0123456789-'"),
  min_size=1,
  max_size=7,
)
_words = st.lists(_word, min_size=1, max_size=6)


@st.composite
def _story_file(draw):
  """A valid file: stories of statements and questions, and the examples it must give."""
  lines, want = [], []
  for _ in range(draw(st.integers(1, 4))):
    story: list[str] = []
    ids: list[int] = []
    line_id = 0
    for _ in range(draw(st.integers(1, 8))):
      line_id += 1
      if story and draw(st.booleans()):
        question = " ".join(draw(_words)) + "?"
        items = draw(st.lists(_words, min_size=1, max_size=3))
        answer = ",".join(" ".join(item) for item in items)
        if len(items) == 1 and items[0][-1].isdigit():  # a lost tab, read so: not valid
          answer += "x"
        picked = draw(st.lists(st.integers(0, len(story) - 1), max_size=3))
        space = draw(st.sampled_from(["", " "]))
        ids_text = " ".join(str(ids[j]) for j in picked)
        lines.append(f"{line_id} {question}{space}\t{answer}\t{ids_text}")
        want.append(
          parse.RawExample(tuple(story), question, parse.normalize_answer(answer), tuple(picked), 7)
        )
      else:
        sentence = " ".join(draw(_words)) + "."
        lines.append(f"{line_id} {sentence}")
        story.append(sentence)
        ids.append(line_id)
  if not want:
    lines.append(f"{line_id + 1} Where is it?\tthere\t")
    want.append(parse.RawExample(tuple(story), "Where is it?", "there", (), 7))
  newline = draw(st.sampled_from(["\n", "\r\n"]))
  text = newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2]))
  bom = draw(st.sampled_from(["", "\ufeff"]))
  return (bom + text).encode("utf-8"), want


@given(case=_story_file())
@SETTINGS
def _round_trip(case):
  counts = COUNTS["round trip"]
  counts["cases"] += 1
  data, want = case
  path = "/data/babi/tasks_1-20_v1-2/hn/qa7_counting_train.txt"
  got = parse.parse_raw(parse.split_lines(data), path, 7)
  assert got == want
  examples = parse.parse_babi(parse.split_lines(data), path, 7)
  assert [ex.story for ex in examples] == [
    [[w.lower().strip(".?") for w in s.split()] for s in raw.story] for raw in want
  ]
  counts["examples"] += len(got)
  counts["several-word answers"] += sum(" " in raw.answer for raw in got)
  counts["list answers"] += sum("," in raw.answer for raw in got)


def test_generated_stories_round_trip():
  _round_trip()
  counts = COUNTS["round trip"]
  print(f"\nround trip: {dict(counts)}")
  assert counts["cases"] >= 200 and counts["several-word answers"] > 0
  assert counts["list answers"] > 0


@pytest.fixture(scope="module", autouse=True)
def _report():
  yield
  total = sum(c["cases"] for c in COUNTS.values())
  print(f"\nbAbI parser properties: {total} cases in all")
