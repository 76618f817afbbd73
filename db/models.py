"""Typed ORM tables. The schema itself is created by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    Identity,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Scope:
    """Token scopes, from least to most privileged; a scope grants those before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    ALL = (READ, WRITE, ADMIN)

    @classmethod
    def grants(cls, held: str, needed: str) -> bool:
        return cls.ALL.index(held) >= cls.ALL.index(needed)


class Link(Base):
    __tablename__ = "link"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    src: Mapped[str | None] = mapped_column(Text)
    dst: Mapped[str | None] = mapped_column(Text)
    capacity_bps: Mapped[float | None] = mapped_column(Double)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Sample(Base):
    __tablename__ = "sample"
    # One partition a UTC day and two catch-alls (migration 0006, db/partitions.py).
    __table_args__ = {"postgresql_partition_by": "RANGE (ts)"}

    link_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # link.id, no FK (speed)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    value_bps: Mapped[float] = mapped_column(Double)
    quality: Mapped[str] = mapped_column(Text, server_default="ok")


class SampleQuality:
    """Why a stored sample is not learned from: ``ok`` ones are."""

    OK = "ok"
    OVER_LINE_RATE = "over_line_rate"  # above the link's capacity plus a margin
    EXCURSION = "excursion"  # one step far outside the recent range, reverted at once
    ALL = (OK, OVER_LINE_RATE, EXCURSION)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelName:
    """Model names, as the REST API and the CLI spell them."""

    LIQUID = "liquid"
    INCREMENTAL = "incremental"
    PERSISTENCE = "persistence"
    SEASONAL = "seasonal"
    HYBRID = "hybrid"
    ALL = (LIQUID, INCREMENTAL, PERSISTENCE, SEASONAL, HYBRID)


class Forecast(Base):
    __tablename__ = "forecast"
    __table_args__ = {"postgresql_partition_by": "RANGE (issued_at)"}  # as sample

    link_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    step_seconds: Mapped[int] = mapped_column(Integer)
    value_bps: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    lower_bps: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    upper_bps: Mapped[list[float]] = mapped_column(ARRAY(REAL))


class ForecastError(Base):
    __tablename__ = "forecast_error"
    __table_args__ = {"postgresql_partition_by": "RANGE (ts)"}  # as sample

    link_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    actual_bps: Mapped[float] = mapped_column(Double)
    error_bps: Mapped[list[float | None]] = mapped_column(ARRAY(REAL))


class EventKind:
    FAILURE = "failure"
    REPAIR = "repair"
    MAINTENANCE = "maintenance"
    REROUTE = "reroute"
    ALL = (FAILURE, REPAIR, MAINTENANCE, REROUTE)


class Event(Base):
    __tablename__ = "event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    links: Mapped[list[str]] = mapped_column(ARRAY(Text))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, server_default="")
    source: Mapped[str] = mapped_column(Text, server_default="operator")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AlertKind:
    DRIFT = "drift"
    FAILURE = "failure"
    CAPACITY = "capacity"
    ALL = (DRIFT, FAILURE, CAPACITY)


class AlertState:
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    ALL = (PENDING, FIRING, RESOLVED)


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    link_id: Mapped[int | None] = mapped_column(Integer)
    links: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    model: Mapped[str | None] = mapped_column(Text)
    onset: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    magnitude: Mapped[float | None] = mapped_column(Double)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    firing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    parent_id: Mapped[int | None] = mapped_column(BigInteger)  # the failure alert it is part of
    clear_steps: Mapped[int] = mapped_column(Integer, server_default="0")


class Silence(Base):
    __tablename__ = "silence"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    link: Mapped[str | None] = mapped_column(Text)  # None matches every link
    kind: Mapped[str | None] = mapped_column(Text)  # None matches every kind
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str] = mapped_column(Text, server_default="")
    created_by: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Notification(Base):
    """The outbox: one message to one receiver about one alert change."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    receiver: Mapped[str] = mapped_column(Text)
    alert_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class ModelCheckpoint(Base):
    __tablename__ = "model_checkpoint"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    step_seconds: Mapped[int] = mapped_column(Integer)
    link_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    state: Mapped[bytes] = mapped_column(LargeBinary)


class ModelVersion(Base):
    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(Text)
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    duration_seconds: Mapped[float | None] = mapped_column(Double)
    window_steps: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, server_default="")


class CounterState(Base):
    """The last reading of a counter series (db/counters.py takes rates against it)."""

    __tablename__ = "counter_state"
    # pages half empty: each push rewrites the row, and the new version can go beside
    # the old one (a heap-only tuple, no index entry; migration 0007)
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}

    series: Mapped[str] = mapped_column(Text, primary_key=True)  # name{label="value",...}
    link: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Decimal | None] = mapped_column(Numeric)
    ts: Mapped[float | None] = mapped_column(Double)
