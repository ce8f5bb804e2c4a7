"""Watching models in production: reference profiles, windows of decisions, drift and quality signals."""
