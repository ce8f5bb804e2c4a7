"""The app factory each ``deskpilot serve --workers N`` process imports (uvicorn spawns fresh interpreters).

The parent passes everything through the environment: the ``DESKPILOT_*`` settings (with the home made
absolute and ``DESKPILOT_WORKERS`` set), and ``PROMETHEUS_MULTIPROC_DIR`` for the shared metrics files.
"""

from __future__ import annotations

from fastapi import FastAPI

from deskpilot.api.app import create_app
from deskpilot.config import Settings
from deskpilot.service.observability import configure_json_logging


def create_worker_app() -> FastAPI:
    configure_json_logging()
    return create_app(Settings())
