"""Request and response schemas, one family per entity."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forecaster.metrics import (
    APE_FLOOR_RATIO,
    TTC_HOLD_STEPS,
    TTC_MIN_POST_STEPS,
    TTC_MIN_PRE_STEPS,
    TTC_SLACK,
    TTC_TOLERANCE,
    TTC_WINDOW_STEPS,
    ConvergenceStatus,
)


class ErrorPublic(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What was wrong; for 422, a list of {loc, msg, type} naming sample and field."
    )


class SampleIn(BaseModel):
    link: str = Field(min_length=1, max_length=255, examples=["ATLAng>HSTNng"])
    ts: datetime | float = Field(
        description="RFC 3339 with offset, or epoch seconds", examples=["2026-01-01T00:00:00Z"]
    )
    value: float = Field(ge=0, le=1e15, description="link load in bit/s", examples=[1.2e9])


class TelemetryIn(BaseModel):
    samples: list[SampleIn] = Field(max_length=50_000)


class TelemetryAccepted(BaseModel):
    accepted: int = Field(description="samples in the request, all stored")
    quarantined: int = Field(
        description="of them, stored but marked `over_line_rate`: above the link's capacity"
        " x (1 + LINKCAST_LINE_RATE_MARGIN), never learned from"
    )


class LinkCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, examples=["ATLAng>HSTNng"])
    src: str | None = Field(default=None, description="source node; from `A>B` names if unset")
    dst: str | None = None
    capacity_bps: float | None = Field(default=None, gt=0, le=1e15)
    labels: dict[str, Any] = Field(default_factory=dict)


class LinkPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    src: str | None
    dst: str | None
    capacity_bps: float | None
    labels: dict[str, Any]
    created_at: datetime


class LinksPublic(BaseModel):
    data: list[LinkPublic]
    count: int
    total: int


class SamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ts: datetime
    value_bps: float
    quality: Literal["ok", "over_line_rate", "excursion"] = Field(
        description="ok: learned from. Quarantined, stored as sent but fed to no model or "
        "alert: over_line_rate (above the link's capacity x (1 + LINKCAST_LINE_RATE_MARGIN), "
        "marked at ingest), excursion (one bucket far outside the link's recent range that "
        "reverted at once, marked by the engine a bucket or more later)"
    )


class SamplesPublic(BaseModel):
    data: list[SamplePublic]
    count: int
    next_start: datetime | None = Field(
        default=None, description="set when the page is full: pass it as `start` for the next"
    )


class Health(BaseModel):
    status: str


class ForecastPublic(BaseModel):
    issued_at: datetime
    model: str
    step: int = Field(description="1-based horizon step")
    ts: datetime = Field(description="start of the bucket the step forecasts")
    value: float = Field(description="bit/s")
    lower: float
    upper: float


class ForecastsPublic(BaseModel):
    data: list[ForecastPublic]
    count: int


class ErrorRowPublic(BaseModel):
    ts: datetime
    model: str
    step: int
    error_bps: float = Field(description="forecast - actual")
    actual_bps: float


class ErrorsPublic(BaseModel):
    data: list[ErrorRowPublic]
    count: int


class AlertPublic(BaseModel):
    id: int
    kind: str = Field(description="drift, failure or capacity")
    state: str = Field(description="pending, firing or resolved")
    link: str | None
    links: list[str]
    model: str | None
    onset: datetime
    magnitude: float | None = Field(description="relative change, or utilisation for capacity")
    message: str
    created_at: datetime
    updated_at: datetime
    firing_at: datetime | None
    resolved_at: datetime | None
    parent_id: int | None = Field(
        default=None,
        description="the failure alert this one is part of (its drift on a re-routed link); "
        "only alerts without a parent are notified",
    )
    silenced: bool = Field(
        default=False, description="a silence active now matches it: no notification goes out"
    )


class AlertsPublic(BaseModel):
    data: list[AlertPublic]
    count: int


class EventCreate(BaseModel):
    kind: Literal["failure", "repair", "maintenance"]
    links: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(min_length=1)
    ts: datetime = Field(description="RFC 3339 with offset")
    end_ts: datetime | None = Field(default=None, description="end of a maintenance window")
    note: str = Field(default="", max_length=2000)


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    links: list[str]
    ts: datetime
    end_ts: datetime | None
    note: str
    source: str = Field(description="operator or detector")
    created_at: datetime


class EventsPublic(BaseModel):
    data: list[EventPublic]
    count: int


class AlignedErrorPublic(BaseModel):
    model: str
    offset_steps: int = Field(description="steps since the event (negative: before)")
    ape: float = Field(
        description=(
            "mean over the affected links of the one-step absolute percentage error, "
            "|error| / max(|actual|, floor), as a ratio of the current load (0.05 = 5 %); "
            f"floor: {APE_FLOOR_RATIO:.0%} of the link's mean load. Time to convergence "
            "is computed on this curve (forecaster.metrics.convergence)"
        )
    )
    rel_error: float = Field(
        description=(
            "mean over links of |error| / link's pre-event mean load (older scale: on a "
            "link whose load changed it does not return to its pre-event level; see ape)"
        )
    )
    mae_bps: float = Field(description="mean over links of |error|, bit/s")
    links: int = Field(description="affected links with an error at this offset")


class ConvergencePublic(BaseModel):
    status: ConvergenceStatus = Field(
        description=(
            "converged (ttc_steps set); not_converged (not back within the data after "
            f"the event); pending (fewer than {TTC_MIN_POST_STEPS} steps after the event "
            f"yet: not yet known); no_baseline (fewer than {TTC_MIN_PRE_STEPS} errors "
            "before the event)"
        )
    )
    ttc_steps: int | None = Field(description="time to convergence in steps, if converged")
    ttc_seconds: float | None = Field(description="the same in seconds")
    baseline_ape: float | None = Field(description="mean ape over the steps before the event")
    threshold_ape: float | None = Field(
        description=f"{TTC_TOLERANCE} x baseline_ape + {TTC_SLACK}: the mean of ape over "
        f"the {TTC_WINDOW_STEPS} steps from an offset on must be at or below it, at "
        f"ttc_steps and at every offset up to {TTC_HOLD_STEPS} steps later"
    )
    post_steps: int = Field(description="steps from the event to the last error")


TTC_DESCRIPTION = (
    "time to convergence in steps (forecaster.metrics.convergence): the smallest k >= 0 "
    f"such that the mean of ape over the {TTC_WINDOW_STEPS} steps [k, k + "
    f"{TTC_WINDOW_STEPS}) is at most {TTC_TOLERANCE} x its mean before the event + "
    f"{TTC_SLACK}, at k and at every offset up to k + {TTC_HOLD_STEPS} (or to the end of "
    "the data)"
)


class EventErrorsPublic(BaseModel):
    event: EventPublic
    step_seconds: int
    affected: list[str] = Field(description="links whose load shifted (failed ones excluded)")
    data: list[AlignedErrorPublic]
    count: int
    ttc_steps: dict[str, int | None] = Field(
        description=(f"per model: {TTC_DESCRIPTION}; null unless converged (convergence says why)")
    )
    convergence: dict[str, ConvergencePublic] = Field(
        description=f"per model: {TTC_DESCRIPTION}, with its status"
    )


class ModelPublic(BaseModel):
    name: str
    version: int | None
    last_retrain: datetime | None
    retrains: int
    rmse_bps: float | None = Field(description="one-step RMSE over the last hour")
    mae_bps: float | None
    scored: int


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int
    step_seconds: int = Field(description="the forecast grid's step (s)")
    horizon: int = Field(description="steps forecast ahead at each issue")


class LinkLatestPublic(BaseModel):
    name: str
    capacity_bps: float | None
    ts: datetime | None = Field(description="newest plausible (quality ok) sample's time")
    value_bps: float | None = Field(description="newest plausible (quality ok) sample's load")
    issued_at: datetime | None = Field(description="newest forecast issue of the model")
    peak_bps: float | None = Field(description="highest forecast value within the horizon")
    peak_upper_bps: float | None = Field(description="highest upper bound within the horizon")


class LinksLatestPublic(BaseModel):
    data: list[LinkLatestPublic]
    count: int


class SilenceCreate(BaseModel):
    """Matchers (null matches any) and an end: ``ends_at`` or ``duration_seconds``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt matcher must not silence all

    link: str | None = Field(
        default=None, min_length=1, max_length=255, description="exact link name; null: any link"
    )
    kind: Literal["drift", "failure", "capacity"] | None = Field(
        default=None, description="alert kind; null: any kind"
    )
    starts_at: datetime | None = Field(default=None, description="RFC 3339 with offset; now")
    ends_at: datetime | None = Field(default=None, description="RFC 3339 with offset, future")
    duration_seconds: float | None = Field(
        default=None, gt=0, le=366 * 86_400, description="instead of ends_at: from starts_at"
    )
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _one_end(self) -> SilenceCreate:
        if (self.ends_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ends_at and duration_seconds")
        for name in ("starts_at", "ends_at"):
            t = getattr(self, name)
            if t is not None and t.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset (add Z)")
        return self


class SilencePublic(BaseModel):
    id: int
    link: str | None = Field(description="null: any link")
    kind: str | None = Field(description="null: any kind")
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str = Field(description="the name of the token that created it")
    created_at: datetime
    active: bool = Field(description="started and not yet ended")


class SilencesPublic(BaseModel):
    data: list[SilencePublic]
    count: int
