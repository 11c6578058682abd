"""bAbI QA text format: tokenizer, parser and the files of the v1.2 archive.

The format (one file per task and split)::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? <TAB>bathroom<TAB>1
    1 Sandra travelled to the office.      <- ids restart at 1: a new story

A question line holds ``id question<TAB>answer<TAB>supporting ids``. Some question lines
have a space before the first tab; answers of tasks 8 and 19 are comma-separated lists
(``north,west``) and stay one answer token.

This module (parser, archive reader) has no TFDS dependency: ``builder`` builds the TFDS
dataset from these files, ``examples`` and ``arrays`` read it back, and
``memjax.data.babi`` re-exports the public names.

References:
  Weston, Bordes, Chopra, Rush, van Merrienboer, Joulin, Mikolov. "Towards AI-Complete
  Question Answering: A Set of Prerequisite Toy Tasks", arXiv:1502.05698 (2015).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from typing import NamedTuple

ARCHIVE_NAME = "tasks_1-20_v1-2.tar.gz"
FOLDER_NAME = "tasks_1-20_v1-2"
URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
ENV_VAR = "MEMJAX_DATA_DIR"
LANGUAGES = ("en", "en-10k", "hn", "hn-10k", "shuffled", "shuffled-10k")
SPLITS = ("train", "test")
TASK_NAMES = {
  1: "single-supporting-fact",
  2: "two-supporting-facts",
  3: "three-supporting-facts",
  4: "two-arg-relations",
  5: "three-arg-relations",
  6: "yes-no-questions",
  7: "counting",
  8: "lists-sets",
  9: "simple-negation",
  10: "indefinite-knowledge",
  11: "basic-coreference",
  12: "conjunction",
  13: "compound-coreference",
  14: "time-reasoning",
  15: "basic-deduction",
  16: "basic-induction",
  17: "positional-reasoning",
  18: "size-reasoning",
  19: "path-finding",
  20: "agents-motivations",
}

_LINE = re.compile(r"^(\d+) (.*)$")
_TASK_IN_NAME = re.compile(r"qa(\d+)_")


class BabiDataNotFoundError(FileNotFoundError):
  """The bAbI files are neither in the data root nor downloadable."""


class BabiExample(NamedTuple):
  """One bAbI question with the story before it.

  Attributes:
    story: the story's statements before the question, oldest first, each a list of
      tokens (earlier questions of the story are not part of it, as in the paper).
    question: the question's tokens.
    answer: the lower-cased answer; a list answer such as ``'north,west'`` is one token.
    supporting: 0-based indices into ``story`` of the supporting facts, in file order.
    task: the bAbI task number 1..20, or None when unknown.
  """

  story: list[list[str]]
  question: list[str]
  answer: str
  supporting: list[int]
  task: int | None = None


@dataclasses.dataclass(frozen=True)
class RawExample:
  """A parsed question before tokenization (sentences as written in the file)."""

  story: tuple[str, ...]
  question: str
  answer: str
  supporting: tuple[int, ...]
  task: int | None


def tokenize(sentence: str) -> list[str]:
  """Splits a bAbI sentence into lower-case words without '.' and '?'.

  Args:
    sentence: e.g. ``'Where is Mary? '``.

  Returns:
    The words, e.g. ``['where', 'is', 'mary']``.
  """
  words = (word.strip(".?") for word in sentence.lower().split())
  return [word for word in words if word]


def task_from_filename(filename: str) -> int | None:
  """The task number in a name like ``qa8_lists-sets_train.txt``, else None."""
  match = _TASK_IN_NAME.search(os.path.basename(str(filename)))
  return int(match.group(1)) if match else None


def parse_raw(
  lines: Iterable[str | bytes], filename: str = "<string>", task: int | None = None
) -> list[RawExample]:
  """Parses bAbI lines into questions with their untokenized stories.

  Args:
    lines: the lines of one task file (str or UTF-8 bytes, with or without newlines).
    filename: the name used in error messages; the task number is read from it when
      ``task`` is None.
    task: the task number to record, or None to infer it from ``filename``.

  Returns:
    One RawExample per question line, in file order.

  Raises:
    ValueError: for a malformed line, naming the file and the 1-based line number.
  """
  if task is None:
    task = task_from_filename(filename)
  name = os.path.basename(str(filename)) or str(filename)
  examples = []
  story: list[str] = []
  line_to_index: dict[int, int] = {}
  previous_id = 0
  for number, line in enumerate(lines, start=1):
    if isinstance(line, bytes):
      line = line.decode("utf-8")
    line = line.rstrip("\r\n")
    if not line.strip():
      continue

    def fail(message: str, number: int = number, line: str = line) -> ValueError:
      return ValueError(f"{name}:{number}: {message}; got {line!r}")

    match = _LINE.match(line.lstrip())
    if match is None:
      raise fail("expected 'id text' (a line id, one space, then text)")
    line_id, text = int(match.group(1)), match.group(2)
    if line_id == 1:
      story, line_to_index = [], {}
    elif line_id != previous_id + 1:
      raise fail(
        f"line id {line_id} does not follow {previous_id} (ids count up by one "
        "within a story and restart at 1)"
      )
    previous_id = line_id
    if "\t" not in text:
      if not text.strip():
        raise fail("empty statement")
      line_to_index[line_id] = len(story)
      story.append(text.strip())
      continue
    fields = text.split("\t")
    if len(fields) not in (2, 3):
      raise fail(
        f"expected 'id question<TAB>answer<TAB>supporting ids', found {len(fields)} "
        "tab-separated fields"
      )
    question, answer = fields[0].strip(), fields[1].strip()
    if not question:
      raise fail("empty question")
    if not answer or any(c.isspace() for c in answer):
      raise fail("the answer must be one non-empty word or comma-separated list")
    supporting = []
    for token in fields[2].split() if len(fields) == 3 else []:
      if not token.isdigit():
        raise fail(f"supporting fact id {token!r} is not an integer")
      if int(token) not in line_to_index:
        raise fail(f"supporting fact id {token} is not a statement earlier in this story")
      supporting.append(line_to_index[int(token)])
    examples.append(RawExample(tuple(story), question, answer.lower(), tuple(supporting), task))
  return examples


def parse_babi(
  lines: Iterable[str | bytes], filename: str = "<string>", task: int | None = None
) -> list[BabiExample]:
  """Parses bAbI lines into tokenized examples, one per question.

  Args:
    lines: the lines of one task file (str or UTF-8 bytes, with or without newlines).
    filename: the name used in error messages; the task number is read from it when
      ``task`` is None (``qa3_three-supporting-facts_train.txt`` -> 3).
    task: the task number to record, or None to infer it from ``filename``.

  Returns:
    One BabiExample per question line, in file order.

  Raises:
    ValueError: for a malformed line, e.g. ``qa1_train.txt:17: expected 'id text' ...``.

  Example:
    >>> parse_babi(["1 Mary went home.", "2 Where is Mary? \\thome\\t1"])[0].story
    [['mary', 'went', 'home']]
  """
  return [to_example(raw) for raw in parse_raw(lines, filename, task)]


def to_example(raw: RawExample, cache: dict[str, list[str]] | None = None) -> BabiExample:
  """Tokenizes a RawExample (``cache`` memoizes sentence tokens across calls)."""
  if cache is None:
    cache = {}

  def words(sentence: str) -> list[str]:
    if sentence not in cache:
      cache[sentence] = tokenize(sentence)
    return list(cache[sentence])

  return BabiExample(
    story=[words(s) for s in raw.story],
    question=words(raw.question),
    answer=raw.answer,
    supporting=list(raw.supporting),
    task=raw.task,
  )


def task_filename(lang: str, task: int, split: str) -> str:
  """The path of a task file inside the archive folder, e.g. ``en/qa1_..._train.txt``."""
  return f"{lang}/qa{task}_{TASK_NAMES[task]}_{split}.txt"


def missing_data_message(root: str | None, looked_in: Sequence[str], detail: str = "") -> str:
  """Says which file to put where and which environment variable to set."""
  where = root if root else f"${ENV_VAR}"
  lines = [
    "The bAbI QA v1.2 data was not found.",
    f"Put the official archive {ARCHIVE_NAME} (from {URL}) at "
    f"{os.path.join(where, 'babi', ARCHIVE_NAME)}, or extract it so that "
    f"{os.path.join(where, 'babi', FOLDER_NAME, task_filename('en', 1, 'train'))} exists,",
    f"then set the environment variable {ENV_VAR}={where if root else '<that root>'} "
    "or pass data_dir=<that root>.",
  ]
  if looked_in:
    lines.append("Looked in: " + ", ".join(looked_in))
  if detail:
    lines.append(detail)
  return "\n".join(lines)


class BabiSource:
  """Reads task files from an extracted ``tasks_1-20_v1-2`` folder or the official tar.gz.

  Args:
    path: the ``tasks_1-20_v1-2`` folder, or the ``tasks_1-20_v1-2.tar.gz`` archive.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    self.is_archive = os.path.isfile(self.path)

  def __repr__(self) -> str:
    return f"BabiSource({self.path!r})"

  def read(self, names: Sequence[str]) -> dict[str, list[str] | None]:
    """Reads task files by their path in the folder (``en/qa1_..._train.txt``).

    Args:
      names: file paths relative to the ``tasks_1-20_v1-2`` folder.

    Returns:
      A dict from each name to its lines, or None where the file is absent.
    """
    if not self.is_archive:
      out: dict[str, list[str] | None] = {}
      for name in names:
        full = os.path.join(self.path, name)
        if os.path.isfile(full):
          with open(full, encoding="utf-8") as f:
            out[name] = f.read().splitlines()
        else:
          out[name] = None
      return out
    wanted = set(names)
    out = dict.fromkeys(names)
    # One streaming pass over the archive; members are matched on their path below the
    # archive's top folder.
    with tarfile.open(self.path, mode="r|*") as tar:
      for member in tar:
        if not member.isfile():
          continue
        name = member.name.removeprefix("./")
        relative = name.split("/", 1)[-1]
        if relative in wanted:
          f = tar.extractfile(member)
          if f is not None:
            out[relative] = f.read().decode("utf-8").splitlines()
    return out


def find_source(root: str | os.PathLike | None) -> tuple[BabiSource | None, list[str]]:
  """Finds the bAbI folder or archive under a data root.

  Tried in order: ``<root>/babi/tasks_1-20_v1-2/``, ``<root>/tasks_1-20_v1-2/``, ``<root>``
  itself when it is that folder, ``<root>/babi/tasks_1-20_v1-2.tar.gz``,
  ``<root>/tasks_1-20_v1-2.tar.gz``, and ``<root>`` itself when it is a tar.gz file.

  Args:
    root: the data root (e.g. ``$MEMJAX_DATA_DIR``), or None.

  Returns:
    ``(source or None, the paths looked at)``.
  """
  if root is None:
    return None, []
  root = os.fspath(root)
  folders = [os.path.join(root, "babi", FOLDER_NAME), os.path.join(root, FOLDER_NAME), root]
  archives = [os.path.join(root, "babi", ARCHIVE_NAME), os.path.join(root, ARCHIVE_NAME)]
  for folder in folders:
    if any(os.path.isdir(os.path.join(folder, lang)) for lang in LANGUAGES):
      return BabiSource(folder), []
  for archive in archives:
    if os.path.isfile(archive):
      return BabiSource(archive), []
  if os.path.isfile(root) and root.endswith((".tar.gz", ".tgz", ".tar")):
    return BabiSource(root), []
  return None, folders[:2] + archives
