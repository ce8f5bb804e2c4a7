"""Watching models in production: reference profiles, windows of logged decisions, drift and quality signals."""
