"""What every CLI command shares: the app state, dataset options, error reporting and JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from deskpilot.config import Settings
from deskpilot.data.contracts import DataContract
from deskpilot.data.pii import CustomPattern, PiiRedactor
from deskpilot.domain import ModelRef
from deskpilot.errors import DeskPilotError, UsageError

if TYPE_CHECKING:
    from deskpilot.registry.mlflow_registry import MlflowRegistry

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


@dataclass(frozen=True)
class AppState:
    """Built once by the CLI callback; commands read settings from here, never from the environment."""

    settings: Settings


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):
        raise RuntimeError("the CLI callback did not run")
    return obj


DataArg = Annotated[Path, typer.Argument(help="Dataset file: .csv, .tsv, .jsonl/.ndjson or .parquet.")]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="Column holding the message text.")]
LabelColumnOpt = Annotated[str, typer.Option("--label-column", help="Column holding the intent label.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
MaxLengthOpt = Annotated[
    int | None,
    typer.Option("--max-text-length", min=1, help="Longest text allowed [default: from settings]."),
]
MinPerClassOpt = Annotated[
    int | None,
    typer.Option("--min-per-class", min=1, help="Fewest examples per label [default: from settings]."),
]
LabelsFileOpt = Annotated[
    Path | None, typer.Option("--labels", help="File listing the allowed labels, one per line.")
]
PiiPatternOpt = Annotated[
    list[str] | None,
    typer.Option("--pii-pattern", help="Extra PII pattern NAME=REGEX, redacted as <NAME>; repeatable."),
]


def build_contract(
    settings: Settings,
    *,
    text_column: str,
    label_column: str | None,
    max_text_length: int | None,
    min_per_class: int | None,
    labels_file: Path | None,
) -> DataContract:
    allowed: frozenset[str] | None = None
    if labels_file is not None:
        try:
            lines = labels_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{labels_file}: cannot read the label list: {exc}") from exc
        allowed = frozenset(line.strip() for line in lines if line.strip())
        if not allowed:
            raise UsageError(f"{labels_file}: the label list is empty")
    return DataContract(
        text_column=text_column,
        label_column=label_column,
        max_text_length=max_text_length or settings.max_text_length,
        min_examples_per_class=min_per_class or settings.min_examples_per_class,
        allowed_labels=allowed,
    )


def build_redactor(patterns: list[str] | None) -> PiiRedactor:
    custom = []
    for spec in patterns or []:
        name, sep, regex = spec.partition("=")
        if not sep or not name.strip() or not regex:
            raise UsageError(f"--pii-pattern {spec!r}: expected NAME=REGEX")
        custom.append(CustomPattern(name=name.strip(), pattern=regex))
    return PiiRedactor(custom_patterns=custom)


def build_registry(settings: Settings) -> MlflowRegistry:
    """The registry the settings point at; the SQLite file and artifact folder are created on first use."""
    from deskpilot.registry.mlflow_registry import MlflowRegistry  # heavy (scipy, sklearn): import on use

    settings.home.mkdir(parents=True, exist_ok=True)
    return MlflowRegistry(
        settings.resolved_tracking_uri,
        artifact_root=settings.artifact_root,
        cache_dir=settings.model_cache_dir,
    )


def parse_model_uri(uri: str) -> ModelRef:
    try:
        return ModelRef.parse(uri)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def exit_code_for(error: DeskPilotError) -> int:
    return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED


def fail(error: DeskPilotError, *, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "error": error.to_dict()})
    else:
        typer.echo(f"error: {error.message}", err=True)
    raise typer.Exit(exit_code_for(error))


@contextmanager
def reported_errors(*, as_json: bool = False) -> Iterator[None]:
    """Turn DeskPilot's errors into a one-line message (or JSON) and the documented exit code."""
    try:
        yield
    except DeskPilotError as error:
        fail(error, as_json=as_json)
