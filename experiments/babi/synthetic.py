"""Moved to ``memjax.data.babi.synthetic``; this alias goes with the trainer rewrite."""

from memjax.data.babi.synthetic import *  # noqa: F403
