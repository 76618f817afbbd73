"""Queries behind the scrape-time gauges of ``GET /metrics`` (api/metrics.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def alert_counts(*, session: Session) -> dict[tuple[str, str], int]:
    """Alerts stored, by (kind, state): one pass over the alert table, which retention
    keeps small (resolved alerts go with the forecasts of their age)."""
    rows = session.execute(text("SELECT kind, state, count(*) FROM alert GROUP BY kind, state"))
    return {(kind, state): int(n) for kind, state, n in rows}
