"""How ``deskpilot serve`` runs uvicorn: the connection limits and timeouts of the HTTP edge.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection that trickles
the bytes of a request head (or never sends a byte) is kept open for ever, and with ``limit_concurrency``
such connections would use up the cap for everyone. :class:`HeadTimeoutHttpTools` gives each request head a
deadline (``header_timeout_s``, read from the app's lifespan state, see :data:`HEADER_TIMEOUT_STATE`) and a
size limit (:data:`MAX_HEAD_BYTES`; httptools has none). The body has its own deadline and size limit in
:class:`deskpilot.api.middleware.BodyGuard`. What still needs a reverse proxy:
limits per client address (connections, request rate), TLS, and buffering slow clients' bodies.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deskpilot.config import Settings

HEADER_TIMEOUT_STATE = "deskpilot.header_timeout_s"
DEFAULT_HEADER_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; ours need well under 8 KiB


class HeadTimeoutHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is not complete in time."""

    _head_deadline: asyncio.TimerHandle | None = None
    _head_bytes: int | None = None  # bytes received of the current request head; None: not in a head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_bytes is not None and self._head_bytes > MAX_HEAD_BYTES:  # still no end of head
            self._head_too_slow()

    def on_message_begin(self) -> None:
        """The first byte of a request head (between requests uvicorn's keep-alive timeout applies)."""
        super().on_message_begin()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        timeout = float(self.app_state.get(HEADER_TIMEOUT_STATE, DEFAULT_HEADER_TIMEOUT_S))
        self._head_deadline = self.loop.call_later(timeout, self._head_too_slow)
        self._head_bytes = 0

    def _disarm_head_deadline(self) -> None:
        self._head_bytes = None
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        """No complete head in time, or too large a one: close without an answer (nothing was asked)."""
        self._disarm_head_deadline()
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's keyword options for the settings (besides host, port and workers)."""
    return {
        "log_config": None,
        "access_log": False,
        "loop": "uvloop",
        "http": HeadTimeoutHttpTools,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.limit_concurrency,
    }
