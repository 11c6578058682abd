"""The binaries report user errors as a message on stderr and a non-zero exit, without a
traceback (``MEMJAX_DEBUG=1`` shows it); see ``memjax.train.cli``."""

import os
import subprocess
import sys
import warnings

import pytest

from memjax.train import cli
from memjax.train.checkpoint import CheckpointError
from tests.experiments import _babi_workdir as _workdir

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs a binary as `python -m <module>` does, with downloads off: with the data root
# missing, the bAbI loader would otherwise fetch the archive when the machine is online.
_OFFLINE = (
  "import runpy, sys; import memjax.data.babi.builder as b; "
  "b._reachable = lambda url, timeout=5.0: (False, 'offline (test)'); "
  "sys.argv = [sys.argv[1], *sys.argv[2:]]; "
  "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def _run(clean_env, module, *args, env=None, offline=False):
  cmd = [sys.executable, "-c", _OFFLINE, module] if offline else [sys.executable, "-m", module]
  return subprocess.run(
    [*cmd, *args],
    capture_output=True,
    text=True,
    cwd=_ROOT,
    env=clean_env(JAX_PLATFORMS="cpu", **(env or {})),
    stdin=subprocess.DEVNULL,
    timeout=300,
  )


def _assert_user_error(proc, *needles):
  assert proc.returncode == cli.EXIT_USER_ERROR, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for needle in needles:
    assert needle in proc.stderr, proc.stderr[-3000:]
  assert "MEMJAX_DEBUG=1" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) <= 15, proc.stderr


def test_babi_missing_data_root(tmp_path, clean_env):
  missing = str(tmp_path / "no_data_here")
  proc = _run(
    clean_env,
    "experiments.babi.main",
    "--config=experiments/babi/configs/default.py",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data.data_dir={missing}",
    f"--config.data.tfds_dir={tmp_path / 'tfds'}",
    offline=True,
  )
  _assert_user_error(proc, "main: error: The bAbI QA v1.2 data was not found", missing)


def test_babi_bad_config_value(tmp_path, clean_env):
  proc = _run(
    clean_env,
    "experiments.babi.main",
    "--config=experiments/babi/configs/smoke.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.mode=sideways",
  )
  _assert_user_error(proc, "config.mode='sideways' must be 'joint' or 'per_task'")


def test_algorithmic_bad_config_value(tmp_path, clean_env):
  proc = _run(
    clean_env,
    "experiments.algorithmic.main",
    "--config=experiments/algorithmic/configs/copy_ntm.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.task.name=sorting",
  )
  _assert_user_error(proc, "task name='sorting' must be one of")


def test_combine_missing_results(tmp_path, clean_env):
  proc = _run(
    clean_env,
    "experiments.babi.combine",
    f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}",
    f"--workdir={tmp_path / 'ab'}",
  )
  _assert_user_error(proc, "no results.json", str(tmp_path / "a"))


def test_interactive_missing_workdir_and_checkpoint(tmp_path, clean_env):
  proc = _run(clean_env, "experiments.babi.interactive", f"--workdir={tmp_path / 'nope'}")
  _assert_user_error(proc, "interactive: error: workdir", "does not exist", "runs/demo")
  workdir = _workdir.write_workdir(str(tmp_path / "no_checkpoint"), checkpoint=False)
  proc = _run(clean_env, "experiments.babi.interactive", f"--workdir={workdir}")
  _assert_user_error(proc, "no checkpoint for unit 0")


def test_debug_flag_shows_the_traceback(tmp_path, clean_env):
  proc = _run(
    clean_env,
    "experiments.babi.interactive",
    f"--workdir={tmp_path / 'nope'}",
    env={"MEMJAX_DEBUG": "1"},
  )
  assert proc.returncode != 0 and proc.returncode != cli.EXIT_USER_ERROR
  assert "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


# ---------------------------------------------------------- the wrapper, in-process


@pytest.mark.parametrize(
  "error",
  [
    FileNotFoundError("results.json does not exist"),
    ValueError("config.mode='x' must be 'joint' or 'per_task'"),
    CheckpointError("no usable checkpoint in /w"),
  ],
)
def test_guarded_reports_user_errors(error, capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

  @cli.guarded
  def main():
    print("partial output")
    raise error

  with pytest.raises(SystemExit) as exit_info:
    main()
  assert exit_info.value.code == cli.EXIT_USER_ERROR
  captured = capsys.readouterr()
  assert captured.out == "partial output\n"
  assert captured.err.splitlines()[0].endswith(f"error: {error}")
  assert f"a {type(error).__name__}" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("value, shown", [("1", True), ("true", True), ("0", False), ("", False)])
def test_guarded_debug_env_reraises(value, shown, monkeypatch):
  monkeypatch.setenv(cli.DEBUG_ENV, value)

  @cli.guarded
  def main():
    raise ValueError("bad value")

  with pytest.raises(ValueError if shown else SystemExit):
    main()


def test_guarded_leaves_programming_errors_alone(monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

  @cli.guarded
  def main():
    raise AttributeError("a bug")

  with pytest.raises(AttributeError, match="a bug"):
    main()


@pytest.mark.parametrize("study", ["babi", "algorithmic", "continual", "meta", "facts"])
def test_study_binaries_refuse_stray_arguments(study, tmp_path, clean_env):
  proc = _run(
    clean_env, f"experiments.{study}.main", f"--workdir={tmp_path}", "--config=x.py", "stray"
  )
  # absl's usage error: before any config file is read or training starts
  assert proc.returncode == 1 and "unexpected arguments: ['stray']" in proc.stderr, proc.stderr
  assert not os.listdir(tmp_path)


def test_study_main_shares_its_flags_and_calls_the_study(tmp_path, monkeypatch):
  from absl import flags  # noqa: PLC0415

  from experiments.continual import main as continual_main  # noqa: PLC0415
  from experiments.meta import main as meta_main  # noqa: PLC0415 - same flags, no clash

  calls = []
  fake = lambda config, workdir: calls.append((config.name, workdir))
  main = cli.study_main(fake)  # a third study in the same process
  config = os.path.join(_ROOT, "experiments/continual/configs/split_digits_task.py")
  argv = ["prog", f"--workdir={tmp_path}", f"--config={config}"]
  with warnings.catch_warnings():
    # ml_collections loads the config file with importlib's load_module (its own code)
    warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
    remaining = flags.FLAGS(argv)
  try:
    main(remaining)
    assert calls == [("split_digits_task", str(tmp_path))]
    assert callable(continual_main.main) and callable(meta_main.main)
  finally:
    flags.FLAGS.unparse_flags()
