"""Alerts raised by the engine."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ReaderDep, SessionDep
from api.errors import AUTH, responses
from api.schemas import AlertPublic, AlertsPublic, Text
from db import queries

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=AlertsPublic, responses=responses(422, *AUTH))
def list_alerts(
    session: SessionDep,
    _: ReaderDep,
    state: Literal["pending", "firing", "resolved"] | None = None,
    kind: Literal["drift", "failure", "capacity"] | None = None,
    link: Annotated[Text | None, Query(description="alerts naming this link")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> AlertsPublic:
    """Alerts, newest onset first."""
    rows = queries.list_alerts(session=session, state=state, kind=kind, link=link, limit=limit)
    return AlertsPublic(data=[AlertPublic(**r) for r in rows], count=len(rows))
