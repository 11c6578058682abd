"""Tests for memjax.data.babi.parse: tokenizer, parser, archive reader."""

from __future__ import annotations

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
  with pytest.raises(ValueError, match=f"^{name}:{line}: {message}"):
    babi.parse_babi(_lines(testdata, name), filename=str(testdata / name))


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
