"""The console's refusals as HTML pages (the API answers JSON; a browser should not get a JSON body).

Routes raise :class:`ConsoleError` for a 4xx page; :class:`SignInRequired` sends the browser to the sign-in
page (an htmx request gets an ``HX-Redirect`` instead, so that a fragment never swaps a whole page in). The
API's error handlers call :func:`page_for` for every error on a ``/console`` path, so a
:class:`~deskpilot.errors.DeskPilotError` raised below a console route keeps its status and message but is
rendered as a page.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response

from deskpilot.errors import DeskPilotError

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
logger = logging.getLogger(__name__)


class ConsoleError(Exception):
    """A refusal shown to the console user as a page with ``status_code``."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


# Why the browser was sent to the sign-in page: the URL carries a code, the page shows its fixed message
# (never text from the URL, which anyone can craft into a link).
SIGN_IN_REASONS = {
    "ended": "Your session has ended; sign in again.",
    "revoked": "The key this session used is no longer valid.",
    "signed-out": "You have signed out.",
}


class SignInRequired(Exception):  # noqa: N818 - a redirect, not an error
    """No valid session: sign in first (``why``, a key of SIGN_IN_REASONS, is shown on the sign-in page)."""

    def __init__(self, next_path: str, why: str = "") -> None:
        super().__init__(SIGN_IN_REASONS.get(why, "sign in"))
        self.next_path = next_path
        self.why = why if why in SIGN_IN_REASONS else ""


def is_console(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def sign_in_redirect(request: Request, error: SignInRequired) -> Response:
    target = f"{SIGN_IN}?next={quote(error.next_path, safe='/')}"
    if error.why:
        target += f"&why={quote(error.why)}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def page_for(request: Request, exc: Exception) -> Response:  # noqa: PLR0911 - one answer per kind
    """The HTML answer to an error raised while serving a console page."""
    from deskpilot.console.rendering import render_error

    if isinstance(exc, SignInRequired):
        return sign_in_redirect(request, exc)
    if isinstance(exc, ConsoleError):
        return render_error(request, exc.status_code, exc.title, exc.message)
    if isinstance(exc, DeskPilotError):
        if exc.http_status < 500:
            return render_error(request, exc.http_status, "That did not work", exc.message)
        # a store's or model's failure may name the database: the page gets a plain message, the log the rest
        logger.warning("console request failed: %s", exc.message)
        if exc.http_status == 503:
            return render_error(
                request, 503, "Not possible right now", "The service cannot do this now; try again shortly."
            )
        return render_error(request, 500, "Something went wrong", "Internal error; it has been logged.")
    if isinstance(exc, RequestValidationError):  # a query parameter of the wrong type
        return render_error(request, 400, "Bad request", "The address has a value this page cannot use.")
    status = int(getattr(exc, "status_code", 500))
    if status == 404:
        return render_error(request, 404, "Not found", "There is no such page.")
    if status == 405:
        return render_error(request, 405, "Not allowed", "This page does not take that kind of request.")
    if 400 <= status < 500:
        return render_error(request, status, "Bad request", "The request could not be handled.")
    logger.error("console error: %s", type(exc).__name__, exc_info=exc)
    return render_error(request, 500, "Something went wrong", "Internal error; it has been logged.")
