"""Evaluation: metrics, selective prediction (coverage at a target precision), slices, significance against
the champion, behavioral suites, gates (a policy file to a pass/fail decision with reasons), and the HTML and
Markdown reports and model cards.
"""
