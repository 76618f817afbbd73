"""Silences: no notification for alerts that match (link, kind) until a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import ReaderDep, SessionDep, TokenNameDep, WriterDep
from api.errors import AUTH, responses
from api.params import IdPath
from api.schemas import ErrorPublic, SilenceCreate, SilencePublic, SilencesPublic
from db import queries, silences

router = APIRouter(prefix="/silences", tags=["silences"])


@router.get("", response_model=SilencesPublic, responses=responses(422, *AUTH))
def list_silences(
    session: SessionDep,
    _: ReaderDep,
    expired: Annotated[bool, Query(alias="all", description="also the expired ones")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> SilencesPublic:
    """Silences not yet expired (active, or starting later), newest first."""
    rows = silences.list_silences(session=session, expired=expired, limit=limit)
    return SilencesPublic(data=[SilencePublic(**r) for r in rows], count=len(rows))


@router.post(
    "",
    response_model=SilencePublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        **responses(400, *AUTH),
        422: {
            "model": ErrorPublic,
            "description": "A field is invalid (`loc` names it), the link is unknown, or the"
            " silence would end in the past or before it starts",
        },
    },
)
def create_silence(
    body: SilenceCreate, session: SessionDep, _: WriterDep, by: TokenNameDep
) -> SilencePublic:
    """Hold back notifications of the alerts matching ``link`` and ``kind``."""
    starts, ends = _window(body, datetime.now(UTC))
    if body.link is not None and queries.unknown_links(session=session, names=[body.link]):
        raise HTTPException(422, f"unknown link: {body.link}")
    row = silences.create_silence(
        session=session,
        link=body.link,
        kind=body.kind,
        starts_at=starts,
        ends_at=ends,
        comment=body.comment,
        created_by=by,
    )
    session.commit()
    return SilencePublic(**row)


@router.delete(
    "/{silence_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404, 422, *AUTH)
)
def expire_silence(silence_id: IdPath, session: SessionDep, _: WriterDep) -> Response:
    """End a silence now (one not yet started is removed)."""
    if not silences.expire_silence(session=session, silence_id=silence_id, now=datetime.now(UTC)):
        raise HTTPException(404, f"no silence {silence_id}")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _window(body: SilenceCreate, now: datetime) -> tuple[datetime, datetime]:
    # starts_at and ends_at come in UTC within the years 1..9999 (Rfc3339); an end
    # computed past 9999 would fail when stored or read back, a 500 instead of an answer.
    starts = body.starts_at if body.starts_at is not None else now
    if body.ends_at is not None:
        ends = body.ends_at
    else:
        assert body.duration_seconds is not None
        try:
            ends = starts + timedelta(seconds=body.duration_seconds)
        except OverflowError:
            raise HTTPException(
                422, "duration_seconds: starts_at + duration_seconds is past the year 9999"
            ) from None
    if ends <= now:
        raise HTTPException(422, "ends_at is in the past: the silence would never apply")
    if ends <= starts:
        raise HTTPException(422, "ends_at must be after starts_at")
    return starts, ends
