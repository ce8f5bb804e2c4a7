"""Fixtures of the copilot suites: one home with a trained model and a knowledge index, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.copilot.kb_fixtures import CopilotHome, build_copilot_home


@pytest.fixture(scope="session")
def copilot_home(tmp_path_factory: pytest.TempPathFactory, encoder_cache: Path) -> CopilotHome:
    return build_copilot_home(tmp_path_factory.mktemp("copilot"), encoder_cache)
