"""The model gateway: OpenAI-compatible chat providers behind retries, a breaker, budgets and a cache."""
