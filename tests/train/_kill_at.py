"""Runs the bAbI binary in this process and SIGKILLs it at a chosen, deterministic point.

    python _kill_at.py KIND:N KILL_LOG -- --config=... --workdir=...

The arguments after ``--`` go to ``experiments.babi.main``. The process kills itself
(``SIGKILL``: no handler, no cleanup, no flush) at the N-th event of KIND counted from its
start, after appending ``KIND N DETAIL`` to KILL_LOG. Except inside a write (``tmpdir``,
``rename``) it first waits for the saves in flight, so that the point is exact:

* ``hook``: a call of the study's epoch hook (``linear_start_and_best``), before it runs:
  the round is trained and evaluated, its row not yet written.
* ``tmpdir``: Orbax has just created a step's temporary directory
  (``<step>.orbax-checkpoint-tmp-*``), before any array is written into it.
* ``rename``: Orbax is about to rename a complete temporary step directory (its
  ``commit_success.txt`` written) to its final name: the last moment of a save.
* ``before_save``: a call of ``Checkpointer.save``, before it does anything (the round's
  row is already in ``metrics.jsonl``).
* ``saved``: a ``Checkpointer.save`` has returned (and its write has finished).
* ``result``: a call of ``memjax.train.runs.write_json_atomic`` (a unit's ``result.json``
  or the study's ``progress.json``), before it writes.

Only test code: it patches memjax, the study and Orbax internals.
"""

import os
import signal
import sys
import threading
import weakref

from absl import app
from orbax.checkpoint._src.path import async_path, atomicity

from experiments.babi import main as babi_main
from experiments.babi import train as babi_train
from memjax.train import checkpoint, runs

_lock = threading.Lock()
_counts: dict[str, int] = {}
_open: weakref.WeakSet = weakref.WeakSet()  # every Checkpointer of this process
_IN_WRITE = ("tmpdir", "rename")  # events of Orbax's background write itself


def main() -> None:
  spec, log_path, sep, *flags = sys.argv[1:]
  assert sep == "--", sys.argv
  kind, n = spec.split(":")
  target = int(n)

  def tick(event: str, detail: str = "") -> None:
    if event != kind:
      return
    with _lock:
      _counts[event] = _counts.get(event, 0) + 1
      count = _counts[event]
    if count == target:
      if event not in _IN_WRITE:  # the point is exact: no earlier save still in flight
        for ckpt in list(_open):
          if not ckpt._closed:
            ckpt._manager.wait_until_finished()
      with open(log_path, "a") as f:
        f.write(f"{event} {count} {detail}\n")
        f.flush()
        os.fsync(f.fileno())
      os.kill(os.getpid(), signal.SIGKILL)

  make_hook = babi_train.linear_start_and_best

  def linear_start_and_best(config):
    hook = make_hook(config)

    def wrapped(state, row):
      tick("hook", f"round={row['round']}")
      return hook(state, row)

    return wrapped

  babi_train.linear_start_and_best = linear_start_and_best

  create_tmp = atomicity._create_tmp_directory

  async def _create_tmp_directory(*args, **kwargs):
    path = await create_tmp(*args, **kwargs)
    if atomicity.TMP_DIR_SUFFIX in path.name:
      tick("tmpdir", str(path))
    return path

  atomicity._create_tmp_directory = _create_tmp_directory

  rename = async_path.rename

  async def _rename(src, dst):
    if atomicity.TMP_DIR_SUFFIX in src.name and dst.name.isdigit():
      tick("rename", f"{src} -> {dst}")
    return await rename(src, dst)

  async_path.rename = _rename

  init = checkpoint.Checkpointer.__init__

  def _init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    _open.add(self)

  checkpoint.Checkpointer.__init__ = _init

  save = checkpoint.Checkpointer.save

  def _save(self, step, state, metadata=None):
    tick("before_save", f"{self.directory} step={step}")
    save(self, step, state, metadata)
    if kind == "saved":
      tick("saved", f"{self.directory} step={step}")

  checkpoint.Checkpointer.save = _save

  write_json = runs.write_json_atomic

  def _write_json_atomic(path, obj):
    tick("result", str(path))
    return write_json(path, obj)

  runs.write_json_atomic = _write_json_atomic

  app.run(babi_main.main, argv=[sys.argv[0], *flags])


if __name__ == "__main__":
  main()
