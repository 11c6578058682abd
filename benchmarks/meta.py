r"""Meta-learning throughput: memjax.meta vs a PyTorch MAML (torch.func), meta-iterations/s.

Settings (one JSON line per figure, the first describing the machine):

  sinusoid  the MAML paper's: 25 tasks per meta-step, K = 10 support and 10 query points,
            one inner SGD step (0.01), a 1-40-40-1 ReLU MLP, Adam (1e-3), the tasks sampled
            in every meta-step. Every algorithm of memjax.meta.
  omniglot  5-way 1-shot, 15 queries per class, the paper's 4-block conv net (64 filters,
            stride 2, batch norm), one inner step (0.4): MAML and first-order MAML. Images
            from $MEMJAX_DATA_DIR/omniglot when present, else random (speed only). memjax
            runs the tasks one at a time, unrolled: on CPU a vmap over per-task kernels is a
            grouped convolution, and XLA (jaxlib 0.10.2) runs a convolution's weight
            gradient ~20-30x slower inside a loop (lax.map, scan) than outside one; the
            meta-steps' own scan (memjax.train) is such a loop, so this setting measures
            that XLA slowness (see "first_call_s" for the compile time of the unrolled step).

Methods, interleaved round by round (load from other processes hits all alike):

  memjax      memjax.meta.make_meta_train_steps: --steps_per_call meta-steps per dispatch
  jax_loop    the same meta-step jitted alone, called from a Python loop (one per dispatch)
  torch       the same MAML written with torch.func (functional_call, grad, vmap; a Python
              loop over the tasks for the conv net), torch.optim.Adam, at its fastest thread
              count (probed first, --torch_threads). learn2learn, the PyTorch library, does
              not build on this Python (3.11: its Cython C includes longintrepr.h, gone
              since 3.11), so the peer is written here. Skipped with a message without torch.

Before timing, the peer's meta-gradient is checked against memjax's on the same
parameters and tasks ("peer_check"). Ratios are medians of the per-round ratios.

Usage:

  python benchmarks/meta.py                    # both settings (minutes)
  python benchmarks/meta.py --small            # about a minute: tiny sizes, short rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_REMOVED = _common.prepare_blas_env()  # before numpy is imported

import numpy as np  # noqa: E402
from _meta_torch import check_peer, import_torch, torch_peer  # noqa: E402

ALL = ("maml", "fomaml", "reptile", "anil", "meta_sgd", "maml_plus_plus")
PEER_ALGORITHMS = ("maml", "fomaml")
REPORTED = {"torch_learn2learn_maml_per_s": 44.0, "torch_learn2learn_fomaml_per_s": 65.0}
GOAL_RATIO = 100.0  # memjax over the PyTorch MAML, second order, sinusoid


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--settings", default="sinusoid,omniglot", help="sinusoid,omniglot")
  p.add_argument("--algorithms", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians reported)")
  p.add_argument("--seconds", type=float, default=1.0, help="least seconds per method per round")
  p.add_argument("--steps_per_call", type=int, default=500, help="memjax meta-steps per dispatch")
  p.add_argument("--omniglot_tasks", type=int, default=32, help="tasks per Omniglot meta-step")
  p.add_argument("--omniglot_filters", type=int, default=64, help="conv filters (paper: 64)")
  p.add_argument("--peer", choices=("torch", "none"), default="torch")
  p.add_argument("--torch_threads", default="auto", help="auto (probe) or a thread count")
  p.add_argument(
    "--xla_options",
    choices=("default", "memjax", "xla"),
    default="default",
    help="compile options of memjax's steps: the library's default for meta-learning, "
    "memjax.train's CPU options, or XLA's own",
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--small", action="store_true", help="smoke mode: tiny sizes, short rounds")
  args = p.parse_args(argv)
  if args.small:
    args.rounds, args.seconds, args.steps_per_call = 2, 0.05, 20
    args.omniglot_tasks, args.omniglot_filters = 2, 8
  args.settings = [s for s in args.settings.split(",") if s]
  args.algorithms = [a for a in args.algorithms.split(",") if a]
  for name in args.algorithms:
    if name not in ALL:
      p.error(f"unknown algorithm {name!r}; choose from {ALL}")
  return args


# ----------------------------------------------------------------------------- memjax


def sinusoid_problem():
  """(apply_fn, params, sample_tasks(key, context), loss kind) of the sinusoid setting."""
  import flax.linen as nn  # noqa: PLC0415
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from memjax.data import sinusoid  # noqa: PLC0415

  class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(40, name="layers_0")(x))
      x = nn.relu(nn.Dense(40, name="layers_1")(x))
      return nn.Dense(1, name="head")(x)

  model = Mlp()
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
  sample = lambda key, context: sinusoid.sample_tasks(key, 25, 10, 10)
  return (lambda p, x: model.apply({"params": p}, x)), params, sample, "mse"


class _ConvNet:
  """Built lazily (flax imported on use): MAML's Omniglot net."""

  @staticmethod
  def make(num_classes: int, filters: int):
    import flax.linen as nn  # noqa: PLC0415

    class ConvNet(nn.Module):
      @nn.compact
      def __call__(self, x):
        for i in range(4):
          # torch's padding (1 on each side), so the peer check compares the same net
          x = nn.Conv(filters, (3, 3), 2, padding=((1, 1), (1, 1)), name=f"conv_{i}")(x)
          x = nn.relu(nn.BatchNorm(use_running_average=False, name=f"norm_{i}")(x))
        return nn.Dense(num_classes, name="head")(x.reshape(x.shape[0], -1))

    return ConvNet()


def omniglot_images(seed: int) -> tuple[np.ndarray, str]:
  """[C, 20, 28, 28] images: the minimal splits if found, else random (speed only)."""
  try:
    from memjax.data import omniglot  # noqa: PLC0415

    return omniglot.load(allow_download=False).images, "omniglot zips"
  except Exception as e:  # noqa: BLE001 - any missing-data error: random images
    why = type(e).__name__
    return np.random.default_rng(seed).random((100, 20, 28, 28), np.float32), f"random ({why})"


def omniglot_problem(args, images):
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from memjax.data.omniglot import sample_episodes  # noqa: PLC0415

  model = _ConvNet.make(5, args.omniglot_filters)
  params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["params"]

  def sample(key, context):
    return sample_episodes(
      key,
      context["images"],
      num_tasks=args.omniglot_tasks,
      num_ways=5,
      num_shots=1,
      num_queries=15,
    )

  apply_fn = lambda p, x: model.apply({"params": p}, x, mutable=["batch_stats"])[0]
  return apply_fn, params, sample, "cross_entropy"


def memjax_methods(args, setting, algorithm, problem, context):
  """{'memjax': fn() -> meta-steps done, 'jax_loop': ...} (each blocks until done)."""
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  from memjax import meta, train  # noqa: PLC0415

  apply_fn, params, sample, loss = problem
  loss_fn = meta.mse if loss == "mse" else meta.cross_entropy
  kwargs = {"inner_lr": 0.01 if setting == "sinusoid" else 0.4}
  if setting == "omniglot":
    # CPU: a vmap over per-task kernels is a grouped convolution, and XLA's weight-gradient
    # convolution inside a loop (lax.map, scan) is ~20x slower: one task at a time, unrolled.
    kwargs.update(tasks_per_vmap=1, unroll_tasks=True, unroll_inner=True)
  if algorithm == "anil":
    kwargs["head"] = "head"
  learner = meta.make_learner(algorithm, apply_fn, loss_fn, **kwargs)
  opt = optax.adam(1e-3)
  per_call = args.steps_per_call if setting == "sinusoid" else 1
  out, compile_s = {}, {}
  for name, n in (("memjax", per_call), ("jax_loop", 1)):
    if name == "jax_loop" and (setting != "sinusoid" or algorithm not in PEER_ALGORITHMS):
      continue
    xla_options = {"default": None, "memjax": train.compiler_options(), "xla": {}}[args.xla_options]
    steps = meta.make_meta_train_steps(
      learner, opt, sample, steps_per_call=n, xla_options=xla_options
    )
    holder = [meta.create_state(learner, params, opt, jax.random.key(args.seed))]

    def run(steps=steps, holder=holder, n=n):
      holder[0], metrics = steps(holder[0], None, context)
      jax.block_until_ready(metrics)
      return n

    start = time.perf_counter()
    run()  # compile
    compile_s[name] = round(time.perf_counter() - start, 1)
    out[name] = run
  return out, learner, compile_s


# ----------------------------------------------------------------------------- timing


def per_second(fn, seconds: float) -> float:
  """Meta-steps per second of ``fn`` (returning the steps it did), run >= ``seconds``."""
  done, start = 0, time.perf_counter()
  while True:
    done += fn()
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
      return done / elapsed


def choose_torch_threads(args, fn) -> tuple[int, dict[int, float]]:
  """The thread count at which ``fn`` runs fastest (probed: 1, 2, 4, ... up to the cores)."""
  torch = import_torch()
  if args.torch_threads != "auto":
    torch.set_num_threads(int(args.torch_threads))
    return int(args.torch_threads), {}
  counts, n = [], 1
  while n <= (os.cpu_count() or 1):
    counts.append(n)
    n *= 2
  speeds = {}
  for n in counts:
    torch.set_num_threads(n)
    fn()
    speeds[n] = round(per_second(fn, args.seconds), 2)
  best = max(speeds, key=speeds.get)
  torch.set_num_threads(best)
  return best, speeds


def measure(methods: dict, rounds: int, seconds: float) -> tuple[dict, list[dict]]:
  """Interleaved rounds: {name: median per-s}, and each round's {name: per-s}."""
  per_round = []
  for _ in range(rounds):
    per_round.append({name: per_second(fn, seconds) for name, fn in methods.items()})
  medians = {n: statistics.median(r[n] for r in per_round) for n in methods}
  return medians, per_round


def run(args) -> list[dict]:
  import jax.numpy as jnp  # noqa: PLC0415

  torch = import_torch() if args.peer == "torch" else None
  env = _common.environment(_REMOVED)
  env["torch"] = None if torch is None else torch.__version__
  _common.emit({"figure": "environment", **env})
  if args.peer == "torch" and torch is None:
    _common.emit(
      {
        "figure": "skipped",
        "method": "torch",
        "why": "torch not installed (pip install -e '.[bench]')",
      }
    )
  records = []
  for setting in args.settings:
    images, source = (None, None)
    context = {}
    if setting == "omniglot":
      images, source = omniglot_images(args.seed)
      context = {"images": jnp.asarray(images)}
      problem = omniglot_problem(args, images)
    elif setting == "sinusoid":
      problem = sinusoid_problem()
    else:
      raise SystemExit(f"unknown setting {setting!r}: sinusoid or omniglot")
    per_s_by_algorithm = {}
    algorithms = [a for a in args.algorithms if setting == "sinusoid" or a in PEER_ALGORITHMS]
    for algorithm in algorithms:
      methods, learner, compile_s = memjax_methods(args, setting, algorithm, problem, context)
      threads, probe = None, {}
      if torch is not None and algorithm in PEER_ALGORITHMS:
        peer, peer_params, peer_loss, _ = torch_peer(
          setting, algorithm, args, None if images is None else torch.tensor(images)
        )
        err, scale = check_peer(
          setting, learner, problem[1], peer_params, peer_loss, problem, context, args.seed
        )
        _common.emit(
          {
            "figure": "peer_check",
            "setting": setting,
            "algorithm": algorithm,
            "max_abs_meta_gradient_diff": err,
            "max_abs_meta_gradient": scale,
          }
        )
        if not err <= 1e-8 * scale + 1e-10:
          raise SystemExit(
            f"the torch peer's {algorithm} meta-gradient differs from memjax's "
            f"by {err} (scale {scale}): not the same computation"
          )
        for _ in range(3):  # warm-up (allocations, torch.func's first traces)
          peer()
        threads, probe = choose_torch_threads(args, peer)
        methods["torch"] = peer
      medians, rounds = measure(methods, args.rounds, args.seconds)
      per_s_by_algorithm[algorithm] = medians["memjax"]
      rec = {
        "figure": "meta_iterations_per_s",
        "setting": setting,
        "algorithm": algorithm,
        **{name: round(v, 2) for name, v in medians.items()},
        "first_call_s": compile_s,
        "torch_threads": threads,
        "torch_thread_probe": probe,
        "ratio_to_torch": (
          round(statistics.median(r["memjax"] / r["torch"] for r in rounds), 2)
          if "torch" in medians
          else None
        ),
        "ratio_jax_loop_to_torch": (
          round(statistics.median(r["jax_loop"] / r["torch"] for r in rounds), 2)
          if "torch" in medians and "jax_loop" in medians
          else None
        ),
        "steps_per_call": args.steps_per_call if setting == "sinusoid" else 1,
        "tasks_per_step": 25 if setting == "sinusoid" else args.omniglot_tasks,
        "data": source,
        "rounds": args.rounds,
        "load": _common.load(),
      }
      if setting == "sinusoid" and algorithm in PEER_ALGORITHMS:
        reported = REPORTED[f"torch_learn2learn_{algorithm}_per_s"]
        rec["reported_learn2learn_per_s"] = reported
        rec["ratio_to_reported_learn2learn"] = round(medians["memjax"] / reported, 1)
        if algorithm == "maml" and rec["ratio_to_torch"] is not None:
          rec["goal_ratio_to_torch"] = GOAL_RATIO
          rec["goal_met"] = rec["ratio_to_torch"] >= GOAL_RATIO
      _common.emit(rec)
      records.append(rec)
    if "maml" in per_s_by_algorithm and "fomaml" in per_s_by_algorithm:
      second = [r for r in records if r["setting"] == setting and r["algorithm"] == "maml"][0]
      first = [r for r in records if r["setting"] == setting and r["algorithm"] == "fomaml"][0]
      rec = {"figure": "second_vs_first_order_cost", "setting": setting}
      for name in ("memjax", "jax_loop", "torch"):
        if name in second and name in first:
          rec[name] = round(first[name] / second[name], 2)  # time of MAML / time of FOMAML
      _common.emit(rec)
      records.append(rec)
  return records


def main(argv=None) -> None:
  run(parse_args(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
  main()
