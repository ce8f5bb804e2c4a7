"""Evaluation: metrics, selective prediction (coverage at a target precision), and later gates and reports."""
