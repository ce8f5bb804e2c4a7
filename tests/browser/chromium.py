"""Debian's Chromium for the browser suites: where it is, the flags it needs here, and the skip rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("DESKPILOT_REQUIRE_BROWSER"),
    reason=f"{CHROMIUM} is not installed (set DESKPILOT_REQUIRE_BROWSER=1 to fail instead of skipping)",
)
