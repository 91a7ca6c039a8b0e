"""Postfach: a complete mail hosting server."""

__version__ = "0.1.0"
