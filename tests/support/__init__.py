"""Test doubles shared by several suites: real servers that stand in for external systems."""
