"""Datasets: TFDS builders and seeded generators."""
