"""Server-side pages: one Jinja2 environment (autoescaped, strict), the layout, and the security headers.

Every page and fragment goes through :func:`render` or :func:`render_fragment`, which add the headers that
keep a page from running anyone else's code: a Content-Security-Policy allowing scripts from this origin
only (no inline scripts, no ``eval``), no framing, no referrer, and no caching of pages that hold tickets.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from deskpilot import __version__
from deskpilot.console.auth import CSRF_FIELD, ConsoleUser

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/console/static"
HTMX_FILE = "vendor/htmx/htmx.min.js"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deskpilot.console", "templates"),
        autoescape=True,  # every template, whatever its name: ticket text is user input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = percent
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.globals["static_url"] = static_url
    env.globals["version"] = __version__
    return env


def percent(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def when(value: datetime | None) -> str:
    """An instant as UTC text, to the second."""
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, roughly (``3 min ago``)."""
    if value is None:
        return "–"
    seconds = max(0.0, ((now or datetime.now(UTC)) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


@functools.cache
def _fingerprint(name: str) -> str:
    path = STATIC_DIR / name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return __version__


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so a browser never keeps a stale copy."""
    return f"{STATIC_URL}/{name}?v={_fingerprint(name)}"


def htmx_enabled() -> bool:
    """Whether the vendored htmx was installed (``make console-assets``); pages work without it."""
    return (STATIC_DIR / HTMX_FILE).is_file()


def _context(
    request: Request, user: ConsoleUser | None, section: str, context: dict[str, Any]
) -> dict[str, Any]:
    return {
        "request_path": request.url.path,
        "user": user,
        "csrf_token": user.csrf_token if user is not None else "",
        "csrf_field": CSRF_FIELD,
        "section": section,
        "htmx_enabled": htmx_enabled(),
        "htmx_url": static_url(HTMX_FILE),
        "now": datetime.now(UTC),
        **context,
    }


def _response(body: str, status_code: int) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    user: ConsoleUser | None,
    section: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    """A whole page: ``template`` extends ``base.html.j2``."""
    page = _environment().get_template(template).render(_context(request, user, section, context))
    return _response(page, status_code)


def render_fragment(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    user: ConsoleUser | None,
    status_code: int = 200,
) -> HTMLResponse:
    """Part of a page, for an htmx swap: no layout."""
    return render(request, template, context, user=user, status_code=status_code)


def render_error(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    user = getattr(request.state, "console_user", None)
    context = {"title": title, "message": message, "status_code": status_code}
    return render(request, "error.html.j2", context, user=user, status_code=status_code)
