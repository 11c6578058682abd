"""Entry points of the study binaries: a user error is a message, not a traceback.

Every binary (``experiments/*/main.py``, ``experiments.babi.interactive``,
``experiments.babi.combine``) runs its ``main`` through :func:`run` (absl) or
:func:`guarded`. An error the user can fix -- a missing data root, workdir, results file or
checkpoint, a bad config value, a malformed data file -- prints its message to stderr
(``<program>: error: ...``) and exits with status :data:`EXIT_USER_ERROR`. Anything else
(a bug) keeps Python's full traceback. With ``MEMJAX_DEBUG=1`` in the environment every
error shows its traceback.

    MEMJAX_DEBUG=1 python -m experiments.babi.main --config=... --workdir=...
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

DEBUG_ENV = "MEMJAX_DEBUG"
EXIT_USER_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
  """The exception types reported as a message: missing or unreadable files and folders
  (``OSError``: not found, not a directory, permission, ...), bad values (``ValueError``:
  config values, malformed data, shapes; ``UnicodeDecodeError`` is one), and checkpoints
  that cannot be restored (:class:`memjax.train.checkpoint.CheckpointError`)."""
  from memjax.train.checkpoint import CheckpointError  # noqa: PLC0415

  return (OSError, ValueError, CheckpointError)


def debug() -> bool:
  """True when ``$MEMJAX_DEBUG`` is set to anything but '', '0', 'false' or 'no'."""
  return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _program() -> str:
  name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "memjax"
  if name in ("__main__.py", "-c", "-m"):
    return "memjax"
  return name[:-3] if name.endswith(".py") else name


def format_error(error: BaseException, program: str | None = None) -> str:
  """``<program>: error: <message>`` plus a line on how to see the traceback."""
  message = str(error) or type(error).__name__
  if isinstance(error, KeyError) and len(error.args) == 1:
    message = str(error.args[0])  # KeyError's str() quotes the message
  if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
    message = f"{message}: {error.filename}"
  return (
    f"{program or _program()}: error: {message}\n"
    f"(a {type(error).__name__}; set {DEBUG_ENV}=1 for the traceback)"
  )


def guarded(main: Callable[..., Any]) -> Callable[..., Any]:
  """``main`` that reports user errors (see :func:`user_errors`) and exits with status
  :data:`EXIT_USER_ERROR`, unless :func:`debug`."""

  @functools.wraps(main)
  def wrapper(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except user_errors() as e:
      if debug():
        raise
      sys.stdout.flush()
      print(format_error(e), file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)

  return wrapper


def run(main: Callable[[list[str]], Any]) -> None:
  """``absl.app.run(guarded(main))``: flags are parsed by absl (its usage errors print
  the usage and exit 1), then ``main`` runs with user errors reported."""
  from absl import app  # noqa: PLC0415

  app.run(guarded(main))


def study_main(
  train_and_evaluate: Callable[[Any, str], Any],
  *,
  workdir_help: str = "Where checkpoints and results.json go.",
  config_help: str = "A config file (configs/*.py); override fields with --config.<field>=...",
) -> Callable[[list[str]], None]:
  """The ``main`` of a study binary: defines the required ``--workdir`` and ``--config``
  flags (absl, ml_collections) and returns ``main(argv)``, which refuses stray arguments,
  keeps absl's log to warnings (Orbax logs every save at INFO) and calls
  ``train_and_evaluate(config, workdir)``. A study's ``main.py``::

      main = cli.study_main(train.train_and_evaluate)
      if __name__ == "__main__":
        cli.run(main)
  """
  from absl import app, flags, logging  # noqa: PLC0415
  from ml_collections import config_flags  # noqa: PLC0415

  # Defined once per process: several studies imported together share the two flags.
  if "workdir" not in flags.FLAGS:
    flags.DEFINE_string("workdir", None, workdir_help)
  if "config" not in flags.FLAGS:
    config_flags.DEFINE_config_file("config", None, config_help)
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

  return main


__all__ = [
  "DEBUG_ENV",
  "EXIT_USER_ERROR",
  "debug",
  "format_error",
  "guarded",
  "run",
  "study_main",
  "user_errors",
]
