"""The ``deskpilot`` command: the callback builds settings once and hands them to every command."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from deskpilot import __version__
from deskpilot.cli import (
    audit_cmds,
    data_cmds,
    demo,
    eval_cmds,
    keys_cmds,
    models_cmds,
    predict_cmds,
    rollout_cmds,
    serve_cmds,
    snapshot_cmds,
    train_cmds,
)
from deskpilot.cli.common import EXIT_INTERNAL, EXIT_USAGE, AppState, exit_code_for
from deskpilot.config import Settings
from deskpilot.errors import DeskPilotError

app = typer.Typer(
    name="deskpilot",
    help="DeskPilot: support-ticket triage with calibrated confidence and safe auto-routing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("validate")(data_cmds.validate)
app.command("redact")(data_cmds.redact)
app.command("train")(train_cmds.train)
app.command("evaluate")(eval_cmds.evaluate_command)
app.command("gate")(eval_cmds.gate_command)
app.command("predict")(predict_cmds.predict)
app.command("demo")(demo.demo)
app.add_typer(snapshot_cmds.app, name="snapshot")
app.add_typer(models_cmds.app, name="models")
app.add_typer(keys_cmds.app, name="keys")
app.command("serve")(serve_cmds.serve)
app.add_typer(serve_cmds.store_app, name="store")
app.add_typer(audit_cmds.app, name="audit")
app.command("promote")(rollout_cmds.promote)
app.command("rollback")(rollout_cmds.rollback)
app.add_typer(rollout_cmds.app, name="rollout")


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
    is on the Python side (non-daemon threads, ``atexit`` hooks such as logging and MLflow, flushed
    streams), so that runs first, then ``os._exit`` ends the process with the command's own status.
    """
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
