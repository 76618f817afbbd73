"""The notification outbox: rows written in the transaction that changed an alert, taken
by a delivery worker. Each function takes the session as a keyword argument."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.orm import Session, aliased

from db.models import Alert, AlertState, Notification
from db.silences import SILENCE_MATCHES_ALERT


def add_notification(
    *, session: Session, receiver: str, alert_id: int | None, payload: dict[str, Any]
) -> None:
    session.add(Notification(receiver=receiver, alert_id=alert_id, payload=payload))


def claim_due(
    *, session: Session, receivers: Iterable[str], now: datetime, limit: int = 100
) -> list[Notification]:
    """Undelivered rows of these receivers that are due, oldest first, at most ``limit``
    for each receiver (so rows waiting for a receiver that is down never crowd out
    another's), locked for this transaction (``FOR UPDATE SKIP LOCKED``: another worker
    takes other rows). A row waits while an older undelivered row for the same receiver
    and alert exists, so a receiver hears of an alert's changes in order (firing, then
    resolved)."""
    older = aliased(Notification)
    earlier_pending = exists().where(
        and_(
            older.receiver == Notification.receiver,
            older.alert_id == Notification.alert_id,
            older.delivered_at.is_(None),
            older.id < Notification.id,
        )
    )
    rank = (
        func.row_number()
        .over(partition_by=Notification.receiver, order_by=Notification.id)
        .label("rank")
    )
    due = (
        select(Notification.id, rank)
        .where(
            Notification.receiver.in_(list(receivers)),
            Notification.delivered_at.is_(None),
            Notification.next_attempt_at <= now,
            ~earlier_pending,
        )
        .subquery()
    )
    query = (
        select(Notification)
        .where(Notification.id.in_(select(due.c.id).where(due.c.rank <= limit)))
        .order_by(Notification.id)
        .with_for_update(skip_locked=True, of=Notification)
    )
    return list(session.scalars(query).all())


def notifications_of(*, session: Session, alert_ids: Iterable[int]) -> list[Notification]:
    """Every row kept about these alerts, oldest first (what each receiver was told)."""
    ids = sorted(set(alert_ids))
    if not ids:
        return []
    query = select(Notification).where(Notification.alert_id.in_(ids)).order_by(Notification.id)
    return list(session.scalars(query))


def children(*, session: Session, parent_ids: Iterable[int]) -> dict[int, list[Alert]]:
    """The alerts grouped under each of these (a failure's drift alerts), by id."""
    ids = sorted(set(parent_ids))
    out: dict[int, list[Alert]] = {i: [] for i in ids}
    if ids:
        query = select(Alert).where(Alert.parent_id.in_(ids)).order_by(Alert.id)
        for alert in session.scalars(query):
            assert alert.parent_id is not None
            out[alert.parent_id].append(alert)
    return out


def firing_unsilenced_roots(*, session: Session) -> list[Alert]:
    """Firing alerts that are no failure's child and no silence matches: what
    Alertmanager is told again and again while they fire."""
    sql = text(
        f"""
        SELECT a.id FROM alert a
        WHERE a.state = :firing AND a.parent_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM silence s WHERE {SILENCE_MATCHES_ALERT})
        """
    )
    ids = [r[0] for r in session.execute(sql, {"firing": AlertState.FIRING})]
    if not ids:
        return []
    return list(session.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id)))


def not_firing(*, session: Session, alert_ids: Iterable[int]) -> list[Alert]:
    """Those of these alerts that no longer fire (resolved since they were read)."""
    ids = sorted(set(alert_ids))
    if not ids:
        return []
    query = (
        select(Alert).where(Alert.id.in_(ids), Alert.state != AlertState.FIRING).order_by(Alert.id)
    )
    return list(session.scalars(query))


def undelivered_by_receiver(*, session: Session) -> dict[str, int]:
    sql = text("SELECT receiver, count(*) FROM notification WHERE delivered_at IS NULL GROUP BY 1")
    return {r[0]: int(r[1]) for r in session.execute(sql)}


def delete_delivered_before(*, session: Session, before: datetime) -> int:
    """Forget rows delivered before ``before``, except what a resolve still depends on:
    the rows of an alert that has not resolved, and of a (receiver, alert) pair with a
    row still to deliver (the worker looks for the delivered firing row then)."""
    sql = text(
        """
        DELETE FROM notification n
        WHERE n.delivered_at IS NOT NULL AND n.delivered_at < :before
          AND NOT EXISTS (
            SELECT 1 FROM alert a WHERE a.id = n.alert_id AND a.state <> :resolved)
          AND NOT EXISTS (
            SELECT 1 FROM notification p
            WHERE p.receiver = n.receiver AND p.alert_id = n.alert_id
              AND p.delivered_at IS NULL)
        """
    )
    result = session.execute(sql, {"before": before, "resolved": AlertState.RESOLVED})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
