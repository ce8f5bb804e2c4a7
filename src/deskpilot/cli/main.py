"""The ``deskpilot`` command: the callback builds settings once and hands them to every command."""

from __future__ import annotations

import atexit
import contextlib
import difflib
import importlib
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from typer import _click as click  # the click that typer (pinned) vendors and its groups are built on
from typer.core import TyperGroup
from typer.main import get_command, get_group

from deskpilot import __version__
from deskpilot.cli.common import EXIT_INTERNAL, EXIT_USAGE, AppState, exit_code_for
from deskpilot.config import Settings
from deskpilot.errors import DeskPilotError

#: Every command, in the order ``--help`` lists them: name -> (module, attribute). A command's module, and
#: what it imports (pandas, scikit-learn, MLflow, SQLAlchemy...), loads only when that command runs, so a
#: quick command does not pay for the heavy ones (``deskpilot --help`` loads them all, for the summaries).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("deskpilot.cli.data_cmds", "validate"),
    "redact": ("deskpilot.cli.data_cmds", "redact"),
    "data": ("deskpilot.cli.label_cmds", "app"),
    "train": ("deskpilot.cli.train_cmds", "train"),
    "evaluate": ("deskpilot.cli.eval_cmds", "evaluate_command"),
    "gate": ("deskpilot.cli.eval_cmds", "gate_command"),
    "predict": ("deskpilot.cli.predict_cmds", "predict"),
    "demo": ("deskpilot.cli.demo", "app"),
    "serve": ("deskpilot.cli.serve_cmds", "serve"),
    "console": ("deskpilot.cli.serve_cmds", "console"),
    "promote": ("deskpilot.cli.rollout_cmds", "promote"),
    "rollback": ("deskpilot.cli.rollout_cmds", "rollback"),
    "snapshot": ("deskpilot.cli.snapshot_cmds", "app"),
    "models": ("deskpilot.cli.models_cmds", "app"),
    "keys": ("deskpilot.cli.keys_cmds", "app"),
    "store": ("deskpilot.cli.store_cmds", "app"),
    "audit": ("deskpilot.cli.audit_cmds", "app"),
    "rollout": ("deskpilot.cli.rollout_cmds", "app"),
    "monitor": ("deskpilot.cli.monitor_cmds", "monitor"),
    "feedback": ("deskpilot.cli.feedback_cmds", "app"),
    "retrain": ("deskpilot.cli.feedback_cmds", "retrain"),
    "kb": ("deskpilot.cli.kb_cmds", "app"),
}


class LazyCommands(TyperGroup):
    """The root group: knows every command's name, imports a command's module when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Typer suggests close names from the loaded commands only; suggest from all of them."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as error:
            matches = difflib.get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches and "Did you mean" not in error.message:
                error.message = f"{error.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise


def load_command(name: str) -> click.Command:
    """Build the click command for ``name`` from its module (a Typer sub-app or a command function)."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = get_group(target)  # a group even when it has a single subcommand
    else:
        holder = typer.Typer()
        holder.command(name)(target)
        command = get_command(holder)
    command.name = name
    return command


app = typer.Typer(
    name="deskpilot",
    help="DeskPilot: support-ticket triage with calibrated confidence and safe auto-routing.",
    cls=LazyCommands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deskpilot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option("--home", help="State folder (env DESKPILOT_HOME; default .deskpilot).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build the settings once; every command reads them from the context."""
    try:
        settings = Settings() if home is None else Settings(home=home)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid DESKPILOT_* settings: {problems}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    quiet_third_party_logging()
    show_progress_logs()
    ctx.obj = AppState(settings=settings)


def quiet_third_party_logging() -> None:
    """MLflow narrates database migrations and draws progress bars on stderr; the CLI has its own output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def show_progress_logs() -> None:
    """Long steps inside the library (fine-tuning epochs) report through logging; show them on stderr."""
    logger = logging.getLogger("deskpilot")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  · %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # a library's root handler (set up during training) must not print it twice


def run() -> None:
    """Console entry point: no traceback reaches the user unless DESKPILOT_DEBUG asks for one.

    Typer handles usage errors itself (exit 2); commands turn DeskPilot's errors into exit codes; what is
    left here is a safety net for errors raised outside a command and for bugs.
    """
    try:
        app()
    except SystemExit as exc:
        _exit(_exit_status(exc.code))
    except DeskPilotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        _exit(exit_code_for(exc))
    except Exception as exc:
        if os.environ.get("DESKPILOT_DEBUG"):
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (this is a bug in DeskPilot)", err=True)
        _exit(EXIT_INTERNAL)
    _exit(0)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    typer.echo(str(code), err=True)
    return 1


def _exit(status: int) -> NoReturn:
    """Finish the Python side of shutdown, then leave without the native one.

    The interpreter's own teardown destroys C++ globals while Arrow's (and torch's) worker threads may still
    exist, which now and then aborts a finished command with SIGABRT ("terminate called without an active
    exception", apache/arrow#34314): the command's exit code is lost. Everything a command needs at exit
    is on the Python side, so that runs first, in the interpreter's own order: ``threading._shutdown`` (it
    tells idle thread pools such as MLflow's download workers to stop, then joins every non-daemon thread),
    the ``atexit`` hooks (logging, MLflow), flushed streams. Then ``os._exit`` ends the process with the
    command's own status.
    """
    shutdown_threads = getattr(threading, "_shutdown", None)
    if callable(shutdown_threads):
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
