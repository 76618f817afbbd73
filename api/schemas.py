"""Request and response schemas, one family per entity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class SamplesPublic(BaseModel):
    data: list[SamplePublic]
    count: int
    next_start: datetime | None = Field(
        default=None, description="set when the page is full: pass it as `start` for the next"
    )


class Health(BaseModel):
    status: str
