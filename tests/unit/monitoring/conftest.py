"""One synthetic desk (world, model, reference profile) shared by the monitoring tests; building it fits a
model, so it is built once per session."""

from __future__ import annotations

import pytest

from tests.unit.monitoring.synthetic import Desk, build_desk


@pytest.fixture(scope="session")
def desk() -> Desk:
    return build_desk(seed=0)
