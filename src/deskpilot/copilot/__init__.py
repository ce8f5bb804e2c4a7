"""The copilot: grounded reply drafts from retrieved sources, through a model gateway, behind guardrails."""
