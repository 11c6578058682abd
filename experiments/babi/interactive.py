"""Ask a trained MemN2N questions about your own story; see each hop's attention.

    python -m experiments.babi.interactive --workdir=runs/demo [--task=1]

(``make demo`` trains into ``runs/demo``; any finished run's or ``combine``'s workdir works.)
Type or paste a story (one sentence per line, or several per line ending in '.'; bAbI's
numbered lines work too, a line numbered 1 starting a new story), then a question (ending
in '?'). It prints the answer and the attention over the story's sentences for every hop,
and writes the same as a PNG heat map, one file per question
(``<workdir>/attention_001.png``, ``_002``, ...; ``--png=PREFIX`` for another place; an
existing file is never overwritten). The story is kept across questions: add sentences and
ask again. ``:new`` starts a new story, ``:story`` shows it, ``:quit`` (or Ctrl-D) quits. A
question before any sentence is refused. From Python (the notebook):

    predictor = load_predictor(workdir)
    result = predictor.answer(["Mary moved to the bathroom.", "John went to the hallway."],
                              "Where is Mary?")
    plot_attention(result, "attention.png")

Errors the user can fix (no such workdir, an unfinished run) print one message and exit
with status 2 (``MEMJAX_DEBUG=1`` shows the traceback; see ``memjax.train.cli``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Iterable

import jax
import ml_collections
import numpy as np

from experiments.babi import train
from memjax.data.babi import tokenize
from memjax.train import Checkpointer, cli

_LINE_NUMBER = re.compile(r"^\s*(\d+)\s+")


def split_parts(line: str) -> list[tuple[str, str]]:
  """The parts of one line of free text, in order: ``('sentence', s)`` or
  ``('question', q)`` (a part ending in '?'). A bAbI line number is dropped (``'1'``
  first: ``('new', '')``, bAbI's start of a story), as are bAbI's tab-separated answers."""
  parts: list[tuple[str, str]] = []
  number = _LINE_NUMBER.match(line)
  if number and int(number.group(1)) == 1:
    parts.append(("new", ""))
  line = _LINE_NUMBER.sub("", line).split("\t")[0]
  for part in re.findall(r"[^.?]+[.?]?", line):
    part = part.strip()
    if part and part not in ".?":
      parts.append(("question" if part.endswith("?") else "sentence", part))
  return parts


def split_story(text: str) -> tuple[list[str], str | None]:
  """Sentences and the question (the last part ending in '?') of free text."""
  sentences, question = [], None
  for line in text.splitlines():
    for kind, part in split_parts(line):
      if kind == "question":
        question = part
      elif kind == "sentence":
        sentences.append(part)
  return sentences, question


@dataclasses.dataclass
class Result:
  """An answer with the attention of each hop over the story's sentences."""

  answer: str
  probability: float
  sentences: list[str]  # the sentences in memory, oldest first
  question: str
  attention: np.ndarray  # [K, n] weights of each hop over the n sentences

  def table(self) -> str:
    hops = self.attention.shape[0]
    head = "  ".join(f"hop {k + 1}" for k in range(hops))
    lines = [f"{head}  sentence"]
    for i, s in enumerate(self.sentences):
      lines.append("  ".join(f"{self.attention[k, i]:5.2f}" for k in range(hops)) + f"  {s}")
    lines.append(f"Q: {self.question}  A: {self.answer} (p={self.probability:.2f})")
    return "\n".join(lines)


class Predictor:
  """A restored MemN2N with its vocabulary."""

  def __init__(self, config, params, words: list[str], sentence_size: int):
    self.config = config
    self.params = params
    self.words = list(words)
    self.ids = {w: i for i, w in enumerate(self.words)}
    self.sentence_size = sentence_size
    self.model = train.make_model(config, len(self.words), sentence_size)
    self._apply = jax.jit(self.model.apply)

  @property
  def memory_size(self) -> int:
    """M: the model reads the last M sentences of a story."""
    return int(self.config.data.memory_size)

  def check(self, sentence: str) -> None:
    """Raises ValueError if the model cannot read ``sentence`` (unknown or too many words)."""
    words = tokenize(sentence)
    if not words:
      raise ValueError(f"no words in {sentence!r}")
    unknown = sorted({w for w in words if w not in self.ids})
    if unknown:
      raise ValueError(f"words the model never saw: {unknown}")
    if len(words) > self.sentence_size:
      raise ValueError(f"sentences longer than {self.sentence_size} words: [{' '.join(words)!r}]")

  def encode(self, sentences: list[str], question: str) -> tuple[np.ndarray, np.ndarray]:
    """``(story [M, S], query [S])`` ids; raises ValueError naming unknown words."""
    m = self.config.data.memory_size
    toks = [tokenize(s) for s in sentences][-m:]
    qtok = tokenize(question)
    unknown = sorted({w for ws in (*toks, qtok) for w in ws if w not in self.ids})
    if unknown:
      raise ValueError(f"words the model never saw: {unknown}")
    too_long = [" ".join(ws) for ws in (*toks, qtok) if len(ws) > self.sentence_size]
    if too_long:
      raise ValueError(f"sentences longer than {self.sentence_size} words: {too_long}")
    story = np.zeros((m, self.sentence_size), np.int32)
    for i, ws in enumerate(toks):
      story[i, : len(ws)] = [self.ids[w] for w in ws]
    query = np.zeros((self.sentence_size,), np.int32)
    query[: len(qtok)] = [self.ids[w] for w in qtok]
    return story, query

  def answer(self, sentences: list[str] | str, question: str | None = None) -> Result:
    """Answers ``question`` about ``sentences`` (or free text holding both)."""
    if isinstance(sentences, str):
      sentences, found = split_story(sentences)
      question = question or found
    if not question:
      raise ValueError("no question: end it with '?'")
    if not sentences:
      raise ValueError("no story to answer about: give at least one sentence first")
    kept = list(sentences)[-self.config.data.memory_size :]
    story, query = self.encode(kept, question)
    logits, attention = self._apply(self.params, story[None], query[None])
    probs = np.asarray(jax.nn.softmax(logits[0]))
    best = int(np.argmax(probs))
    return Result(
      self.words[best], float(probs[best]), kept, question, np.asarray(attention[0, :, : len(kept)])
    )


def load_predictor(workdir: str, task: int | None = None) -> Predictor:
  """Restores the selected model of a finished run in ``workdir`` (for ``task``, per task).

  ``workdir`` may also hold the output of :mod:`experiments.babi.combine`: the chosen unit
  is then restored from the run it was trained in.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(
      f"workdir {workdir!r} does not exist: give the workdir of a finished bAbI run "
      "(make demo writes runs/demo)"
    )
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{path} does not exist: the run in {workdir!r} has not finished (re-run its command "
      "to resume it)"
    )
  with open(path) as f:
    results = json.load(f)
  config = ml_collections.ConfigDict(results["config"])
  selected = results["metrics"]["selected_unit"]
  key = str(task if task is not None else config.tasks[0])
  if key not in selected:
    raise ValueError(f"task={task} is not one of the run's tasks {sorted(selected, key=int)}")
  index = int(selected[key])
  if "combined_from" in results:
    chosen = results["units"][index]
    workdir, index = chosen["run_workdir"], chosen["run_index"]
    config = ml_collections.ConfigDict(results["run_configs"][chosen["run"]])
  unit_dir = os.path.join(workdir, "runs", f"unit_{index:03d}")
  with open(os.path.join(unit_dir, "result.json")) as f:
    unit = json.load(f)
  words = unit["vocab"]["words"] if isinstance(unit["vocab"], dict) else unit["vocab"]
  model = train.make_model(config, len(words), unit["sentence_size"])
  target = jax.eval_shape(lambda: train.init_state(config, model, unit["sentence_size"], 0))
  # Restore onto this process's first device, whatever devices trained the model (a run
  # trained on 8 devices is answered on a laptop's one).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), target)
  checkpoints = os.path.join(unit_dir, "checkpoints")
  if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
    # (checked before Orbax starts: its manager's background cleanup, racing an exit
    # right after, reports a traceback at interpreter shutdown)
    raise FileNotFoundError(f"no checkpoint for unit {index} under {checkpoints}")
  with Checkpointer(checkpoints) as ckpt:
    restored = ckpt.restore_latest(target)
  if restored is None:
    raise FileNotFoundError(f"no checkpoint for unit {index} under {unit_dir}/checkpoints")
  _, state, _ = restored
  return Predictor(config, state.extra.best_params, words, unit["sentence_size"])


def plot_attention(result: Result, path: str | None = None):
  """A heat map (sentences x hops) of the attention; saved as PNG when ``path`` is given.

  Raises:
    ValueError: the result has no sentence (nothing to plot).
  """
  import matplotlib.pyplot as plt

  n, hops = len(result.sentences), result.attention.shape[0]
  if n == 0:
    raise ValueError("no sentences in the result: nothing to plot")
  fig, ax = plt.subplots(
    figsize=(2.2 + 1.1 * hops + 0.08 * max(map(len, result.sentences)), 1.2 + 0.35 * n)
  )
  vmax = max(1e-6, float(result.attention.max()))
  im = ax.imshow(result.attention.T, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
  ax.set_xticks(range(hops), [f"hop {k + 1}" for k in range(hops)])
  ax.set_yticks(range(n), result.sentences)
  for k in range(hops):
    for i in range(n):
      ax.text(k, i, f"{result.attention[k, i]:.2f}", ha="center", va="center", fontsize=8)
  ax.set_title(f"{result.question}  ->  {result.answer} ({result.probability:.2f})", fontsize=10)
  fig.colorbar(im, ax=ax, fraction=0.04)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=100)
  return fig


BANNER = (
  "Type a story, one sentence per line (or several, each ending in '.'), then a question "
  "ending in '?'.\nThe story is KEPT across questions: add sentences and ask again. "
  "Commands: :new starts a new story, :story shows it, :quit (or Ctrl-D) quits."
)


def numbered_path(prefix: str) -> Callable[[], str]:
  """``next_path()`` giving ``<prefix>_001.png``, ``_002``, ... skipping existing files
  (a ``.png`` suffix of ``prefix`` is dropped)."""
  base = prefix[:-4] if prefix.lower().endswith(".png") else prefix
  counter = {"n": 0}

  def next_path() -> str:
    while True:
      counter["n"] += 1
      path = f"{base}_{counter['n']:03d}.png"
      if not os.path.exists(path):
        return path

  return next_path


def interact(
  predictor: Predictor,
  lines: Iterable[str],
  next_png: Callable[[], str] | None = None,
  out=None,
) -> list[Result]:
  """The question-answering loop over ``lines`` (stdin, or a list in tests).

  Sentences join the story; a question is answered about the story so far (which is
  kept); ``:new`` empties it, ``:story`` prints it, ``:quit`` stops. A sentence the model
  cannot read (unknown or too many words) is refused and not added; a question before
  any sentence is refused. Each answer's heat map goes to ``next_png()`` (None: no file).

  Returns:
    The results, one per answered question.
  """
  out = out or sys.stdout
  say = lambda text: print(text, file=out, flush=True)  # noqa: E731
  story: list[str] = []
  results: list[Result] = []
  m = predictor.memory_size
  say(BANNER)
  for line in lines:
    command = line.strip()
    if command.startswith(":"):
      if command in (":quit", ":q", ":exit"):
        break
      if command in (":new", ":clear"):
        story = []
        say("(new story: the story is empty)")
      elif command == ":story":
        say("\n".join(f"{i + 1:3d} {s}" for i, s in enumerate(story)) or "(the story is empty)")
      else:
        say(f"error: unknown command {command!r} (:new, :story, :quit)")
      continue
    for kind, part in split_parts(line):
      if kind == "new":
        if story:
          say("(line 1: a new story)")
        story = []
      elif kind == "sentence":
        try:
          predictor.check(part)
        except ValueError as e:
          say(f"error: sentence not added: {e}")
          continue
        story.append(part)
      elif not story:
        say(f"error: no story yet, so nothing to answer {part!r} about: type sentences first")
      else:
        try:
          result = predictor.answer(story, part)
        except ValueError as e:
          say(f"error: {e}")
          continue
        results.append(result)
        say(result.table())
        if len(story) > m:
          say(f"(the model reads the last {m} of the story's {len(story)} sentences)")
        if next_png is not None:
          import matplotlib.pyplot as plt  # noqa: PLC0415

          path = next_png()
          plt.close(plot_attention(result, path))
          say(f"(heat map: {path})")
        say(f"(story kept: {len(story)} sentence(s); add more, ask again, or :new)")
  return results


@cli.guarded
def main(argv=None) -> None:
  import argparse

  parser = argparse.ArgumentParser(description="Ask a trained MemN2N about a story.")
  parser.add_argument("--workdir", required=True, help="a finished run's workdir")
  parser.add_argument("--task", type=int, default=None, help="per-task runs: which model")
  parser.add_argument(
    "--png",
    default=None,
    help="heat map prefix: question n writes PREFIX_00n.png (default <workdir>/attention)",
  )
  args = parser.parse_args(argv)
  predictor = load_predictor(args.workdir, args.task)
  prefix = args.png or os.path.join(args.workdir, "attention")
  interact(predictor, sys.stdin, numbered_path(prefix))


if __name__ == "__main__":
  main()
