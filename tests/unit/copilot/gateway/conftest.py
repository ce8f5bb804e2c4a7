"""Fixtures for the gateway's unit tests."""

from __future__ import annotations

import pytest

from tests.unit.copilot.gateway.clocks import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
