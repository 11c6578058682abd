"""Knowledge distillation losses: teacher -> student (KD) and to the previous model (LwF).

* :func:`distillation_loss`: ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over
  the batch, optionally over a subset of the classes (the old ones, in LwF). The ``T^2``
  keeps the soft term's gradient on the scale of a hard-label loss as T changes (Hinton et
  al.). KL rather than the soft cross-entropy: they differ by the teacher's entropy, a
  constant for the student, so the gradients agree, and KL is 0 when the student matches.
* :func:`kd_loss`: ``alpha * distillation + (1 - alpha) * cross-entropy(labels)``, the
  mix of soft and hard targets.
* :func:`lwf_loss`: Learning without Forgetting's term: the current model's outputs on the
  old classes (or old tasks' heads) distilled towards those of the model frozen at the end
  of the previous task, on the current task's inputs (Li & Hoiem use T = 2).

All take logits ``[..., C]`` (any leading batch axes) and return a scalar.

References:
  Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network".
  Li, Hoiem 2016, "Learning without Forgetting".
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax


def _masked_log_softmax(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
  """log_softmax over the masked-in classes; masked-out entries are 0 (the callers drop
  them), so no inf or NaN reaches a value or a gradient, even with no class masked in."""
  if mask is None:
    return jax.nn.log_softmax(logits, axis=-1)
  lse = jax.nn.logsumexp(jnp.where(mask, logits, -jnp.inf), axis=-1, keepdims=True)
  return jnp.where(mask, logits - lse, 0.0)


def distillation_loss(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  *,
  temperature: float = 1.0,
  mask: jax.Array | None = None,
) -> jax.Array:
  """[] ``T^2 * mean_batch KL(softmax(t / T) || softmax(s / T))``.

  Args:
    student_logits: [..., C].
    teacher_logits: [..., C] (no gradient flows into it).
    temperature: T > 0.
    mask: [C] bool (or broadcastable to the logits): distil over these classes only
      (both softmaxes renormalised over them); default all.

  Returns:
    The mean over the leading axes of the per-example KL, times T^2.
  """
  chex.assert_equal_shape([student_logits, teacher_logits])
  if float(temperature) <= 0:
    raise ValueError(f"temperature={temperature} must be positive")
  t = float(temperature)
  teacher = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / t
  student = student_logits.astype(jnp.float32) / t
  log_p = _masked_log_softmax(teacher, mask)
  log_q = _masked_log_softmax(student, mask)
  p = jnp.exp(log_p)
  terms = p * (log_p - log_q)
  if mask is not None:
    terms = jnp.where(mask, terms, 0.0)
  return t * t * jnp.mean(jnp.sum(terms, axis=-1))


def kd_loss(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  labels: jax.Array | None = None,
  *,
  temperature: float = 4.0,
  alpha: float = 0.9,
) -> jax.Array:
  """[] Hinton's distillation loss: soft targets mixed with hard labels.

  ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``, each
  averaged over the batch.

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    labels: [B] int the hard labels; may be None only when ``alpha == 1``.
    temperature: T.
    alpha: the soft term's weight in [0, 1].

  Example:
    >>> s, t = jnp.zeros((2, 3)), jnp.array([[1.0, 0, 0], [0, 1.0, 0]])
    >>> float(kd_loss(s, t, jnp.array([0, 1]), temperature=1.0, alpha=0.0))  # log 3
    1.0986...
  """
  if not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"alpha={alpha} must be in [0, 1]")
  soft = distillation_loss(student_logits, teacher_logits, temperature=temperature)
  if alpha == 1.0:
    return soft
  if labels is None:
    raise ValueError(f"alpha={alpha} < 1 mixes in hard targets: pass the labels")
  chex.assert_shape(labels, student_logits.shape[:-1])
  hard = jnp.mean(
    optax.softmax_cross_entropy_with_integer_labels(student_logits.astype(jnp.float32), labels)
  )
  return alpha * soft + (1.0 - alpha) * hard


def lwf_loss(
  logits: jax.Array,
  previous_logits: jax.Array,
  old_classes: jax.Array | None = None,
  *,
  temperature: float = 2.0,
) -> jax.Array:
  """[] Learning without Forgetting: distil the old classes' outputs of the previous model.

  Args:
    logits: [B, C] the model being trained, on the current task's inputs.
    previous_logits: [B, C] the model frozen at the end of the previous task, same inputs.
    old_classes: [C] bool the classes (heads) of the earlier tasks; default all.
    temperature: T (Li & Hoiem: 2).
  """
  return distillation_loss(logits, previous_logits, temperature=temperature, mask=old_classes)


__all__ = ["distillation_loss", "kd_loss", "lwf_loss"]
