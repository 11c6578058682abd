"""Minimal setup.py; all metadata lives in setup.cfg."""

import setuptools

setuptools.setup()
