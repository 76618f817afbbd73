"""What the what-if and the N-1 risk read: the newest forecasts and the links down now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Issue:
    """The newest forecasts of one model, one per link that has one at that time.

    Attributes
    ----------
    issued_at : datetime
        The newest issue time of the model over every link.
    step_seconds : int
        Its grid step.
    values_bps : dict of str to list of float or None
        Link name -> the forecast of each horizon step (bit/s; None where stored
        NULL). Links whose newest forecast is older than ``issued_at`` are absent:
        the engine no longer forecasts them.
    """

    issued_at: datetime
    step_seconds: int
    values_bps: dict[str, list[float | None]]


def latest_issue(*, session: Session, model: str) -> Issue | None:
    """The newest forecast of ``model`` of every link, at the newest issue time; None
    when the model has no forecast stored. One primary-key probe per link."""
    sql = text(
        """
        SELECT l.name, f.issued_at, f.step_seconds,
               CAST(f.value_bps AS float8[]) AS value_bps
        FROM link l
        JOIN LATERAL (
            SELECT issued_at, step_seconds, value_bps FROM forecast
            WHERE link_id = l.id AND model = :model ORDER BY issued_at DESC LIMIT 1
        ) f ON true
        """
    )
    rows = session.execute(sql, {"model": model}).all()
    if not rows:
        return None
    newest = max(r.issued_at for r in rows)
    current = [r for r in rows if r.issued_at == newest]
    return Issue(
        issued_at=newest,
        step_seconds=int(current[0].step_seconds),
        values_bps={r.name: list(r.value_bps) for r in current},
    )


def links_down(*, session: Session, now: datetime) -> list[str]:
    """Links whose latest failure or repair event up to ``now`` is a failure (time
    order, the event id breaking ties), by name: the links down now."""
    sql = text(
        """
        SELECT name FROM (
            SELECT DISTINCT ON (name) name, e.kind
            FROM event e CROSS JOIN LATERAL unnest(e.links) AS name
            WHERE e.kind IN ('failure', 'repair') AND e.ts <= :now
            ORDER BY name, e.ts DESC, e.id DESC
        ) last WHERE kind = 'failure'
        ORDER BY name
        """
    )
    return [r[0] for r in session.execute(sql, {"now": now})]


def newest_samples(*, session: Session, names: Sequence[str]) -> dict[str, datetime]:
    """The time of the newest stored sample of each of the links ``names`` that has one
    (link name -> ts, UTC). One primary-key probe per link."""
    if not names:
        return {}
    sql = text(
        """
        SELECT l.name, s.ts FROM link l
        JOIN LATERAL (
            SELECT ts FROM sample WHERE link_id = l.id ORDER BY ts DESC LIMIT 1
        ) s ON true
        WHERE l.name = ANY(:names)
        """
    )
    return {r.name: r.ts for r in session.execute(sql, {"names": list(names)})}
