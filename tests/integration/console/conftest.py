"""Fixtures of the console suites: one home (two versions, a knowledge index, role keys), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.console.console_fixtures import ConsoleHome, build_console_home


@pytest.fixture(scope="session")
def console_home(tmp_path_factory: pytest.TempPathFactory, encoder_cache: Path) -> ConsoleHome:
    return build_console_home(tmp_path_factory.mktemp("console"), encoder_cache)
