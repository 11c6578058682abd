"""One training loop for every study: the train state, the scanned update and ``fit``.

A study supplies its model's loss, an Optax optimizer and (optionally) an evaluation
and hooks; this module owns what every study would otherwise repeat:

* :class:`TrainState`: params, optimizer state, PRNG key data, step count and a typed
  slot (``extra``) for the study's own state (best parameters, a phase, ...). All
  arrays, so the whole state is one Orbax checkpoint.
* :func:`make_train_steps`: a jitted ``lax.scan`` over optimizer steps (many steps per
  dispatch), the input state donated, memjax's compile options, the batch split over a
  data-parallel mesh, optional bfloat16 compute with float32 master weights, and
  several static batch shapes (length buckets) as ``lax.switch`` branches.
* :func:`fit`: calls the study's train function round after round (a round is one
  dispatch: some steps, or an epoch) with periodic evaluation, metrics history
  (``metrics.jsonl``, written as it goes), hooks (phase changes, early stop), Orbax
  checkpoints restored into a ``jax.eval_shape`` target, a progress bar, wall time
  across resumed sessions and a final checkpoint on SIGTERM.

The periodic actions are a few lines here rather than CLU's ``periodic_actions`` /
``metric_writers``: a round-based schedule is all the studies need, and CLU's summary
writers pull in TensorFlow, which memjax does not depend on.

Example:
  >>> import optax
  >>> def loss_fn(params, batch, rng, context):
  ...   del rng, context
  ...   err = batch["x"] @ params["w"] - batch["y"]
  ...   return jnp.mean(err**2), {"mse": jnp.mean(err**2)}
  >>> opt = optax.sgd(0.1)
  >>> params = {"w": jnp.zeros(3)}
  >>> state = TrainState.create(params, opt, jax.random.key(0))
  >>> steps = make_train_steps(loss_fn, opt)
  >>> x = jnp.ones((5, 4, 3))  # 5 steps of a batch of 4
  >>> state, metrics = steps(state, {"x": x, "y": jnp.ones((5, 4))})
  >>> int(state.step), metrics["mse"].shape
  (5, (5,))
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from absl import logging
from jax.sharding import Mesh

from memjax.train import parallel
from memjax.train.checkpoint import Checkpointer
from memjax.train.compile import compiler_options
from memjax.train.results import to_jsonable

LossFn = Callable[..., tuple[jax.Array, Mapping[str, jax.Array]]]
HISTORY_FILE = "metrics.jsonl"


class TrainState(NamedTuple):
  """Everything a run carries from one step to the next (all arrays: one checkpoint).

  Attributes:
    params: the model parameters (float32 master weights).
    opt_state: the Optax state.
    rng: uint32 [2] PRNG key data (raw, so Orbax saves it); step ``i`` draws from
      ``fold_in(wrap_key_data(rng), i)``.
    step: [] int32 optimizer steps done.
    extra: the study's own state, a NamedTuple of arrays (``()`` when none).
  """

  params: Any
  opt_state: Any
  rng: jax.Array
  step: jax.Array
  extra: Any = ()

  @classmethod
  def create(
    cls, params: Any, optimizer: optax.GradientTransformation, rng: jax.Array, extra: Any = ()
  ) -> TrainState:
    """A fresh state at step 0.

    Args:
      params: the initial parameters.
      optimizer: the Optax transformation whose state to initialise.
      rng: a PRNG key (typed or raw uint32 key data).
      extra: the study's own initial state.
    """
    if jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
    return cls(params, optimizer.init(params), jnp.asarray(rng), jnp.zeros((), jnp.int32), extra)


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
  """Sets hyperparameters of every ``optax.inject_hyperparams`` state in ``opt_state``.

  For schedules decided on the host between rounds (a phase change, a plateau): the
  value is an array in the state, so the compiled step does not change.

  Args:
    opt_state: an Optax state (any nesting of chains).
    **values: hyperparameter name -> new value (e.g. ``learning_rate=0.01``).

  Returns:
    The same state with those hyperparameters replaced (dtypes kept).

  Raises:
    ValueError: when no injected hyperparameter of a given name exists.
  """
  found = set()

  def is_injected(x):
    return isinstance(x, optax.InjectStatefulHyperparamsState)

  def replace(x):
    if not is_injected(x):
      return x
    hyper = dict(x.hyperparams)
    for name, value in values.items():
      if name in hyper:
        hyper[name] = jnp.asarray(value, jnp.asarray(hyper[name]).dtype)
        found.add(name)
    return x._replace(hyperparams=hyper)

  out = jax.tree.map(replace, opt_state, is_leaf=is_injected)
  missing = sorted(set(values) - found)
  if missing:
    raise ValueError(
      f"no optax.inject_hyperparams state holds {missing}; wrap the optimizer with "
      "optax.inject_hyperparams to change them between rounds"
    )
  return out


def _cast_floating(tree: Any, dtype: Any) -> Any:
  def cast(x):
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def make_train_steps(
  loss_fn: LossFn | Sequence[LossFn],
  optimizer: optax.GradientTransformation,
  *,
  num_steps: int | None = None,
  batch_fn: Callable[[Any, jax.Array, Any], Any] | None = None,
  branch_fn: Callable[[Any], jax.Array] | None = None,
  mesh: Mesh | None = None,
  compute_dtype: Any = None,
  donate: bool = True,
  xla_options: Mapping[str, str] | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted function that runs many optimizer steps in one ``lax.scan``.

  Each step ``i`` draws the key ``fold_in(wrap_key_data(state.rng), state.step)``, forms
  its batch ``batch_fn(x_i, key, context)`` (default: the scanned input ``x_i`` itself),
  differentiates ``loss_fn(params, batch, key, context) -> (loss, metrics)`` and applies
  the optimizer. ``context`` is the same for every step (data on device, a phase flag).

  Several static batch shapes: pass a sequence of loss functions and ``branch_fn(batch)
  -> index``; each step differentiates only the chosen one (``lax.switch`` over their
  gradients, so each branch compiles its own forward and backward pass for its shape).

  Data parallelism: with a ``mesh`` of more than one device every array of rank >= 1 in
  the step's batch is split along its first axis (the batch; scalars and the scanned
  axis stay replicated) and ``jit`` inserts the gradient all-reduce.

  Args:
    loss_fn: ``fn(params, batch, rng, context) -> (scalar loss, {name: scalar})``, or a
      sequence of them (one per static shape) chosen by ``branch_fn``.
    optimizer: an Optax transformation.
    num_steps: steps per call when there are no scanned inputs (``xs=None``), e.g. when
      ``batch_fn`` generates the batch from the key.
    batch_fn: ``fn(x_i, key, context) -> batch``; default returns ``x_i``.
    branch_fn: ``fn(batch) -> int32 index`` into ``loss_fn``; required for a sequence.
    mesh: a data-parallel mesh (:func:`memjax.train.parallel.data_mesh`); None = no
      sharding constraint.
    compute_dtype: e.g. ``jnp.bfloat16``: the loss sees floating params cast to it while
      the optimizer updates float32 master weights; None = the params' own dtypes.
    donate: donate the input state's buffers (do not reuse a state after passing it).
    xla_options: XLA compile options of the step; None = memjax's choice for the backend
      (:func:`memjax.train.compiler_options`), ``{}`` = XLA's defaults.

  Returns:
    ``train_steps(state, xs=None, context=None) -> (state, metrics)``: ``xs`` is a pytree
    whose leaves have the steps on axis 0 (or None with ``num_steps``); ``metrics`` maps
    each name the loss reports, and ``'loss'``, to a [steps] array.

  Raises:
    ValueError: a sequence of losses without ``branch_fn``; ``xs`` and ``num_steps`` both
      missing; a batch that does not divide over the mesh (at trace time, naming it).
  """
  losses = tuple(loss_fn) if isinstance(loss_fn, Sequence) else (loss_fn,)
  if len(losses) > 1 and branch_fn is None:
    raise ValueError(f"{len(losses)} loss functions need a branch_fn to choose between them")
  if not losses:
    raise ValueError("loss_fn is an empty sequence")
  make_batch = batch_fn or (lambda x, key, context: x)

  def value_and_grad(fn):
    def with_metrics(params, batch, key, context):
      if compute_dtype is not None:
        params = _cast_floating(params, compute_dtype)
      loss, metrics = fn(params, batch, key, context)
      return loss, {"loss": loss, **metrics}

    return jax.value_and_grad(with_metrics, has_aux=True)

  grads_of = [value_and_grad(fn) for fn in losses]

  def one_step(state: TrainState, x, context):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    batch = make_batch(x, key, context)
    if mesh is not None and mesh.size > 1:
      batch = parallel.constrain_batch(batch, mesh)
    if len(grads_of) == 1:
      (_, metrics), grads = grads_of[0](state.params, batch, key, context)
    else:
      index = branch_fn(batch)
      (_, metrics), grads = jax.lax.switch(index, grads_of, state.params, batch, key, context)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

  options = compiler_options() if xla_options is None else dict(xla_options)

  @functools.partial(jax.jit, donate_argnums=(0,) if donate else (), compiler_options=options)
  def scanned(state: TrainState, xs: Any = None, context: Any = None):
    if xs is None and num_steps is None:
      raise ValueError("train_steps needs scanned inputs xs, or num_steps at construction")
    body = lambda s, x: one_step(s, x, context)
    return jax.lax.scan(body, state, xs, length=None if xs is not None else num_steps)

  if mesh is None:
    return scanned

  def train_steps(state: TrainState, xs: Any = None, context: Any = None):
    # Every leaf on the mesh, also those a hook or the host just made (a new phase flag, a
    # copy of the params): jit compiles per input sharding, and a leaf placed elsewhere
    # would recompile the whole step. A no-op for leaves already there.
    return scanned(jax.device_put(state, parallel.replicated(mesh)), xs, context)

  return train_steps


# ----------------------------------------------------------------------------- fit


class Preempted(SystemExit):
  """Raised by :func:`fit` after it saved a final checkpoint on SIGTERM (exit code 143)."""

  def __init__(self, rounds: int):
    super().__init__(128 + signal.SIGTERM)
    self.rounds = rounds


class FitResult(NamedTuple):
  """What :func:`fit` returns.

  Attributes:
    state: the final state.
    history: the metric rows (one per logged round, resumed sessions included).
    rounds: rounds done.
    stopped: True when a hook stopped the run before ``num_rounds``.
    wall_time_s: wall-clock seconds of every session of this run.
    train_time_s: seconds in the train function, without each session's first round
      (the one that compiles); ``timed_rounds`` rounds.
    timed_rounds: the rounds ``train_time_s`` covers.
  """

  state: TrainState
  history: list[dict[str, Any]]
  rounds: int
  stopped: bool
  wall_time_s: float
  train_time_s: float
  timed_rounds: int


Hook = Callable[[TrainState, dict[str, Any]], tuple[TrainState, bool]]


def _read_history(path: str, rounds: int) -> list[dict[str, Any]]:
  """The rows of ``path`` up to round ``rounds`` (later ones belong to a lost session)."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut by a kill: it is past the checkpoint
        break
      if row["round"] > rounds:
        break
      rows.append(row)
  return rows


def _window_means(window: list[Mapping[str, Any]]) -> dict[str, float]:
  """The mean of each metric over every step of the window's rounds."""
  if not window:
    return {}
  return {
    k: float(np.mean(np.concatenate([np.ravel(np.asarray(m[k])) for m in window])))
    for k in window[0]
  }


class _SigtermFlag:
  """Notes a SIGTERM (instead of dying) while installed; restores the old handler."""

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def fit(
  init_fn: Callable[[], TrainState],
  train_fn: Callable[[TrainState, int], tuple[TrainState, Mapping[str, Any]]],
  *,
  workdir: str | os.PathLike,
  num_rounds: int,
  eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
  log_every: int = 1,
  checkpoint_every: int = 1,
  hooks: Sequence[Hook] = (),
  mesh: Mesh | None = None,
  steps_per_round: int = 1,
  progress: bool = True,
  desc: str = "",
  postfix: Sequence[str] = (),
  max_to_keep: int = 2,
) -> FitResult:
  """Trains round after round, resuming from ``workdir`` when a checkpoint is there.

  A round is one call ``train_fn(state, round_index) -> (state, metrics)`` (an epoch, or
  a few hundred steps of :func:`make_train_steps`). Every ``log_every`` rounds the
  metrics since the last row are averaged, ``eval_fn(state)``'s metrics added, each hook
  ``hook(state, row) -> (state, stop)`` called (it may change the state, e.g. keep the
  best parameters or switch a phase, add entries to ``row`` and stop the run), and the
  row appended to ``workdir/metrics.jsonl``. Every ``checkpoint_every`` rounds, at the
  end and on SIGTERM the state is saved with Orbax under ``workdir/checkpoints``.

  A killed run started again restores the newest checkpoint into the abstract target
  ``jax.eval_shape(init_fn)``, drops the history rows written after it, and goes on (a
  run a hook stopped stays stopped): as long as ``train_fn`` and the hooks depend only on
  the state and the round index, the result equals an uninterrupted run's bit for bit. A
  newest checkpoint that is incomplete or corrupt is reported and the previous good one
  restored (:meth:`Checkpointer.restore_latest`).

  Args:
    init_fn: builds the fresh state (not called when a checkpoint is restored).
    train_fn: ``fn(state, round_index) -> (state, {name: array})``; arrays may hold one
      value per step (``[steps]``), all of them are averaged.
    workdir: the run's directory (created).
    num_rounds: the most rounds to run.
    eval_fn: ``fn(state) -> {name: number}``, run on logged rounds.
    log_every: rounds between rows (and evaluations, hooks, progress updates).
    checkpoint_every: rounds between checkpoints.
    hooks: called in order on every row.
    mesh: when given, the state is replicated over it (data parallelism).
    steps_per_round: optimizer steps per round, for the progress bar.
    progress: show a tqdm progress bar.
    desc: the progress bar's label.
    postfix: row entries shown beside the bar.
    max_to_keep: checkpoints kept.

  Returns:
    A :class:`FitResult`.

  Raises:
    Preempted: after the final checkpoint, when SIGTERM arrived during the run.
    CheckpointError: ``workdir/checkpoints`` holds checkpoints but none is usable.
    ValueError: non-positive ``num_rounds``, ``log_every`` or ``checkpoint_every``.
  """
  for name, value in (("log_every", log_every), ("checkpoint_every", checkpoint_every)):
    if int(value) < 1:
      raise ValueError(f"{name}={value} must be a positive number of rounds")
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  history_path = os.path.join(workdir, HISTORY_FILE)
  session_start = time.time()

  abstract = jax.eval_shape(init_fn)
  if mesh is not None:
    abstract = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)),
      abstract,
    )
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=max_to_keep)
  restored = ckpt.restore_latest(abstract)
  if restored is None:
    state, meta = init_fn(), {}
    if os.path.exists(history_path):
      os.remove(history_path)
  else:
    _, state, meta = restored
    logging.info("%s: resumed at round %d", workdir, meta["round"])
  if mesh is not None:
    state = parallel.replicate(state, mesh)
  rounds = int(meta.get("round", 0))
  # A run a hook stopped stays stopped: resuming its last checkpoint must not train on.
  stopped = bool(meta.get("stopped", False))
  prior_wall = float(meta.get("wall_time_s", 0.0))
  train_time = float(meta.get("train_time_s", 0.0))
  timed_rounds = int(meta.get("timed_rounds", 0))
  history = _read_history(history_path, rounds)
  write_json_atomic_lines(history_path, history)

  def save():
    ckpt.save(
      rounds,
      state,
      {
        "round": rounds,
        "wall_time_s": prior_wall + time.time() - session_start,
        "train_time_s": train_time,
        "timed_rounds": timed_rounds,
        "stopped": stopped,
      },
    )

  bar = tqdm.tqdm(
    total=num_rounds * steps_per_round,
    initial=rounds * steps_per_round,
    desc=desc,
    disable=not progress,
    leave=False,
    mininterval=1.0,
  )
  saved_at, first = rounds if restored else None, True
  window: list[Mapping[str, Any]] = []
  window_seconds = 0.0
  try:
    with _SigtermFlag() as sigterm, open(history_path, "a") as history_file:
      while rounds < num_rounds and not stopped:
        start = time.perf_counter()
        state, metrics = train_fn(state, rounds)
        metrics = jax.device_get(metrics)  # waits for the round: timings are real
        seconds = time.perf_counter() - start
        rounds += 1
        if not first:
          train_time += seconds
          timed_rounds += 1
        first = False
        window.append(metrics)
        window_seconds += seconds
        bar.update(steps_per_round)
        if rounds % log_every == 0:
          row = {"round": rounds, "step": int(state.step), **_window_means(window)}
          row["seconds"] = window_seconds
          window, window_seconds = [], 0.0
          if eval_fn is not None:
            row.update(jax.device_get(eval_fn(state)))
          for hook in hooks:
            state, stop = hook(state, row)
            stopped = stopped or bool(stop)
          row = to_jsonable(row)
          history.append(row)
          history_file.write(json.dumps(row) + "\n")
          history_file.flush()
          shown = {k: row[k] for k in postfix if k in row}
          bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in shown.items()})
        if rounds % checkpoint_every == 0 or sigterm.received:
          save()
          saved_at = rounds
        if sigterm.received:
          ckpt.close()
          raise Preempted(rounds)
      if saved_at != rounds:
        save()
  finally:
    bar.close()
    ckpt.close()
  return FitResult(
    state=state,
    history=history,
    rounds=rounds,
    stopped=stopped,
    wall_time_s=prior_wall + time.time() - session_start,
    train_time_s=train_time,
    timed_rounds=timed_rounds,
  )


def write_json_atomic_lines(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes ``rows`` as JSON lines to ``path`` through a temporary file and a rename."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    for row in rows:
      f.write(json.dumps(to_jsonable(row)) + "\n")
  os.replace(tmp, path)


__all__ = [
  "TrainState",
  "set_hyperparams",
  "make_train_steps",
  "fit",
  "FitResult",
  "Hook",
  "Preempted",
  "HISTORY_FILE",
  "write_json_atomic_lines",
]
