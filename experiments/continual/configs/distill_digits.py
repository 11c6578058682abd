"""Knowledge distillation demo on the digits: a small student from a larger teacher vs the
same student alone, at equal steps (``experiments/continual/distill_demo.py``). The teacher
trains on the whole training split; both students on the same 50 labelled digits.

Settings (student size, its examples, T, alpha) chosen on seeds 100-102, not the reported
seeds: with the whole training split for the students too, or a 16-unit student, the
teacher did not help (KD - alone -1.9 to +0.6 points).

  python -m experiments.continual.main \
      --config=experiments/continual/configs/distill_digits.py \
      --workdir=runs/continual/distill_digits
"""

from experiments.continual.configs import split_digits_class


def get_config(arg=None):
  """The teacher, the student alone and the student with the teacher, 5 seeds."""
  config = split_digits_class.get_config(arg)
  config.study = "distill"
  config.name = "distill_digits"
  config.distill_demo = d = type(config)()
  d.teacher_hidden = (256, 256)  # the teacher MLP
  d.teacher_steps = 2000
  d.student_hidden = (32,)  # the student MLP
  d.student_steps = 1000  # the same for the student alone and with the teacher
  d.student_examples = 50  # labelled digits the students train on (5 per class; 0 = all)
  d.temperature = 4.0  # T of the soft targets
  d.alpha = 0.9  # the soft targets' weight (1 - alpha: the labels')
  d.rounds = 5  # fit rounds (checkpoints, curve points) per run
  return config
