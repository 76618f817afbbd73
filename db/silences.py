"""Silences: an operator's "do not notify" on a link, a kind of alert, or both, until a
time. Each function takes the session as a keyword argument.

An alert is *silenced* while a silence is active (``starts_at <= now < ends_at``) whose
``kind`` is NULL or the alert's kind and whose ``link`` is NULL or one of the alert's
links (a failure alert names several). Silenced alerts are still stored and listed;
only their notifications are held back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from db.models import Silence

#: The matching rule, as SQL on an ``alert a`` and a ``silence s``, at the database's now().
SILENCE_MATCHES_ALERT = (
    "s.starts_at <= now() AND s.ends_at > now()"
    " AND (s.kind IS NULL OR s.kind = a.kind)"
    " AND (s.link IS NULL OR s.link = ANY(a.links))"
)

_COLUMNS = (
    "s.id, s.link, s.kind, s.starts_at, s.ends_at, s.comment, s.created_by, s.created_at,"
    " (s.starts_at <= now() AND s.ends_at > now()) AS active"
)


def create_silence(
    *,
    session: Session,
    link: str | None,
    kind: str | None,
    starts_at: datetime,
    ends_at: datetime,
    comment: str,
    created_by: str,
) -> dict[str, Any]:
    row = Silence(
        link=link,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        comment=comment,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    found = get_silence(session=session, silence_id=row.id)
    assert found is not None
    return found


def get_silence(*, session: Session, silence_id: int) -> dict[str, Any] | None:
    row = session.execute(
        text(f"SELECT {_COLUMNS} FROM silence s WHERE s.id = :id"), {"id": silence_id}
    ).first()
    return None if row is None else dict(row._mapping)


def list_silences(*, session: Session, expired: bool = False, limit: int = 500) -> list[dict]:
    """Silences not yet expired (active, or starting later), newest first; with
    ``expired`` the expired ones too."""
    sql = text(
        f"""
        SELECT {_COLUMNS} FROM silence s
        WHERE :expired OR s.ends_at > now()
        ORDER BY s.starts_at DESC, s.id DESC
        LIMIT :limit
        """
    )
    return [dict(r._mapping) for r in session.execute(sql, {"expired": expired, "limit": limit})]


def expire_silence(*, session: Session, silence_id: int, now: datetime) -> bool:
    """End a silence now: one that has started is expired (kept, listed with
    ``expired``), one that has not is removed. False if there is no such silence."""
    row = session.get(Silence, silence_id)
    if row is None:
        return False
    if row.starts_at >= now:
        session.execute(delete(Silence).where(Silence.id == silence_id))
    elif row.ends_at > now:
        session.execute(update(Silence).where(Silence.id == silence_id).values(ends_at=now))
    return True


def silenced_alert_ids(*, session: Session, alert_ids: Iterable[int]) -> set[int]:
    """Which of these alerts a silence active now matches."""
    ids = sorted(set(alert_ids))
    if not ids:
        return set()
    sql = text(
        f"""
        SELECT a.id FROM alert a
        WHERE a.id = ANY(:ids)
          AND EXISTS (SELECT 1 FROM silence s WHERE {SILENCE_MATCHES_ALERT})
        """
    )
    return {r[0] for r in session.execute(sql, {"ids": ids})}
