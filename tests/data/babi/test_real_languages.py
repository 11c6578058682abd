"""Every language folder of the real bAbI v1.2 archive found in $MEMJAX_DATA_DIR parses.

The archive has en/, hn/ (romanized Hindi: answers of several words such as 'rasoi ghar')
and shuffled/ (letters permuted), each with a -10k variant. A folder that is absent from
the data root is skipped with that reason; the hn/-like stand-in below (en/ files with
some words turned into several-word Hindi phrases) runs wherever en/ is.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from memjax.data.babi import parse

# Romanized Hindi phrases of the hn/ folder (several words: one answer class each).
_HN = {"kitchen": "rasoi ghar", "bedroom": "sone ka kamra", "cinema": "chalchitra ghar"}
_HN |= {"tired": "thaka hua", "bathroom": "snan ghar", "bored": "ub gaya"}
_PREFIX_LINES = 2000  # of a -10k training file: a story-aligned prefix (the whole is slow)


def _folder(root: str, lang: str) -> pathlib.Path:
  folder = pathlib.Path(root) / "babi" / "tasks_1-20_v1-2" / lang
  if not folder.is_dir():
    pytest.skip(f"{lang}/ is not in the bAbI data at {folder.parent}")
  return folder


def _prefix(lines: list[bytes], n: int) -> list[bytes]:
  """The first lines up to the first story start at or after line n."""
  for i in range(n, len(lines)):
    if lines[i].startswith(b"1 "):
      return lines[:i]
  return lines


@pytest.mark.parametrize("lang", parse.LANGUAGES)
def test_every_task_file_of_a_language_folder_parses(real_root, lang):
  folder = _folder(real_root, lang)
  answers: set[str] = set()
  for task in parse.TASK_NAMES:
    for split in parse.SPLITS:
      name = parse.task_filename(lang, task, split)
      path = folder.parent / name
      if not path.exists():
        assert (lang, task, split) == ("en-10k", 3, "train"), f"{path} is missing"
        continue  # the one file the README says is missing (the 1k file is used)
      lines = parse.split_lines(path.read_bytes())
      whole = not (lang.endswith("-10k") and split == "train")
      raws = parse.parse_raw(lines if whole else _prefix(lines, _PREFIX_LINES), str(path))
      assert {raw.task for raw in raws} == {task}
      if whole:
        assert len(raws) == (10_000 if lang.endswith("-10k") and split == "train" else 1000)
      answers |= {raw.answer for raw in raws}
  assert all(answer == parse.normalize_answer(answer) for answer in answers)
  if lang.startswith("hn"):
    assert any(" " in answer for answer in answers)  # several-word answers, one class each


def test_hn_like_several_word_answers_parse_in_all_20_tasks(real_root):
  """en/ test files with some words replaced by several-word Hindi phrases (as in hn/)."""
  folder = _folder(real_root, "en")
  pattern = re.compile(r"\b(" + "|".join(_HN) + r")\b")
  several = set()
  for task in parse.TASK_NAMES:
    name = parse.task_filename("en", task, "test")
    text = pattern.sub(lambda m: _HN[m.group(1)], (folder.parent / name).read_text())
    original = parse.parse_raw(parse.split_lines((folder.parent / name).read_bytes()), name)
    raws = parse.parse_raw(parse.split_lines(text.encode()), name.replace("en/", "hn/"))
    assert len(raws) == len(original) == 1000
    for raw, want in zip(raws, original, strict=True):
      assert raw.answer == _HN.get(want.answer, want.answer)
      assert raw.supporting == want.supporting and len(raw.story) == len(want.story)
    if any(" " in raw.answer for raw in raws):
      several.add(task)
  assert len(several) >= 5, several  # the old parser refused every one of these tasks
