"""Continual learning (replay, EWC, distillation). Not built yet."""
