"""Attention layers over memories."""
