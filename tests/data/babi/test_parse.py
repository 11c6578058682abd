"""Tests for memjax.data.babi.parse: tokenizer, parser, archive reader."""

from __future__ import annotations

import re
import tarfile

import pytest

from memjax.data import babi
from memjax.data.babi import parse


def _lines(testdata, name: str) -> list[str]:
  return (testdata / name).read_text().splitlines()


def test_tokenize():
  assert babi.tokenize("Where is Mary? ") == ["where", "is", "mary"]
  assert babi.tokenize("John went to the hallway.") == ["john", "went", "to", "the", "hallway"]
  assert babi.tokenize("  ") == []


def test_parse_story_restarts_and_supporting_ids(testdata):
  name = "qa1_single-supporting-fact_train.txt"
  examples = babi.parse_babi(_lines(testdata, name), filename=name)
  assert len(examples) == 4
  first, second, third, fourth = examples
  assert first.story == [
    ["mary", "moved", "to", "the", "bathroom"],
    ["john", "went", "to", "the", "hallway"],
  ]
  # The stray space before the tab is gone and the task comes from the file name.
  assert first.question == ["where", "is", "mary"]
  assert (first.answer, first.supporting, first.task) == ("bathroom", [0], 1)
  # Earlier questions are not in the story: line 4 is story row 2.
  assert len(second.story) == 4 and second.story[2][0] == "daniel"
  assert second.supporting == [2] and second.answer == "hallway"
  assert len(third.story) == 5 and third.story[third.supporting[0]][0] == "sandra"
  # Ids restart at 1: a new story with only its own statement.
  assert fourth.story == [["sandra", "travelled", "to", "the", "office"]]
  assert fourth.supporting == [0]


def test_parse_list_answers_and_several_supporting_facts(testdata):
  lines = _lines(testdata, "qa8_lists-sets_test.txt")
  examples = babi.parse_babi(lines, "qa8_lists-sets_test.txt")
  assert [ex.answer for ex in examples] == ["milk,football", "football", "s,e"]
  assert examples[0].supporting == [0, 2]
  assert examples[1].supporting == [0, 2, 3]  # Line 5 is story row 3 (line 4 was a question).
  assert examples[2].supporting == [] and examples[2].story == []
  assert {ex.task for ex in examples} == {8}
  # Bytes lines (as read from an archive) and an explicit task number.
  from_bytes = babi.parse_babi([ln.encode() + b"\n" for ln in lines], task=19)
  assert [ex[:4] for ex in from_bytes] == [ex[:4] for ex in examples]
  assert {ex.task for ex in from_bytes} == {19}
  assert babi.parse_babi(lines)[0].task is None


@pytest.mark.parametrize(
  "name, line, message",
  [
    ("bad_no_id.txt", 3, "expected 'id text'"),
    ("bad_supporting.txt", 3, "supporting fact id 2 is not a statement"),
    ("bad_fields.txt", 2, "expected .id question<TAB>answer<TAB>supporting ids., found 4"),
    ("bad_ids.txt", 3, "line id 4 does not follow 2"),
  ],
)
def test_parse_malformed_names_file_and_line(testdata, name, line, message):
  """The error starts with the file's FULL path (en/ and hn/ files share basenames)."""
  path = str(testdata / name)
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(path)}:{line}: {message}") as e:
    babi.parse_babi(_lines(testdata, name), filename=path)
  assert (e.value.path, e.value.line) == (path, line)


def test_find_source_reads_folder_and_archive_alike(make_fake_root, tmp_path):
  root = make_fake_root(tmp_path / "src", tasks=(1,))
  folder = root / "babi" / "tasks_1-20_v1-2"
  archive = tmp_path / "archive" / "tasks_1-20_v1-2.tar.gz"
  archive.parent.mkdir()
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname="tasks_1-20_v1-2")
  from_folder, _ = parse.find_source(root)
  from_archive, _ = parse.find_source(archive.parent)
  assert not from_folder.is_archive and from_archive.is_archive
  names = [parse.task_filename("en", 1, "train"), parse.task_filename("en", 2, "train")]
  got = from_folder.read(names)
  assert got == from_archive.read(names)
  assert got[names[0]] == (folder / names[0]).read_text().splitlines() and got[names[1]] is None
  source, looked_in = parse.find_source(tmp_path / "nothing")
  assert source is None and str(tmp_path / "nothing" / "babi" / parse.ARCHIVE_NAME) in looked_in


# ----------------------------------------------------------------------------- issue 12


def test_several_word_answers_are_one_class():
  """hn/ answers such as 'rasoi ghar' (kitchen) are one answer, words joined by a space;
  whitespace inside an answer or a list answer is normalized, case folded."""
  lines = [
    "1 Mary rasoi ghar mein gayi.",
    "2 Mary kahan hai? \tRasoi   Ghar\t1",
    "3 Sandra thaki hui hai.",
    "4 Sandra kaisi hai?\tthaka hua \t3",
    "5 Kya chahiye?\t N , w \t1 3",
  ]
  examples = babi.parse_babi(lines, "/data/babi/tasks_1-20_v1-2/hn/qa20_x_train.txt")
  assert [ex.answer for ex in examples] == ["rasoi ghar", "thaka hua", "n,w"]
  assert [ex.supporting for ex in examples] == [[0], [1], [0, 1]]
  assert examples[0].story == [["mary", "rasoi", "ghar", "mein", "gayi"]]
  assert parse.normalize_answer("  Chalchitra \t Ghar ") == "chalchitra ghar"
  for bad in ("", " ", "n,", ",w", "n,,w"):
    with pytest.raises(ValueError, match="empty"):
      parse.normalize_answer(bad)


def test_byte_order_mark_is_ignored_at_the_start_only():
  good = [b"\xef\xbb\xbf1 Mary went home.\r", b"2 Where is Mary?\thome\t1\r"]
  want = babi.parse_babi([b"1 Mary went home.", b"2 Where is Mary?\thome\t1"])
  assert babi.parse_babi(good) == want
  assert babi.parse_babi([line.decode() for line in good]) == want
  path = "/data/en/qa1_x_train.txt"
  with pytest.raises(parse.BabiFormatError, match=f"^{path}:2: expected 'id text'"):
    babi.parse_babi([b"1 Mary went home.", b"\xef\xbb\xbf2 Where is Mary?\thome\t1"], path)


def test_bytes_that_are_not_utf8_name_the_full_path_and_line(make_fake_root, tmp_path):
  root = make_fake_root(tmp_path / "src", tasks=(1,), langs=("hn",))
  folder = root / "babi" / "tasks_1-20_v1-2"
  name = parse.task_filename("hn", 1, "train")
  data = (folder / name).read_bytes().split(b"\n")
  data[2] = data[2][:4] + b"\xe9" + data[2][4:]  # Latin-1, not UTF-8
  (folder / name).write_bytes(b"\n".join(data))
  path = str(folder / name)
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(path)}:3: not UTF-8 .* column 5"):
    parse.BabiSource(folder).read([name])
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(path)}:3: not UTF-8"):
    parse.parse_raw(parse.split_lines((folder / name).read_bytes()), path)
  archive = tmp_path / "a" / parse.ARCHIVE_NAME  # inside an archive: <archive>[<member>]
  archive.parent.mkdir()
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname="tasks_1-20_v1-2")
  member = re.escape(f"{archive}[tasks_1-20_v1-2/{name}]")
  with pytest.raises(parse.BabiFormatError, match=f"^{member}:3: not UTF-8"):
    parse.BabiSource(archive).read([name])


@pytest.mark.parametrize(
  "line, message",
  [
    ("3 Where is Mary? bathroom 1", "a statement with a '.'"),  # both tabs lost
    ("3 Where is Mary?", "a statement with a '.'"),  # answer and ids cut off
    ("3 Where is Mary? bathroom\t1", "text after the question's '.'"),  # first tab lost
    ("3 Where is Mary?\tbathroom 1", "the answer ends in a number"),  # second tab lost
    ("3 Where is Mary?\tbathroom 1 2", "the answer ends in a number"),
    ("3 .", "a statement without any word"),
    ("3 ?\tbathroom\t1", "a question without any word"),
    ("3 Where is Mary?\t\t1", "empty answer"),
  ],
)
def test_question_lines_that_lost_their_tabs_are_refused(line, message):
  """Never taken as a statement (the question would vanish and the story change)."""
  lines = ["1 Mary moved to the bathroom.", "2 John went to the hallway.", line, "4 Where?\tx\t1"]
  path = "/data/babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt"
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(path)}:3: {message}"):
    babi.parse_babi(lines, path)


@pytest.mark.parametrize(
  "lines, line",
  [([], 1), ([""], 1), (["", "  ", "\r"], 3), (["1 Mary went home.", "2 John left."], 2)],
)
def test_files_without_questions_are_refused(lines, line):
  path = "/data/en/qa1_single-supporting-fact_test.txt"
  with pytest.raises(parse.BabiFormatError, match=f"^{re.escape(path)}:{line}: no question"):
    babi.parse_babi(lines, path)


def test_only_newlines_split_lines(tmp_path):
  """Form feeds, NEL, U+2028 are text (str.splitlines would split there and shift every
  later line number in the errors)."""
  data = "1 Mary\x0cwent\x85home\u2028now.\n2 Where is Mary?\thome\t1\n".encode()
  assert len(parse.split_lines(data)) == 2
  (tmp_path / "en").mkdir()
  (tmp_path / "en" / "qa1.txt").write_bytes(data)
  assert parse.BabiSource(tmp_path).read(["en/qa1.txt"])["en/qa1.txt"] == [
    "1 Mary\x0cwent\x85home\u2028now.",
    "2 Where is Mary?\thome\t1",
  ]
  with pytest.raises(parse.BabiFormatError, match="^f.txt:3: expected 'id text'"):
    parse.parse_raw(parse.split_lines(data + b"oops\n"), "f.txt")
  (example,) = parse.parse_raw(parse.split_lines(data), "f.txt")
  assert babi.tokenize(example.story[0]) == ["mary", "went", "home", "now"]


def test_sizes_over_the_limits_are_refused_and_the_limits_configurable():
  path = "/data/en/qa1_x_train.txt"
  long_line = ["1 Mary went " + "very " * 300 + "far.", "2 Where is Mary?\tfar\t1"]
  with pytest.raises(parse.BabiFormatError, match=f"^{path}:1: more than max_sentence_words=200"):
    babi.parse_babi(long_line, path)
  limits = parse.ParseLimits(max_sentence_words=400)
  assert len(babi.parse_babi(long_line, path, limits=limits)[0].story[0]) == 303
  long_answer = ["1 Mary went home.", "2 Where is Mary?\t" + "x " * 201 + "\t1"]
  with pytest.raises(parse.BabiFormatError, match=":2: more than max_sentence_words"):
    babi.parse_babi(long_answer, path)
  story = [f"{i} Mary went home." for i in range(1, 6)] + ["6 Where is Mary?\thome\t5"]
  small = parse.ParseLimits(max_story_sentences=4)
  with pytest.raises(parse.BabiFormatError, match=":5: a story of more than max_story_sentences=4"):
    babi.parse_babi(story, path, limits=small)
  assert len(babi.parse_babi(story, path, limits=parse.ParseLimits(max_story_sentences=5))) == 1
  many = story + ["7 Where is Mary?\thome\t5", "8 Where is Mary?\thome\t5"]
  total = parse.ParseLimits(max_file_story_sentences=10)
  with pytest.raises(parse.BabiFormatError, match=":8: the stories .* max_file_story_sentences=10"):
    babi.parse_babi(many, path, limits=total)
  for bad in ("99999999999 Mary went home.", "1\tMary went home."):
    with pytest.raises(parse.BabiFormatError, match=":1: expected 'id text'"):
      babi.parse_babi([bad], path)
  with pytest.raises(parse.BabiFormatError, match=":2: supporting fact id '\u00b2'"):
    babi.parse_babi(["1 Mary went home.", "2 Where is Mary?\thome\t\u00b2"], path)
