"""Build what the use cases need from settings: contract, redactor, registry, store URLs, model refs, policy.

The composition root's helpers: the CLI and the API hand settings here, and the lifecycle packages below
receive plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deskpilot.config import Settings
from deskpilot.data.contracts import DataContract
from deskpilot.data.pii import CustomPattern, PiiRedactor
from deskpilot.domain import ModelRef
from deskpilot.errors import StoreError, UsageError
from deskpilot.store.files import private_dir

if TYPE_CHECKING:
    from deskpilot.evaluation.policy import Policy
    from deskpilot.registry.mlflow_registry import MlflowRegistry
    from deskpilot.rollout.rules import RolloutRules

# Heavy modules (SQLAlchemy and Alembic, scipy through the rollout rules) are imported where they are used,
# so that a quick command such as ``deskpilot validate`` does not load them.


def build_contract(
    settings: Settings,
    *,
    text_column: str,
    label_column: str | None,
    max_text_length: int | None = None,
    min_per_class: int | None = None,
    labels_file: Path | None = None,
) -> DataContract:
    """The data contract: the options given, the settings' defaults for the rest."""
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


def build_redactor(patterns: list[str] | None = None) -> PiiRedactor:
    """The PII redactor, with extra ``NAME=REGEX`` patterns redacted as ``<NAME>``."""
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

    private_dir(settings.home)
    return MlflowRegistry(
        settings.resolved_tracking_uri,
        artifact_root=settings.artifact_root,
        cache_dir=settings.model_cache_dir,
    )


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; else a :class:`UsageError` naming the shape."""
    try:
        return ModelRef.parse(uri)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def existing_store_url(settings: Settings, why: str) -> str:
    """The store's URL for a read; :class:`StoreError` when it is a SQLite file that does not exist (a read
    must not create an empty store and report on it)."""
    from deskpilot.store.engine import parse_url

    url = settings.resolved_database_url
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.exists():
            raise StoreError(
                f"no store database at {path}: {why}, or DESKPILOT_DATABASE_URL points elsewhere"
            )
    return url


def writable_store_url(settings: Settings) -> str:
    """The store's URL for a write: a SQLite store is created or upgraded in place, as ``deskpilot store
    migrate`` would; any other database is left to its operator (a schema behind fails at the write)."""
    from deskpilot.store import migrate
    from deskpilot.store.engine import parse_url

    url = settings.resolved_database_url
    if parse_url(url).get_backend_name() == "sqlite":
        private_dir(settings.home)
        migrate.upgrade(url)
    return url


@dataclass(frozen=True)
class Policies:
    """Both halves of a policy file: the gate's rules and the rollout's automatic-rollback rules."""

    gate: Policy
    rollout: RolloutRules


def load_policies(path: Path | None) -> Policies:
    """Read and check the whole policy file (the packaged default when ``path`` is None), so that a mistake
    in either half fails any command that reads it, with file and line."""
    from deskpilot.evaluation.policy import load_policy
    from deskpilot.rollout.rules import load_rollout_rules

    return Policies(gate=load_policy(path), rollout=load_rollout_rules(path))
