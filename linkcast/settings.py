"""One settings class, read from the environment (``LINKCAST_`` prefix), validated at start."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from api.series import SeriesMap


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

    # Collectors' formats (issue 13): which series are link loads, and counters to rates.
    series_file: Path | None = Field(
        default=None,
        description="TOML [[series]] rules for remote write, line protocol, OTLP; unset: defaults.",
    )
    counter_max_gap_seconds: float = Field(
        default=900.0, gt=0, description="Counter readings further apart give no rate."
    )

    late_seconds: float | None = Field(
        default=None, ge=0, description="Wait after a bucket ends for late samples (step/4)."
    )
    retrain_seconds: float = Field(default=3600, gt=0, description="Incremental re-fit period.")
    retrain_window: int = Field(default=480, ge=10, description="Steps the re-fit learns from.")
    checkpoint_every: int = Field(default=10, ge=1, description="Ticks between checkpoints.")
    capacity_ratio: float = Field(default=0.9, gt=0, le=2, description="Capacity alert level.")
    season_steps: int | None = Field(default=None, ge=2, description="Default: a day of steps.")
    # The alert lifecycle and sample plausibility (issue 11); steps are grid steps.
    alert_sustain_steps: int = Field(
        default=3, ge=0, le=1000, description="Steps a condition holds before pending fires."
    )
    alert_clear_steps: int = Field(
        default=5, ge=1, le=1000, description="Steps a condition stays clear before resolving."
    )
    min_drift_magnitude: float = Field(
        default=0.25, gt=0, description="Smallest relative change a drift alert is raised for."
    )
    min_reroute_links: int = Field(
        default=2, ge=1, description="Links shifting together that make a failure alert."
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Threads torch may use in the engine (one: it shares the machine).",
    )
    alert_group_steps: int = Field(
        default=10, ge=0, description="A drift this close to a failure is grouped under it."
    )
    capacity_clear_margin: float = Field(
        default=0.05, ge=0, lt=1, description="A capacity alert clears this far below its level."
    )
    line_rate_margin: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="Above capacity x (1 + this): implausible.",
    )
    excursion_factor: float = Field(
        default=8.0,
        gt=1,
        description="Excursion: robust spreads off the median.",
    )
    read_cuts: bool = Field(
        default=True,
        description="Read cable cuts off the loads and store them as failure events.",
    )
    # Notifications out (issue 11).
    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager base URL (its v2 API); unset: none sent."
    )
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Webhooks (JSON, HMAC-SHA256 signed), comma-separated."
    )
    webhook_secret: str | None = Field(default=None, description="HMAC key of the webhooks.")
    notify_resend_seconds: float = Field(
        default=60.0, gt=0, description="Re-send a firing alert to Alertmanager this often."
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8501", description="Linked from notifications."
    )
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

    @field_validator("series_file")
    @classmethod
    def _series_rules(cls, v: Path | None) -> Path | None:
        if v is not None:  # fail at start, naming the file, the rule and the field
            from api.series import SeriesMap

            SeriesMap.load(v)
        return v

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _comma_separated(cls, v: object) -> object:
        if isinstance(v, str):
            return [u.strip() for u in v.split(",") if u.strip()]
        return v

    @field_validator("alertmanager_url", "webhook_urls")
    @classmethod
    def _http_urls(cls, v: object) -> object:
        urls = [v] if isinstance(v, str) else list(v) if isinstance(v, list) else []
        for url in urls:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        # the one place this is checked: NotifyConfig trusts it
        if self.webhook_urls and not self.webhook_secret:
            raise ValueError(
                "LINKCAST_WEBHOOK_URLS needs LINKCAST_WEBHOOK_SECRET: webhooks are signed"
            )
        return self

    @model_validator(mode="after")
    def _capacity_alerts_can_clear(self) -> Settings:
        if self.capacity_clear_margin >= self.capacity_ratio:
            raise ValueError(
                f"LINKCAST_CAPACITY_CLEAR_MARGIN ({self.capacity_clear_margin:g}) must be below"
                f" LINKCAST_CAPACITY_RATIO ({self.capacity_ratio:g}): a capacity alert clears"
                " at ratio - margin, which must stay above 0"
            )
        return self

    @cached_property
    def series_map(self) -> SeriesMap:
        """The series rules, read and checked once (a bad file fails at start)."""
        from api.series import SeriesMap

        return SeriesMap.load(self.series_file)

    @cached_property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded server's (started on first use)."""
        if self.database_url:
            return self.database_url
        from db.embedded import embedded_url

        return embedded_url(self.data_dir)
