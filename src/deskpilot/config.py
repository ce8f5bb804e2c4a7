"""Settings: one typed tree read from ``DESKPILOT_*`` environment variables, built only by the CLI and API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deskpilot.domain import DEFAULT_MODEL_NAME


class Settings(BaseSettings):
    """Where DeskPilot keeps its state and the defaults of the data contract."""

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
