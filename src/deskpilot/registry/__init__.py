"""The model registry: an interface, an MLflow implementation, and an in-memory fake for unit tests."""
