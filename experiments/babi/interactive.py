"""Ask a trained MemN2N questions about your own story; see each hop's attention.

    python -m experiments.babi.interactive --workdir=runs/babi_joint_1k [--task=1]

Type or paste a story (one sentence per line, or several per line ending in '.'; bAbI's
numbered lines work too), then the question (a line ending in '?'). It prints the answer
and the attention over the story's sentences for every hop, and writes the same as a PNG
heat map (``--png``, default ``<workdir>/attention.png``). From Python (the notebook):

    predictor = load_predictor(workdir)
    result = predictor.answer(["Mary moved to the bathroom.", "John went to the hallway."],
                              "Where is Mary?")
    plot_attention(result, "attention.png")
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys

import jax
import ml_collections
import numpy as np

from experiments.babi import train
from memjax.data.babi import tokenize
from memjax.train import Checkpointer


def split_story(text: str) -> tuple[list[str], str | None]:
  """Sentences and the question (the first part ending in '?') of free text."""
  sentences, question = [], None
  for line in text.splitlines():
    line = re.sub(r"^\s*\d+\s+", "", line).split("\t")[0]  # bAbI line numbers / answers
    for part in re.findall(r"[^.?]+[.?]?", line):
      part = part.strip()
      if not part or part in ".?":
        continue
      if part.endswith("?"):
        question = part
      else:
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
  with open(os.path.join(workdir, "results.json")) as f:
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
  with Checkpointer(os.path.join(unit_dir, "checkpoints")) as ckpt:
    restored = ckpt.restore_latest(target)
  if restored is None:
    raise FileNotFoundError(f"no checkpoint for unit {index} under {unit_dir}/checkpoints")
  _, state, _ = restored
  return Predictor(config, state.extra.best_params, words, unit["sentence_size"])


def plot_attention(result: Result, path: str | None = None):
  """A heat map (sentences x hops) of the attention; saved as PNG when ``path`` is given."""
  import matplotlib.pyplot as plt

  n, hops = len(result.sentences), result.attention.shape[0]
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


def main(argv=None) -> None:
  import argparse

  parser = argparse.ArgumentParser(description="Ask a trained MemN2N about a story.")
  parser.add_argument("--workdir", required=True, help="a finished run's workdir")
  parser.add_argument("--task", type=int, default=None, help="per-task runs: which model")
  parser.add_argument("--png", default=None, help="heat map path (default workdir)")
  args = parser.parse_args(argv)
  predictor = load_predictor(args.workdir, args.task)
  png = args.png or os.path.join(args.workdir, "attention.png")
  print("Type a story, one sentence per line, then a question ending in '?'. Ctrl-D quits.")
  buffer: list[str] = []
  for line in sys.stdin:
    buffer.append(line)
    sentences, question = split_story("".join(buffer))
    if question is None:
      continue
    try:
      result = predictor.answer(sentences, question)
      print(result.table())
      plot_attention(result, png)
      print(f"(heat map: {png})")
    except ValueError as e:
      print(f"error: {e}")
    buffer = []


if __name__ == "__main__":
  main()
