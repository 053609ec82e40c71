"""Procedural training videos, SAM 2 prompt simulation and J&F metrics (pure numpy)."""
