"""The links as records for the network model (``network.records.build_topology``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Link


def link_records(*, session: Session) -> list[dict[str, Any]]:
    """Every link's ``name``, ``src``, ``dst``, ``capacity_bps`` and ``labels``, by name."""
    rows = session.execute(
        select(Link.name, Link.src, Link.dst, Link.capacity_bps, Link.labels).order_by(Link.name)
    )
    return [dict(row._mapping) for row in rows]
