"""The CLI's command table: every command loads, groups stay groups, and starting the CLI stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.core import TyperGroup

from deskpilot.cli.main import COMMANDS, load_command

HEAVY = ("sklearn", "scipy", "mlflow", "sqlalchemy", "alembic", "torch", "onnxruntime", "fastapi", "httpx")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_under_its_own_name(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").strip(), f"{name} has no help text"


def test_sub_apps_are_groups_whatever_their_number_of_subcommands() -> None:
    store = load_command("store")
    assert isinstance(store, TyperGroup)
    assert list(store.commands) == ["migrate", "trace", "purge", "erase", "backup", "restore"]
    snapshot = load_command("snapshot")
    assert isinstance(snapshot, TyperGroup)
    assert {"create", "list", "show", "verify"} <= set(snapshot.commands)


def test_starting_the_cli_imports_no_heavy_library() -> None:
    probe = f"import sys, deskpilot.cli.main; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_exit_keeps_the_status_runs_atexit_hooks_and_stops_idle_thread_pools(tmp_path: Path) -> None:
    marker = tmp_path / "atexit-ran"
    script = f"""
import atexit, concurrent.futures, pathlib
from deskpilot.cli import main
pool = concurrent.futures.ThreadPoolExecutor(2)  # idle non-daemon workers, as MLflow's downloads leave them
pool.submit(sum, [1, 2]).result()
atexit.register(pathlib.Path({str(marker)!r}).write_text, "yes")
print("done", flush=False)
main._exit(5)
"""
    # a hang here (joining the idle workers before telling them to stop) fails by the timeout
    finished = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 5, finished.stderr
    assert finished.stdout == "done\n"
    assert marker.read_text() == "yes"


def test_every_command_module_is_in_the_import_contract_that_keeps_commands_independent() -> None:
    """A new command module must join the independence contract, or it could import another command."""
    import tomllib

    from tests.helpers import REPO_ROOT

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (independent,) = [c for c in contracts if c["type"] == "independence"]
    assert set(independent["modules"]) == {module for module, _ in COMMANDS.values()}
