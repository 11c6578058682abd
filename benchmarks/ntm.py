"""NTM copy-task training speed, time per scanned step, compile time vs sequence length.

Setting of the most used PyTorch NTM (loudinthecloud/pytorch-ntm): copy task, lengths
1-20, 8 bits, LSTM controller of 100 units, memory 128 x 20, one read and one write head,
RMSProp; it trains about 20 sequences/s at batch 1 on this machine (the reference).
That is the algorithmic study's copy setting (``experiments/algorithmic/configs/copy_ntm.py``),
and the training step timed here is the one the study trains with
(``memjax.train.recipes.sequence_train_steps``; a benchmark imports memjax only; the
settings are the constants below).

  python benchmarks/ntm.py            # prints one JSON line per figure

Figures:
  train_seq_per_s  training sequences/s (the batch is generated inside the jitted step;
                   ``steps_per_call`` optimiser steps run in one ``lax.scan``), with the
                   ratio to the 20 seq/s reference;
  step_us          time per scanned cell step (forward, and forward + backward);
  compile_s        compile time of a training step at T = 20 vs T = 120 (a scan: must not grow).

Each training step computes on the batch cut to the shortest of ``--length_buckets`` static
lengths (11, 21, 31, 41) that holds its last scored step: the same loss and update as the
padded batch, but a batch of short sequences costs less, as pytorch-ntm's one sequence at
its own length does (lengths stay uniform in 1-20). At batch 32 the longest of 32 lengths
is almost always in the last bucket, so only batch 1 gains.

Measured 2026-11-24, 2-core CPU shared with other jobs, under
``flock /tmp/memjax_cpu.lock python benchmarks/ntm.py`` (the lock keeps out only the jobs
that take it: runs 2 and 3 had another unlocked process on one core throughout; it
ended before run 5, so part of run 5's gain over run 2 is the quieter machine):

  figure (seq/s; x 20 seq/s)        before e28961a  run 1 ced3456   run 2 6238aae   run 5 b393830
  batch 1, 1 step per call          205 (10.3x)     284 (14.2x)     318 (15.9x)     405 (20.3x)
  batch 1, 10 steps per call        153 (7.6x)      417 (20.8x)     394 (19.7x)     455 (22.8x)
  batch 32, 10 steps per call       243 (12.1x)     518 (25.9x)     348 (17.4x)     608 (30.4x)
  batch 32, 4 length groups         -               -               601 (30.1x)     1204 (60.2x)
  step_us batch 1 fwd / fwd+bwd     40.5 / 165.7    18.5 / 80.1     19.9 / 94.0     18.2 / 79.4
  step_us batch 32 fwd / fwd+bwd    675 / 3532      333 / 1498      395 / 1725      284 / 1275
  compile_s T=20 / T=120            12.4 / 11.9     4.0 / 3.8       6.6 / 7.0       3.5 / 3.7
  load average at start             0.4 (5.4 later) 3.1             3.0             1.9

Run 3 (b393830, load average 4.6-5.7 throughout) gave 312 / 270 / 329 / 910 seq/s and
354 / 1679 us; run 4 (b393830, the other job ending) 306 / 472 / 601 / 1197 seq/s and
277 / 1260 us: a loaded machine moves these figures by up to 2x, so compare like with like.
Interleaved A/B under the lock (batch 32, 10 steps per call, one bucket): YNNPACK fusions
off 472 and 450 seq/s, XLA's defaults 374 and 378; 1 vs 4 length buckets at batch 32: 459
/ 472 vs 481 / 489 seq/s (the ``lax.switch`` costs nothing measurable).

The gains: length buckets (batch 1), cosine addressing that divides the dot products by
the norms instead of normalising the memory, ``NTMCell(remat_memory=True)``, which
recomputes the memory step in the backward pass instead of storing its [N, W]-sized
intermediates at every step, and (run 5) jitting the training step with
``memjax.train.compile.compiler_options`` (YNNPACK fusions off, ~15-25% at batch 32). The
last training figure draws each batch of 32 from one of 4 length ranges
(``memjax.data.algorithmic.length_groups``, the study's ``config.length_groups``; opt-in:
each sequence's length is still uniform in 1-20, but a batch's lengths are alike).

Where the batch-32 step goes (profiled 2026-11-24): the optimised HLO of one scanned step
has ~240 forward and ~280 backward instructions (mostly small fusions), no gathers,
scatters, f64 or large copies (the only [T, B, N, W] traffic is the remat residual: one
memory per step); the time is spread over these small elementwise / reduction fusions over
[32, 128] and [32, 128, 20] arrays. The memory step (addressing, write, read) alone is ~60%
of the cell's forward + backward (~820 of ~1300 us); content addressing is the largest part
of the addressing in a microbenchmark of the pieces. Rewriting the batched dots of
content / read / write as broadcast multiply-sums, the circular shift as slices of a padded
array, sharpening as exp(g log w), or turning off XLA's intra-op threading changed nothing
measurable (within +-10% noise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax

# The repository root goes on sys.path (as memn2n.py does): memjax comes from the
# checkout this benchmark sits in, whatever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from memjax import train  # noqa: E402
from memjax.data import algorithmic  # noqa: E402
from memjax.data.buckets import even_boundaries  # noqa: E402
from memjax.models.ntm import ntm_model  # noqa: E402
from memjax.train import recipes  # noqa: E402
from memjax.train.compile import compiler_options  # noqa: E402

REFERENCE_SEQ_PER_S = 20.0  # pytorch-ntm, batch 1, copy lengths 1-20, on this machine

# The study's settings, as experiments/algorithmic/configs/copy_ntm.py.
TASK = "copy"  # config.task.name
TASK_SETTINGS = {"min_length": 1, "max_length": 20, "num_bits": 8}  # config.task
CELL = {  # config.model (name 'ntm'): the NTMCell's attributes
  "num_slots": 128,
  "slot_size": 20,
  "num_read_heads": 1,
  "num_write_heads": 1,
  "controller": "lstm",
  "controller_size": 100,
  "shift_range": 1,
  "clip_value": 20.0,
}
LEARNING_RATE = 1e-4  # config.optimizer: RMSProp ...
RMSPROP_DECAY = 0.95
RMSPROP_MOMENTUM = 0.9
RMSPROP_EPS = 1e-8
GRAD_CLIP_NORM = 10.0  # ... after clipping the global gradient norm
SEED = 0  # config.seed
LENGTH_BUCKETS = 4  # config.length_buckets
# config.compute_dtype '' (float32) and config.num_devices 1 (no mesh): the defaults here.


def _emit(**record) -> None:
  print(json.dumps(record), flush=True)


def _best_time(fn, repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


# ----------------------------------------------------------------------------- the study's step
# The study's optimizer and state (experiments/algorithmic/train.py: make_optimizer,
# init_state); its training steps are the library's (memjax.train.recipes).


def make_optimizer() -> optax.GradientTransformation:
  """Gradient clipping by global norm, then RMSProp with momentum."""
  rmsprop = optax.rmsprop(
    LEARNING_RATE, decay=RMSPROP_DECAY, momentum=RMSPROP_MOMENTUM, eps=RMSPROP_EPS
  )
  return optax.chain(optax.clip_by_global_norm(GRAD_CLIP_NORM), rmsprop)


def init_state(model, optimizer, input_size: int) -> train.TrainState:
  """The study's initial state, without its ``extra`` (the step at convergence), which
  the training step carries along but never reads."""
  init_key, data_key = jax.random.split(jax.random.key(SEED))
  params = model.init(init_key, jnp.zeros((1, 3, input_size), jnp.float32))["params"]
  return train.TrainState.create(params, optimizer, data_key)


def bench_training(
  batch_size: int,
  steps_per_call: int,
  calls: int,
  repeats: int,
  length_buckets: int,
  length_groups: int = 0,
) -> None:
  task = algorithmic.make_task(TASK, **TASK_SETTINGS)
  train_batch = task.train_batch
  if length_groups:
    train_batch = algorithmic.length_groups(TASK, length_groups, **TASK_SETTINGS)
  model = ntm_model(task.output_size, **CELL)
  optimizer = make_optimizer()
  state = init_state(model, optimizer, task.input_size)
  steps = recipes.sequence_train_steps(
    model, optimizer, train_batch, batch_size, steps_per_call, length_buckets
  )
  total = jax.eval_shape(lambda: task.train_batch(jax.random.key(0), 1)).mask.shape[1]
  t0 = time.perf_counter()
  state, _ = jax.block_until_ready(steps(state))
  compile_s = time.perf_counter() - t0
  holder = [state]

  def run():
    for _ in range(calls):
      holder[0], metrics = steps(holder[0])  # the state is donated: pass it on
    return metrics

  seconds = _best_time(run, repeats)
  seq_per_s = batch_size * steps_per_call * calls / seconds
  _emit(
    figure="train_seq_per_s",
    task=f"copy lengths 1-20 (padded to T={total})",
    length_buckets=even_boundaries(total, length_buckets),
    length_groups=length_groups,
    batch_size=batch_size,
    steps_per_call=steps_per_call,
    seq_per_s=round(seq_per_s, 1),
    ms_per_step=round(1e3 * seconds / (steps_per_call * calls), 3),
    reference_seq_per_s=REFERENCE_SEQ_PER_S,
    ratio_to_reference=round(seq_per_s / REFERENCE_SEQ_PER_S, 2),
    first_call_s=round(compile_s, 2),
  )


def _loss_fn(model, length: int, batch_size: int):
  def loss(params, inputs):
    logits = model.apply({"params": params}, inputs)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.zeros_like(logits)))

  return loss


def bench_step_time(batch_size: int, length: int, repeats: int) -> None:
  model = ntm_model(TASK_SETTINGS["num_bits"], **CELL)  # the study's model
  inputs = jax.random.bernoulli(jax.random.key(0), 0.5, (batch_size, length, 9))
  inputs = inputs.astype(jnp.float32)
  params = jax.jit(model.init)(jax.random.key(1), inputs)["params"]
  options = compiler_options()  # as the training step (memjax.train.make_train_steps)
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x), compiler_options=options)
  grad = jax.jit(jax.grad(_loss_fn(model, length, batch_size)), compiler_options=options)
  jax.block_until_ready(forward(params, inputs))
  jax.block_until_ready(grad(params, inputs))
  fwd = _best_time(lambda: forward(params, inputs), repeats)
  both = _best_time(lambda: grad(params, inputs), repeats)
  _emit(
    figure="step_us",
    batch_size=batch_size,
    sequence_length=length,
    forward_us_per_step=round(1e6 * fwd / length, 2),
    forward_backward_us_per_step=round(1e6 * both / length, 2),
  )


def bench_compile(lengths: tuple[int, ...]) -> None:
  model = ntm_model(TASK_SETTINGS["num_bits"], **CELL)
  params = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 2, 9)))["params"]
  out = {}
  for length in lengths:
    inputs = jnp.zeros((1, length, 9))
    fn = jax.jit(
      jax.value_and_grad(_loss_fn(model, length, 1)), compiler_options=compiler_options()
    )
    t0 = time.perf_counter()
    lowered = fn.lower(params, inputs)
    compiled = lowered.compile()
    out[str(length)] = {
      "compile_s": round(time.perf_counter() - t0, 3),
      "hlo_chars": len(lowered.as_text()),
    }
    del compiled
  first, last = out[str(lengths[0])], out[str(lengths[-1])]
  _emit(
    figure="compile_s",
    what="value_and_grad of nn.RNN(NTMCell), batch 1",
    by_length=out,
    ratio_last_to_first=round(last["compile_s"] / first["compile_s"], 2),
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=10, help="jitted calls per timing")
  parser.add_argument("--repeats", type=int, default=3, help="timings (best is kept)")
  parser.add_argument("--steps_per_call", type=int, default=10, help="steps per jitted call")
  parser.add_argument(
    "--length_buckets",
    type=int,
    default=LENGTH_BUCKETS,
    help="static lengths a batch is cut to (1: always T=41)",
  )
  args = parser.parse_args()
  _emit(
    figure="device",
    backend=jax.default_backend(),
    devices=len(jax.devices()),
    device_kind=jax.devices()[0].device_kind,
    cpu_count=os.cpu_count(),
    load_average=[round(x, 2) for x in os.getloadavg()],
  )
  buckets = args.length_buckets
  bench_training(1, 1, args.calls * args.steps_per_call, args.repeats, buckets)
  bench_training(1, args.steps_per_call, args.calls, args.repeats, buckets)
  bench_training(32, args.steps_per_call, max(1, args.calls // 4), args.repeats, buckets)
  bench_training(32, args.steps_per_call, max(1, args.calls // 4), args.repeats, buckets, 4)
  bench_step_time(1, 41, args.repeats)
  bench_step_time(32, 41, args.repeats)
  bench_compile((20, 120))


if __name__ == "__main__":
  main()
