"""The HTTP API: ``create_app(settings)`` builds the FastAPI app around a TriageService."""
