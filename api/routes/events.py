"""Failures, repairs and maintenance from operators; re-routes from the detectors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import ReaderDep, SessionDep, SettingsDep, WriterDep
from api.errors import AUTH, responses
from api.params import RANGE_422, End, IdPath, Start, validate_range
from api.schemas import (
    AlignedErrorPublic,
    ConvergencePublic,
    ErrorPublic,
    EventCreate,
    EventErrorsPublic,
    EventPublic,
    EventsPublic,
)
from db import queries
from db.live import add_event
from forecaster.aligned import aligned_errors
from forecaster.metrics import TTC_MIN_POST_STEPS, TTC_MIN_PRE_STEPS

router = APIRouter(prefix="/events", tags=["events"])


@router.get(
    "",
    response_model=EventsPublic,
    responses={**responses(*AUTH), 422: {"model": ErrorPublic, "description": RANGE_422}},
)
def list_events(
    session: SessionDep,
    _: ReaderDep,
    kind: Literal["failure", "repair", "maintenance", "reroute"] | None = None,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> EventsPublic:
    """Events, newest first."""
    validate_range(start, end)
    rows = queries.list_events(session=session, kind=kind, start=start, end=end, limit=limit)
    return EventsPublic(data=[EventPublic.model_validate(r) for r in rows], count=len(rows))


@router.post(
    "",
    response_model=EventPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        **responses(400, *AUTH),
        422: {
            "model": ErrorPublic,
            "description": "A field is invalid (`loc` names it), a link is unknown,"
            " `end_ts` is not after `ts`, or a failure or repair lies in the future",
        },
    },
)
def create_event(
    body: EventCreate, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> EventPublic:
    """Record a failure, repair or maintenance window on known links. A failure or a
    repair has happened: its `ts` may lie at most `LINKCAST_MAX_FUTURE_SECONDS` (1 h,
    as a sample's) ahead of now, else 422 (a maintenance window may be planned ahead)."""
    if body.end_ts is not None and body.end_ts <= body.ts:
        raise HTTPException(422, "end_ts must be after ts")
    latest = datetime.now(UTC) + timedelta(seconds=settings.max_future_seconds)
    if body.kind != "maintenance" and body.ts > latest:
        raise HTTPException(
            422,
            f"ts {body.ts.isoformat()} of a {body.kind} is in the future (after"
            f" {latest:%FT%TZ}); post it when it happens, or as a maintenance window",
        )
    missing = queries.unknown_links(session=session, names=body.links)
    if missing:
        raise HTTPException(422, f"unknown links: {', '.join(missing[:20])}")
    event = add_event(session, **body.model_dump())
    session.commit()
    return EventPublic.model_validate(event)


@router.get(
    "/{event_id}/errors", response_model=EventErrorsPublic, responses=responses(404, 422, *AUTH)
)
def event_errors(
    event_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    _: ReaderDep,
    before: Annotated[
        int,
        Query(
            ge=2,
            le=10_000,
            description=f"steps before: the baseline (a ttc needs {TTC_MIN_PRE_STEPS} errors)",
        ),
    ] = 30,
    after: Annotated[
        int,
        Query(
            ge=1,
            le=10_000,
            description=f"steps after (a ttc needs {TTC_MIN_POST_STEPS}, else pending)",
        ),
    ] = 120,
    threshold: Annotated[float, Query(gt=0, description="relative shift to count")] = 0.1,
) -> EventErrorsPublic:
    """Each model's one-step error against steps since the event, over the links it
    shifted, and its time to convergence (``forecaster.metrics.convergence``: the error
    relative to the current load, a forward 12-step mean back within 1.5x its level
    before the event, held 36 steps)."""
    event = queries.get_event(session=session, event_id=event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    step = timedelta(seconds=settings.step_seconds)
    failed = event.links if event.kind != "reroute" else []
    # The links it shifted: those the detectors flagged in a re-route right around it;
    # without such a detection, those whose mean load moved by `threshold` or more.
    shifted = (
        event.links
        if event.kind == "reroute"
        else queries.rerouted_links(
            session=session,
            start=_shift(event.ts, -step * 3),
            end=_shift(event.ts, step * 10),
            exclude=failed,
        )
    )
    rows = queries.errors_around(
        session=session,
        start=_shift(event.ts, -step * before),
        end=_shift(event.ts, step * after),
        exclude=failed,
    )
    result = aligned_errors(
        rows,
        t0=event.ts,
        step_seconds=settings.step_seconds,
        before=before,
        threshold=threshold,
        only=shifted or None,
    )
    data = [AlignedErrorPublic(**r) for r in result.rows]  # type: ignore[arg-type]
    convergence = {
        model: ConvergencePublic(
            status=c.status,
            ttc_steps=c.ttc_steps,
            ttc_seconds=None if c.ttc_steps is None else c.ttc_steps * settings.step_seconds,
            baseline_ape=c.baseline if math.isfinite(c.baseline) else None,
            threshold_ape=c.threshold if math.isfinite(c.threshold) else None,
            post_steps=c.post_steps,
        )
        for model, c in result.convergence.items()
    }
    return EventErrorsPublic(
        event=EventPublic.model_validate(event),
        step_seconds=settings.step_seconds,
        affected=result.affected,
        data=data,
        count=len(data),
        ttc_steps=result.ttc_steps,
        convergence=convergence,
    )


def _shift(t: datetime, by: timedelta) -> datetime:
    """``t + by``, held within Python's years 1 to 9999 (an event may lie near either)."""
    try:
        return t + by
    except OverflowError:
        return (
            datetime.max.replace(tzinfo=UTC)
            if by > timedelta(0)
            else datetime.min.replace(tzinfo=UTC)
        )
