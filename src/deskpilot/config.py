"""Settings: one typed tree read from ``DESKPILOT_*`` environment variables, built only by the CLI and API."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where DeskPilot keeps its state and the defaults of the data contract."""

    model_config = SettingsConfigDict(env_prefix="DESKPILOT_", extra="ignore")

    home: Path = Field(default=Path(".deskpilot"), description="Root of snapshots, runs and stores.")
    max_text_length: int = Field(
        default=2000, gt=0, description="Longest message, in characters, after trimming."
    )
    min_examples_per_class: int = Field(default=5, ge=1, description="Fewest examples a label may have.")

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "snapshots"
