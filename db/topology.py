"""The links as records for the network model (``network.records.build_topology``), and
the links known to be down (open failures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from db.models import Link


def link_records(*, session: Session) -> list[dict[str, Any]]:
    """Every link's ``name``, ``src``, ``dst``, ``capacity_bps`` and ``labels``, by name."""
    rows = session.execute(
        select(Link.name, Link.src, Link.dst, Link.capacity_bps, Link.labels).order_by(Link.name)
    )
    return [dict(row._mapping) for row in rows]


def _open_failure_rows(conn: Connection, before: datetime) -> list[Any]:
    """``(link, ts, source)`` of the failure event of every link whose latest ``failure``
    or ``repair`` event with ``ts < before`` is a failure (events at the same instant in
    the order they were stored), by link."""
    rows = conn.execute(
        text(
            "SELECT link, ts, source FROM (SELECT DISTINCT ON (link) link, kind, ts, source"
            " FROM event, unnest(links) AS link WHERE kind IN ('failure', 'repair')"
            " AND ts < :before ORDER BY link, ts DESC, id DESC) last WHERE kind = 'failure'"
            " ORDER BY link"
        ),
        {"before": before},
    )
    return list(rows)


def open_failures(conn: Connection, *, before: datetime) -> dict[str, datetime]:
    """Link name -> time of its failure, for every link whose latest ``failure`` or
    ``repair`` event with ``ts < before`` is a failure (events at the same instant in the
    order they were stored). The same rule as the dashboard's (``ui.transforms``); one
    query, in the caller's transaction. Names are as the events give them: a link since
    deleted or renamed is the caller's to leave out."""
    return {str(link): ts for link, ts, _ in _open_failure_rows(conn, before)}


def open_failure_sources(conn: Connection, *, before: datetime) -> dict[str, str]:
    """Link name -> the ``source`` of the event that failed it (``operator``, ``engine``,
    ...), for the links :func:`open_failures` finds open before ``before``."""
    return {str(link): str(source) for link, _, source in _open_failure_rows(conn, before)}


def in_maintenance(conn: Connection, *, at: datetime) -> set[str]:
    """Links named by a ``maintenance`` event whose window holds ``at`` (``ts <= at`` and
    ``end_ts`` after it, or no ``end_ts``)."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT link FROM event, unnest(links) AS link WHERE kind = 'maintenance'"
            " AND ts <= :at AND (end_ts IS NULL OR end_ts > :at)"
        ),
        {"at": at},
    )
    return {str(link) for (link,) in rows}
