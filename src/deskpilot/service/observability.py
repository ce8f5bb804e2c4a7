"""Structured JSON logs and OpenTelemetry tracing, configured by the process that serves, never at import.

Logs go through the standard library (every library we use logs there); this formatter turns each record
into one JSON object with the fields passed in ``extra``. Callers never pass message text or keys.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(
            {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        )
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO, *, stream_path: Path | None = None) -> None:
    """Route DeskPilot's and uvicorn's logs as JSON lines to stderr, or appended to ``stream_path``
    (uvicorn's own access log is off: DeskPilot writes one line per request itself)."""
    handler: logging.Handler = (
        logging.FileHandler(stream_path, encoding="utf-8")
        if stream_path
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter())
    for name in ("deskpilot", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level)
        log.propagate = False


def build_tracer(kind: str) -> tuple[trace.Tracer, SpanExporter | None]:
    """A tracer of its own provider (no global state): ``none``, ``console`` or ``memory`` (for tests)."""
    if kind == "none":
        return trace.NoOpTracer(), None
    exporter: SpanExporter = InMemorySpanExporter() if kind == "memory" else ConsoleSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("deskpilot"), exporter


def span(tracer: trace.Tracer, name: str, **options: Any) -> AbstractContextManager[trace.Span]:
    """A current span, or (tracing off) a shared non-recording one: with tracing off, creating even a no-op
    span per request, batch and model call is measurable on a 2-core server."""
    if isinstance(tracer, trace.NoOpTracer):
        return nullcontext(trace.INVALID_SPAN)
    return tracer.start_as_current_span(name, **options)
