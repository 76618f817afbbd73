"""Typed ORM tables. The schema itself is created by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    Identity,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
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

    link_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # link.id, no FK (speed)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    value_bps: Mapped[float] = mapped_column(Double)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
