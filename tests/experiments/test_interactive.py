"""The interactive bAbI question answering: the story is kept across questions, `:new`
starts over, a question without a story is refused, one heat map per question."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.babi import interactive, train
from tests.experiments import _babi_workdir as _workdir

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def predictor():
  """An untrained model over the synthetic vocabulary (the loop does not need a good one)."""
  config = _workdir.config()
  model = train.make_model(config, len(_workdir.words()), _workdir.SENTENCE_SIZE)
  state = train.init_state(config, model, _workdir.SENTENCE_SIZE, 0)
  return interactive.Predictor(config, state.params, _workdir.words(), _workdir.SENTENCE_SIZE)


def _run(predictor, lines, tmp_path):
  out = []

  class _Out:
    def write(self, text):
      out.append(text)

    def flush(self):
      pass

  next_png = interactive.numbered_path(str(tmp_path / "attention"))
  results = interactive.interact(predictor, lines, next_png, out=_Out())
  return results, "".join(out)


def test_story_is_kept_across_questions_and_new_starts_over(predictor, tmp_path):
  lines = [
    "Mary moved to the bathroom.\n",
    "Where is Mary?\n",
    "John went to the hallway. Where is John?\n",  # sentence and question on one line
    ":story\n",
    ":new\n",
    "Where is Mary?\n",  # no story: refused, nothing plotted
    "Mary went to the office.\n",
    "Where is Mary?\n",
  ]
  results, out = _run(predictor, lines, tmp_path)
  assert "KEPT across questions" in out and ":new" in out
  assert [r.sentences for r in results] == [
    ["Mary moved to the bathroom."],
    ["Mary moved to the bathroom.", "John went to the hallway."],
    ["Mary went to the office."],
  ]
  assert [r.question for r in results] == ["Where is Mary?", "Where is John?", "Where is Mary?"]
  assert "  1 Mary moved to the bathroom.\n  2 John went to the hallway." in out
  assert "error: no story yet" in out and "Traceback" not in out
  assert "(story kept: 2 sentence(s)" in out
  # one picture per answered question, numbered, none overwritten
  pngs = sorted(p for p in os.listdir(tmp_path) if p.endswith(".png"))
  assert pngs == ["attention_001.png", "attention_002.png", "attention_003.png"]
  assert all(os.path.getsize(tmp_path / p) > 1000 for p in pngs)
  # the attention of each answer covers exactly its story
  assert [r.attention.shape[1] for r in results] == [1, 2, 1]
  assert all(np.all(r.attention >= 0) for r in results)


def test_unreadable_sentence_is_refused_and_not_added(predictor, tmp_path):
  lines = [
    "Mary fed the zebra.\n",
    "Where is Mary?\n",
    "Mary went to the garden.\n",
    "Where is Mary?\n",
  ]
  results, out = _run(predictor, lines, tmp_path)
  assert "error: sentence not added: words the model never saw: ['fed', 'zebra']" in out
  assert "error: no story yet" in out
  assert [r.sentences for r in results] == [["Mary went to the garden."]]


def test_babi_numbered_lines_start_a_new_story_at_line_1(predictor, tmp_path):
  lines = [
    "1 Mary moved to the bathroom.\n",
    "2 Where is Mary?\tbathroom\t1\n",
    "1 John went to the hallway.\n",
    "2 Where is John?\thallway\t1\n",
  ]
  results, out = _run(predictor, lines, tmp_path)
  assert [r.sentences for r in results] == [
    ["Mary moved to the bathroom."],
    ["John went to the hallway."],
  ]
  assert "(line 1: a new story)" in out


def test_numbered_paths_skip_existing_files(tmp_path):
  (tmp_path / "att_001.png").write_bytes(b"x")
  next_png = interactive.numbered_path(str(tmp_path / "att.png"))
  assert [os.path.basename(next_png()) for _ in range(2)] == ["att_002.png", "att_003.png"]


def test_answer_and_plot_refuse_an_empty_story(predictor):
  with pytest.raises(ValueError, match="no story"):
    predictor.answer([], "Where is Mary?")
  empty = interactive.Result("x", 1.0, [], "Where is Mary?", np.zeros((2, 0)))
  with pytest.raises(ValueError, match="no sentences"):
    interactive.plot_attention(empty)


def test_the_binary_keeps_the_story_and_numbers_its_pictures(tmp_path, clean_env):
  workdir = _workdir.write_workdir(str(tmp_path / "run"))
  script = (
    "Mary moved to the bathroom.\nWhere is Mary?\nJohn went to the hallway.\nWhere is John?\n"
  )
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.babi.interactive", f"--workdir={workdir}"],
    input=script,
    capture_output=True,
    text=True,
    cwd=_ROOT,
    env=clean_env(JAX_PLATFORMS="cpu"),
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  out = proc.stdout
  assert out.count("Q: Where is") == 2
  # the second answer's table still lists the first sentence: the story was kept
  second = out[out.index("Q: Where is Mary?") :]
  assert "Mary moved to the bathroom." in second and "John went to the hallway." in second
  pngs = sorted(p for p in os.listdir(workdir) if p.startswith("attention"))
  assert pngs == ["attention_001.png", "attention_002.png"]
