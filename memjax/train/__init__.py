"""Training utilities: checkpoints, results, progress, device mesh."""
