"""One settings class, read from the environment (``LINKCAST_`` prefix), validated at start."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINKCAST_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset means an embedded server under DATA_DIR.",
    )
    data_dir: Path = Field(default=Path(".linkcast"), description="Embedded database and state.")
    step_seconds: int = Field(default=60, gt=0, le=86_400, description="Forecast grid step.")
    horizon: int = Field(default=12, gt=0, le=1_000, description="Steps forecast ahead.")
    api_url: str = Field(default="http://127.0.0.1:8000", description="For the ui and feeder.")
    token: str | None = Field(default=None, description="Bearer token for the ui and feeder.")
    max_batch_samples: int = Field(default=50_000, gt=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_future_seconds: float = Field(
        default=3600.0, ge=0, description="How far ahead of now a sample's ts may lie."
    )

    late_seconds: float | None = Field(
        default=None, ge=0, description="Wait after a bucket ends for late samples (step/4)."
    )
    retrain_seconds: float = Field(default=3600, gt=0, description="Incremental re-fit period.")
    retrain_window: int = Field(default=480, ge=10, description="Steps the re-fit learns from.")
    checkpoint_every: int = Field(default=10, ge=1, description="Ticks between checkpoints.")
    capacity_ratio: float = Field(default=0.9, gt=0, le=2, description="Capacity alert level.")
    season_steps: int | None = Field(default=None, ge=2, description="Default: a day of steps.")
    forecast_retention_days: float = Field(default=2.0, gt=0)
    sample_retention_days: float = Field(default=90.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        if v is not None and not v.startswith(("postgresql", "postgres://")):
            raise ValueError("LINKCAST_DATABASE_URL must be a postgresql:// URL")
        return v

    @cached_property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded server's (started on first use)."""
        if self.database_url:
            return self.database_url
        from db.embedded import embedded_url

        return embedded_url(self.data_dir)
