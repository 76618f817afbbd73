"""Query functions. Each takes the session as a keyword argument."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import ApiToken, Link, Sample, Scope


def split_link_name(name: str) -> tuple[str | None, str | None]:
    """Source and destination nodes of an ``A>B`` link name.

    >>> split_link_name("ATLAng>HSTNng")
    ('ATLAng', 'HSTNng')
    >>> split_link_name("r1:xe-0/0/1")
    (None, None)
    """
    if ">" in name:
        src, dst = name.split(">", 1)
        return src, dst
    return None, None


def list_links(*, session: Session, offset: int = 0, limit: int = 1000) -> tuple[list[Link], int]:
    total = session.scalar(select(func.count()).select_from(Link)) or 0
    rows = session.scalars(select(Link).order_by(Link.name).offset(offset).limit(limit)).all()
    return list(rows), total


def get_link(*, session: Session, name: str) -> Link | None:
    return session.scalar(select(Link).where(Link.name == name))


def upsert_link(
    *,
    session: Session,
    name: str,
    src: str | None,
    dst: str | None,
    capacity_bps: float | None,
    labels: dict[str, Any],
) -> tuple[Link, bool]:
    """Create a link or update its attributes. Returns (link, created)."""
    link = get_link(session=session, name=name)
    created = link is None
    if link is None:
        link = Link(name=name)
        session.add(link)
    if src is None and dst is None:
        src, dst = split_link_name(name)
    link.src, link.dst, link.capacity_bps, link.labels = src, dst, capacity_bps, labels
    session.flush()
    session.refresh(link)
    return link, created


def get_samples(
    *,
    session: Session,
    link_id: int,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[Sample]:
    """Samples of one link with ``start <= ts < end``, oldest first, at most ``limit``."""
    query = select(Sample).where(Sample.link_id == link_id)
    if start is not None:
        query = query.where(Sample.ts >= start)
    if end is not None:
        query = query.where(Sample.ts < end)
    return list(session.scalars(query.order_by(Sample.ts).limit(limit)).all())


def count_samples(*, session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Sample)) or 0


# --- tokens -----------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    id: int
    scope: str
    token: str


def create_token(*, session: Session, scope: str, name: str = "") -> NewToken:
    if scope not in Scope.ALL:
        raise ValueError(f"unknown scope {scope!r}; valid scopes: {', '.join(Scope.ALL)}")
    token = "lc_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name or f"{scope} token", scope=scope, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return NewToken(id=row.id, scope=scope, token=token)


def token_scope(*, session: Session, token: str) -> str | None:
    """The scope of a valid, unrevoked token, else None."""
    return session.scalar(
        select(ApiToken.scope).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )


def ping(*, session: Session) -> None:
    session.execute(text("SELECT 1"))
