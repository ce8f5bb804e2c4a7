"""Drift and quality statistics: pure functions from a reference profile and a window to a :class:`Signal`."""
