"""bAbI QA text format: tokenizer, parser and the files of the v1.2 archive.

The format (one file per task and split)::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? <TAB>bathroom<TAB>1
    1 Sandra travelled to the office.      <- ids restart at 1: a new story

A question line holds ``id question<TAB>answer<TAB>supporting ids``. Some question lines
have a space before the first tab; answers of tasks 8 and 19 are comma-separated lists
(``north,west``) and stay one answer token.

What the parser accepts and what it refuses (every refusal is a ``BabiFormatError``, a
ValueError whose message starts with the file's full path and the 1-based line number,
``/data/babi/tasks_1-20_v1-2/hn/qa1_single-supporting-fact_train.txt:17: ...``):

* Answers of several words (the ``hn/`` folder: ``rasoi ghar``) are ONE answer class: the
  answer is stored lower-cased with its words joined by one space (``'rasoi ghar'``), and
  the items of a list answer joined by ``','`` without spaces (``'n, w'`` -> ``'n,w'``).
* Text is UTF-8; a byte-order mark at the start of the file is ignored; other bytes that
  are not UTF-8 are refused. Lines end with ``\n`` or ``\r\n`` (nothing else splits a line).
* A line without a tab is a statement; one that holds a ``'?'`` is refused (a question
  whose tabs were lost), as is a question with text after its ``'?'``, or a question
  without a supporting-ids field whose several-word answer ends in a number (a lost tab).
* A statement or question without any word (only ``'.'``, ``'?'``) is refused.
* A file without any question (empty, blank, or statements only) is refused.
* Sizes are capped (``ParseLimits``, all configurable): words per line (200), statements
  per story (1000) and statements summed over the stories of a file's questions
  (20,000,000, which bounds what the examples hold); the longest real bAbI line has 11
  words and the longest story 228 statements.

This module (parser, archive reader) has no TFDS dependency: ``builder`` builds the TFDS
dataset from these files, ``examples`` and ``arrays`` read it back, and
``memjax.data.babi`` re-exports the public names.

References:
  Weston, Bordes, Chopra, Rush, van Merrienboer, Joulin, Mikolov. "Towards AI-Complete
  Question Answering: A Set of Prerequisite Toy Tasks", arXiv:1502.05698 (2015).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

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

_LINE = re.compile(r"^([0-9]{1,9}) ([^\n]*)$")
_INTEGER = re.compile(r"[0-9]{1,9}")
_BOM = "\ufeff"
_TASK_IN_NAME = re.compile(r"qa(\d+)_")


class BabiDataNotFoundError(FileNotFoundError):
  """The bAbI files are neither in the data root nor downloadable."""


class BabiFormatError(ValueError):
  """A malformed bAbI file: the message starts with ``<full path>:<line>: ``.

  Attributes:
    path: the file's full path (a member of an archive: ``<archive>[<member>]``).
    line: the 1-based line number.
  """

  def __init__(self, path: str, line: int, message: str):
    self.path, self.line, self.message = path, line, message
    super().__init__(f"{path}:{line}: {message}")

  def __reduce__(self):  # the three arguments, not the formatted message
    return type(self), (self.path, self.line, self.message)


@dataclasses.dataclass(frozen=True)
class ParseLimits:
  """Caps on the sizes that drive memory and array shapes; a file over one is refused.

  Attributes:
    max_sentence_words: words (whitespace-separated) in one statement or question; this
      bounds the sentence size S of ``load_arrays``'s ``[E, M, S]`` arrays.
    max_story_sentences: statements in one story.
    max_file_story_sentences: statements summed over the stories of all questions of one
      file (each question keeps its story: this bounds what the examples hold).
  """

  max_sentence_words: int = 200
  max_story_sentences: int = 1000
  max_file_story_sentences: int = 20_000_000


DEFAULT_LIMITS = ParseLimits()


class BabiExample(NamedTuple):
  """One bAbI question with the story before it.

  Attributes:
    story: the story's statements before the question, oldest first, each a list of
      tokens (earlier questions of the story are not part of it, as in the paper).
    question: the question's tokens.
    answer: the lower-cased answer, one class: a list answer such as ``'north,west'``
      or a several-word answer such as ``'rasoi ghar'`` (words joined by one space).
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


def normalize_answer(answer: str) -> str:
  """One answer class from an answer field: lower-cased, the words of each list item
  joined by one space, the items joined by ``','`` (``' N, W '`` -> ``'n,w'``,
  ``'Rasoi  Ghar'`` -> ``'rasoi ghar'``).

  Raises:
    ValueError: the answer or one of its list items is empty.
  """
  items = [" ".join(item.split()) for item in answer.lower().split(",")]
  if not all(items):
    raise ValueError("empty answer (or an empty item in a comma-separated list answer)")
  return ",".join(items)


def _decode(line: str | bytes, path: str, number: int) -> str:
  if isinstance(line, bytes):
    try:
      text = line.decode("utf-8")
    except UnicodeDecodeError as e:
      raise BabiFormatError(
        path,
        number,
        f"not UTF-8 text: byte {line[e.start : e.start + 1]!r} at column {e.start + 1} "
        f"({e.reason}); bAbI files are UTF-8",
      ) from None
  else:
    text = str(line)
    try:
      text.encode("utf-8")
    except UnicodeEncodeError as e:
      raise BabiFormatError(
        path, number, f"text that UTF-8 cannot encode at column {e.start + 1} ({e.reason})"
      ) from None
  text = text.rstrip("\r\n")
  if number == 1:
    text = text.removeprefix(_BOM)  # A byte-order mark starts some files: not text.
  return text


def _fail(path: str, number: int, line: str, message: str) -> BabiFormatError:
  shown = line if len(line) <= 200 else line[:200] + f"... ({len(line)} characters)"
  if "max_" in message:
    message += " (ParseLimits)"
  return BabiFormatError(path, number, f"{message}; got {shown!r}")


def parse_raw(
  lines: Iterable[str | bytes],
  filename: str = "<string>",
  task: int | None = None,
  limits: ParseLimits = DEFAULT_LIMITS,
) -> list[RawExample]:
  """Parses bAbI lines into questions with their untokenized stories.

  Args:
    lines: the lines of one task file (str or UTF-8 bytes, with or without newlines; see
      ``split_lines`` for a file's bytes).
    filename: the file's path, named in error messages; the task number is read from it
      when ``task`` is None.
    task: the task number to record, or None to infer it from ``filename``.
    limits: the size caps (``ParseLimits``).

  Returns:
    One RawExample per question line, in file order.

  Raises:
    BabiFormatError: (a ValueError) a malformed line, bytes that are not UTF-8, a size
      over ``limits``, or a file without any question; the message starts with
      ``<filename>:<line>: `` (the module docstring lists what is refused).
  """
  if task is None:
    task = task_from_filename(filename)
  path = str(filename)
  examples = []
  story: list[str] = []
  line_to_index: dict[int, int] = {}
  previous_id = 0
  held = 0  # statements summed over the stories of the questions so far
  number = 0
  for number, raw_line in enumerate(lines, start=1):
    line = _decode(raw_line, path, number)
    if not line or line.isspace():
      continue
    match = _LINE.match(line.lstrip())
    if match is None:
      raise _fail(
        path,
        number,
        line,
        "expected 'id text' (a line id of at most 9 digits, one space, then text)",
      )
    line_id, text = int(match.group(1)), match.group(2)
    if line_id == 1:
      story, line_to_index = [], {}
    elif line_id != previous_id + 1:
      raise _fail(
        path,
        number,
        line,
        f"line id {line_id} does not follow {previous_id} (ids count up by one within a "
        "story and restart at 1)",
      )
    previous_id = line_id
    fields = text.split("\t")
    words = fields[0].split()
    if len(words) > limits.max_sentence_words or (
      len(fields) > 1 and len(fields[1].split()) > limits.max_sentence_words
    ):
      raise _fail(
        path, number, line, f"more than max_sentence_words={limits.max_sentence_words} words"
      )
    if not any(word.strip(".?") for word in words):  # what tokenize keeps
      what = "statement" if len(fields) == 1 else "question"
      raise _fail(path, number, line, f"a {what} without any word")
    if len(fields) == 1:
      if "?" in text:
        raise _fail(
          path,
          number,
          line,
          "a statement with a '?': a question line whose tabs were lost? (a question line is "
          "'id question<TAB>answer<TAB>supporting ids')",
        )
      if len(story) >= limits.max_story_sentences:
        raise _fail(
          path,
          number,
          line,
          f"a story of more than max_story_sentences={limits.max_story_sentences} statements",
        )
      line_to_index[line_id] = len(story)
      story.append(text.strip())
      continue
    if len(fields) != 2 and len(fields) != 3:
      raise _fail(
        path,
        number,
        line,
        f"expected 'id question<TAB>answer<TAB>supporting ids', found {len(fields)} "
        "tab-separated fields",
      )
    question = fields[0].strip()
    if "?" in question and not question.endswith("?"):
      raise _fail(
        path, number, line, "text after the question's '?': a lost tab before the answer?"
      )
    try:
      answer = normalize_answer(fields[1])
    except ValueError as e:
      raise _fail(path, number, line, str(e)) from None
    if len(fields) == 2 and " " in answer and _INTEGER.fullmatch(answer.rsplit(" ", 1)[-1]):
      raise _fail(
        path,
        number,
        line,
        "the answer ends in a number and there is no supporting-ids field: a lost tab before "
        "the supporting ids?",
      )
    supporting = []
    for token in fields[2].split() if len(fields) == 3 else ():
      if not _INTEGER.fullmatch(token):
        raise _fail(path, number, line, f"supporting fact id {token!r} is not an integer")
      if int(token) not in line_to_index:
        raise _fail(
          path, number, line, f"supporting fact id {token} is not a statement earlier in this story"
        )
      supporting.append(line_to_index[int(token)])
    held += len(story)
    if held > limits.max_file_story_sentences:
      raise _fail(
        path,
        number,
        line,
        "the stories of this file's questions hold more than max_file_story_sentences="
        f"{limits.max_file_story_sentences} statements in all",
      )
    examples.append(RawExample(tuple(story), question, answer, tuple(supporting), task))
  if not examples:
    what = "an empty file" if number == 0 else f"{number} lines"
    raise BabiFormatError(
      path,
      max(number, 1),
      f"no question line in the file ({what}); a bAbI task file holds questions "
      "('id question<TAB>answer<TAB>supporting ids')",
    )
  return examples


def split_lines(data: bytes) -> list[bytes]:
  """A file's bytes as its lines: split at ``\n`` only (``'\r'`` is dropped by the
  parser), without the empty piece after a final newline; nothing is decoded, so an
  encoding error is reported at its line by ``parse_raw``."""
  lines = data.split(b"\n")
  if lines and not lines[-1]:
    lines.pop()
  return lines


def decode_lines(data: bytes, path: str) -> list[str]:
  """A file's bytes as text lines (``split_lines``, strict UTF-8, a leading BOM dropped).

  Raises:
    BabiFormatError: bytes that are not UTF-8, naming ``path`` and the line.
  """
  return [_decode(line, path, number) for number, line in enumerate(split_lines(data), 1)]


def parse_babi(
  lines: Iterable[str | bytes],
  filename: str = "<string>",
  task: int | None = None,
  limits: ParseLimits = DEFAULT_LIMITS,
) -> list[BabiExample]:
  """Parses bAbI lines into tokenized examples, one per question.

  Args:
    lines: the lines of one task file (str or UTF-8 bytes, with or without newlines).
    filename: the name used in error messages; the task number is read from it when
      ``task`` is None (``qa3_three-supporting-facts_train.txt`` -> 3).
    task: the task number to record, or None to infer it from ``filename``.
    limits: the size caps (``ParseLimits``).

  Returns:
    One BabiExample per question line, in file order.

  Raises:
    BabiFormatError: (a ValueError) for a malformed file, e.g.
      ``/data/en/qa1_train.txt:17: expected 'id text' ...`` (see ``parse_raw``).

  Example:
    >>> parse_babi(["1 Mary went home.", "2 Where is Mary? \\thome\\t1"])[0].story
    [['mary', 'went', 'home']]
  """
  return [to_example(raw) for raw in parse_raw(lines, filename, task, limits)]


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

  Nothing is extracted to disk and nothing is deserialised but UTF-8 text: an archive's
  members are read as bytes in one streaming pass.

  Args:
    path: the ``tasks_1-20_v1-2`` folder, or the ``tasks_1-20_v1-2.tar.gz`` archive.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.path.abspath(os.fspath(path))
    self.is_archive = os.path.isfile(self.path)
    self._members: dict[str, str] = {}  # name -> the archive member it was read from

  def __repr__(self) -> str:
    return f"BabiSource({self.path!r})"

  def display_path(self, name: str) -> str:
    """The full path of a task file for messages: ``<folder>/en/qa1_..._train.txt`` or,
    in an archive, ``<archive>[tasks_1-20_v1-2/en/qa1_..._train.txt]``."""
    if not self.is_archive:
      return os.path.join(self.path, name)
    return f"{self.path}[{self._members.get(name, f'{FOLDER_NAME}/{name}')}]"

  def read_bytes(self, names: Sequence[str]) -> dict[str, bytes | None]:
    """Reads task files' bytes by their path in the folder (``en/qa1_..._train.txt``).

    Args:
      names: file paths relative to the ``tasks_1-20_v1-2`` folder.

    Returns:
      A dict from each name to its bytes, or None where the file is absent.
    """
    if not self.is_archive:
      out: dict[str, bytes | None] = {}
      for name in names:
        full = os.path.join(self.path, name)
        if os.path.isfile(full):
          with open(full, "rb") as f:
            out[name] = f.read()
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
            out[relative] = f.read()
            self._members[relative] = member.name
    return out

  def read(self, names: Sequence[str]) -> dict[str, list[str] | None]:
    """Reads task files as text lines (``decode_lines``: strict UTF-8, a leading BOM
    dropped, split at newlines only).

    Raises:
      BabiFormatError: a file that is not UTF-8, naming its full path and line.
    """
    return {
      name: None if data is None else decode_lines(data, self.display_path(name))
      for name, data in self.read_bytes(names).items()
    }


def file_digests(data: bytes) -> dict[str, str]:
  """``{'md5': ..., 'sha256': ...}`` of a file's bytes (md5 as in the archive's MD5SUMS)."""
  return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


def plan_files(
  source: BabiSource, lang: str, tasks: Sequence[int]
) -> tuple[dict[tuple[int, str], str], list[int]]:
  """The file each (task, split) of ``lang`` is read from, for a folder source.

  A ``*-10k`` training file that is absent is replaced by the 1k file of the same
  language when that exists (``en-10k/qa3`` is missing from some copies).

  Returns:
    ``({(task, split): name}, the tasks whose training file is the 1k one)``; names of
    absent files are kept (the builder names them in its error).
  """
  if source.is_archive:
    raise ValueError("plan_files reads a folder; an archive is keyed by its checksum")
  wanted = {(t, s): task_filename(lang, t, s) for t in tasks for s in SPLITS}
  fallback_lang = lang[: -len("-10k")] if lang.endswith("-10k") else None
  fallback = []
  for t in tasks:
    name = wanted[t, "train"]
    if fallback_lang and not os.path.isfile(os.path.join(source.path, name)):
      other = task_filename(fallback_lang, t, "train")
      if os.path.isfile(os.path.join(source.path, other)):
        wanted[t, "train"] = other
        fallback.append(t)
  return wanted, fallback


def fingerprint(source: BabiSource, lang: str, tasks: Sequence[int]) -> dict[str, Any]:
  """The content key of the files a (lang, tasks) dataset is built from.

  For a folder: the SHA-256 of the sorted ``name: sha256`` lines of the files read (after
  the 1k fallback of ``plan_files``; an absent file counts as absent); for an archive:
  the archive's SHA-256. Two sources with equal keys hold equal task files.

  Returns:
    ``{'fingerprint': hex, 'kind': 'folder' | 'archive', 'files': {name: digests}}``
    (``files`` empty for an archive; ``archive_sha256`` set instead).
  """
  if source.is_archive:
    digest = hashlib.sha256()
    with open(source.path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return {
      "fingerprint": digest.hexdigest(),
      "kind": "archive",
      "archive_sha256": digest.hexdigest(),
      "files": {},
    }
  names = sorted(set(plan_files(source, lang, tasks)[0].values()))
  files = {}
  for name, data in source.read_bytes(names).items():
    files[name] = file_digests(data) if data is not None else {"sha256": "absent"}
  key = "".join(f"{name}: {files[name]['sha256']}\n" for name in names)
  return {
    "fingerprint": hashlib.sha256(key.encode()).hexdigest(),
    "kind": "folder",
    "files": files,
  }


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
