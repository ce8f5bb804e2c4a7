"""Thin routes: validate, call the service, map to a response schema."""
