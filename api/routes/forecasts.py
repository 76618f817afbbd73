"""Forecasts and their errors, per link."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from api.deps import ReaderDep, SessionDep
from api.errors import AUTH, responses
from api.params import MAX_PAGE, RANGE_422, End, LinkPath, Start, validate_range
from api.schemas import (
    ErrorPublic,
    ErrorRowPublic,
    ErrorsPublic,
    ForecastPublic,
    ForecastsPublic,
)
from db import queries

router = APIRouter(prefix="/links", tags=["forecasts"])

ModelQuery = Annotated[
    Literal["liquid", "incremental", "persistence", "seasonal", "hybrid"] | None,
    Query(description="one model; all when unset"),
]
StepQuery = Annotated[int | None, Query(ge=1, le=1000, description="one horizon step")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE * 10)]
RESPONSES = {**responses(404, *AUTH), 422: {"model": ErrorPublic, "description": RANGE_422}}


def _link_id(session, link: str) -> int:  # noqa: ANN001
    row = queries.get_link(session=session, name=link)
    if row is None:
        raise HTTPException(404, f"unknown link {link!r}")
    return row.id


@router.get("/{link:path}/forecasts", response_model=ForecastsPublic, responses=RESPONSES)
def get_forecasts(
    link: LinkPath,
    session: SessionDep,
    _: ReaderDep,
    model: ModelQuery = None,
    start: Start = None,
    end: End = None,
    step: StepQuery = None,
    latest: Annotated[bool, Query(description="only each model's newest issue")] = False,
    limit: LimitQuery = 10_000,
) -> ForecastsPublic:
    """Forecasts of one link whose target time `ts` lies in [start, end).

    A row per issue, model and horizon step: `ts = issued_at + (step - 1) * step_seconds`.
    `end` may lie in the future.
    """
    validate_range(start, end)
    rows = queries.get_forecasts(
        session=session,
        link_id=_link_id(session, link),
        model=model,
        start=start,
        end=end,
        step=step,
        latest=latest,
        limit=limit,
    )
    return ForecastsPublic(data=[ForecastPublic(**r) for r in rows], count=len(rows))


@router.get("/{link:path}/errors", response_model=ErrorsPublic, responses=RESPONSES)
def get_errors(
    link: LinkPath,
    session: SessionDep,
    _: ReaderDep,
    model: ModelQuery = None,
    start: Start = None,
    end: End = None,
    step: StepQuery = None,
    limit: LimitQuery = 10_000,
) -> ErrorsPublic:
    """Errors (forecast - actual) of one link as actuals arrived, per model and step."""
    validate_range(start, end)
    rows = queries.get_errors(
        session=session,
        link_id=_link_id(session, link),
        model=model,
        start=start,
        end=end,
        step=step,
        limit=limit,
    )
    return ErrorsPublic(data=[ErrorRowPublic(**r) for r in rows], count=len(rows))
