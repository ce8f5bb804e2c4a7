"""Settings: one flat, typed set of options read from ``DESKPILOT_*`` environment variables.

Only the CLI callback (``--home`` overrides ``DESKPILOT_HOME``) and the API's worker entry point build it. The
API and the workflows read it; the layers below them receive plain values and may not import this module
(import-linter checks). Paths that are not options (snapshots, keys, artifacts, caches, the default
databases) derive from ``home``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deskpilot.domain import DEFAULT_MODEL_NAME
from deskpilot.errors import ConfigError


class Settings(BaseSettings):
    """Where DeskPilot keeps its state, the defaults of the data contract and training, and the limits and
    timings of the service."""

    model_config = SettingsConfigDict(env_prefix="DESKPILOT_", extra="ignore")

    home: Path = Field(default=Path(".deskpilot"), description="Root of snapshots, runs and stores.")
    max_text_length: int = Field(
        default=2000, gt=0, description="Longest message, in characters, after trimming."
    )
    min_examples_per_class: int = Field(default=5, ge=1, description="Fewest examples a label may have.")

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default: a SQLite database under home."
    )
    model_name: str = Field(default=DEFAULT_MODEL_NAME, min_length=1, description="Registered model name.")
    target_precision: float = Field(
        default=0.97, gt=0.0, le=1.0, description="Precision the auto-routed share must keep on validation."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="API keys from configuration: TENANT:KEY pairs, comma-separated or a JSON list.",
    )

    database_url: str | None = Field(
        default=None, description="Prediction/feedback store (SQLAlchemy URL); default: SQLite under home."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body the API reads.")
    max_batch_items: int = Field(default=256, gt=0, description="Most tickets in one batch request.")
    rate_limit_per_s: float = Field(
        default=200.0, description="Sustained requests (tickets) per second per tenant; 0 turns it off."
    )
    rate_limit_burst: int = Field(default=400, gt=0, description="Tickets a tenant may send at once.")
    rate_limit_overrides: str = Field(
        default="", description="Per-tenant limits: TENANT=RATE/BURST, comma-separated (e.g. big=1000/2000)."
    )
    micro_batch_max: int = Field(default=64, gt=0, description="Most texts in one model call.")
    micro_batch_wait_ms: float = Field(
        default=2.0, ge=0.0, description="How long a batch waits for stragglers when several requests race."
    )
    model_timeout_s: float = Field(
        default=2.0,
        gt=0.0,
        description="Time budget of a model before the next in line (champion, then fallback) answers.",
    )
    reload_interval_s: float = Field(
        default=5.0, ge=0.0, description="How often the service checks the registry for a new champion."
    )
    store_buffer: int = Field(default=10_000, gt=0, description="Decisions buffered while the store is down.")
    policy_file: Path | None = Field(
        default=None,
        description="Gate policy whose rollout section drives automatic rollback (default: packaged).",
    )
    guard_interval_s: float = Field(
        default=1.0, gt=0.0, description="How often the rollback rules are checked."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes of `deskpilot serve`; each has its own model copy, batches and "
        "rate-limit share (the tenant limit divided evenly).",
    )
    tracing: str = Field(
        default="none", pattern="^(none|console|memory)$", description="OpenTelemetry span exporter."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """``DESKPILOT_API_KEYS=a:k1,b:k2`` is easier to set than a JSON list; both work."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def tenant_rate_limits(self) -> dict[str, tuple[float, int]]:
        """``rate_limit_overrides`` parsed; a malformed entry is a ConfigError naming it."""
        limits: dict[str, tuple[float, int]] = {}
        for entry in filter(None, (part.strip() for part in self.rate_limit_overrides.split(","))):
            tenant, _, spec = entry.partition("=")
            rate, _, burst = spec.partition("/")
            try:
                limits[tenant.strip()] = (float(rate), int(burst))
            except ValueError as exc:
                raise ConfigError(
                    f"DESKPILOT_RATE_LIMIT_OVERRIDES: {entry!r} is not TENANT=RATE/BURST"
                ) from exc
        return limits

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'deskpilot.db').resolve()}"

    @property
    def keys_file(self) -> Path:
        return self.home / "keys.jsonl"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "cache" / "models"

    @property
    def encoder_cache_dir(self) -> Path:
        return self.home / "cache" / "encoders"
