"""The triage service and what guards it (tenant keys, rate limits); framework-free, below the API."""
