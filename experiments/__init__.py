"""Experiment binaries: one folder per study."""
