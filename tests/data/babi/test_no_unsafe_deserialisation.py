"""The bAbI data path deserialises nothing but UTF-8 text: a crafted data file cannot run code.

The loaders read task files as bytes, decode them as UTF-8 and parse them as text; the
prepared data is ArrayRecord files of protobufs and JSON metadata (TFDS). No pickle, no
``np.load(allow_pickle=True)``, no eval/exec, no YAML, no archive extraction to disk.
"""

from __future__ import annotations

import ast
import os
import pathlib
import pickle
import tarfile

import pytest

from memjax.data import babi
from memjax.data.babi import parse

_REPO = pathlib.Path(__file__).resolve().parents[3]
_DATA_CODE = sorted((_REPO / "memjax" / "data").rglob("*.py"))
_UNSAFE_MODULES = {
  "pickle",
  "cPickle",
  "dill",
  "cloudpickle",
  "marshal",
  "shelve",
  "joblib",
  "yaml",
}
_UNSAFE_CALLS = {"eval", "exec", "__import__", "extractall", "extract"}


class _Payload:
  """Unpickling this calls os.system (it must never happen)."""

  def __init__(self, marker: pathlib.Path):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def _unsafe_uses(path: pathlib.Path) -> list[str]:
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import | ast.ImportFrom):
      names = [a.name for a in node.names] + (
        [node.module] if isinstance(node, ast.ImportFrom) else []
      )
      found += [f"import {n}" for n in names if n and n.split(".")[0] in _UNSAFE_MODULES]
    elif isinstance(node, ast.Call):
      func = node.func
      name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
      if name in _UNSAFE_CALLS:
        found.append(f"{name}() at line {node.lineno}")
      for kw in node.keywords:
        if kw.arg == "allow_pickle" and not (
          isinstance(kw.value, ast.Constant) and kw.value.value is False
        ):
          found.append(f"allow_pickle at line {node.lineno}")
  return found


def test_the_data_code_uses_no_unsafe_deserialisation():
  assert len(_DATA_CODE) >= 8  # the package was found
  uses = {str(p.relative_to(_REPO)): _unsafe_uses(p) for p in _DATA_CODE}
  assert {p: u for p, u in uses.items() if u} == {}


def test_the_scan_finds_what_it_looks_for(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text(
    "import pickle\nimport numpy as np\nnp.load('x', allow_pickle=True)\neval('1')\n"
    "t.extractall('.')\n"
  )
  assert _unsafe_uses(bad) == [
    "import pickle",
    "allow_pickle at line 3",
    "eval() at line 4",
    "extractall() at line 5",
  ]


@pytest.mark.parametrize("kind", ["pickle", "python", "pickle in archive"])
def test_a_crafted_data_file_cannot_run_code(kind, tmp_path):
  """A task file holding a pickle payload or Python code is refused or read as text;
  nothing runs (the payload would create ``marker``)."""
  marker = tmp_path / "pwned"
  folder = tmp_path / "root" / "babi" / "tasks_1-20_v1-2"
  name = parse.task_filename("en", 1, "train")
  code = f"__import__('os').system('touch {marker}')"
  if kind == "python":
    payload = f"1 {code}\n2 Where is {code}?\t{code}\t1\n".encode()
  else:
    payload = pickle.dumps(_Payload(marker), protocol=0)
  for split in ("train", "test"):
    path = folder / parse.task_filename("en", 1, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
  root = tmp_path / "root"
  if kind == "pickle in archive":
    archive = tmp_path / "archive" / parse.ARCHIVE_NAME
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
      tar.add(folder, arcname="tasks_1-20_v1-2")
    root = archive.parent
  kwargs = dict(data_dir=str(root), tfds_dir=str(tmp_path / "tfds"))
  if kind == "python":
    (example,) = babi.load_examples(1, "train", **kwargs)
    assert example.answer == code.lower()  # text, as written (lower-cased)
    arrays = babi.load_arrays([1], **kwargs, validation_fraction=0)
    assert arrays.vocab.decode(arrays.test["answer"]) == [code.lower()]
  else:
    with pytest.raises(parse.BabiFormatError) as e:
      babi.load_examples(1, "train", **kwargs)
    assert name in e.value.path and e.value.line >= 1
  assert not marker.exists()
