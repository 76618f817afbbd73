"""Links and their samples."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import AdminDep, ReaderDep, SessionDep
from api.errors import AUTH, responses
from api.params import MAX_PAGE, RANGE_422, End, LinkPath, Offset, Start, validate_range
from api.schemas import (
    ErrorPublic,
    LinkCreate,
    LinkPublic,
    LinksLatestPublic,
    LinksPublic,
    SamplePublic,
    SamplesPublic,
)
from db import queries
from network.records import edge_link
from network.topology import Topology, endpoints

router = APIRouter(prefix="/links", tags=["links"])


@router.get("", response_model=LinksPublic, responses=responses(422, *AUTH))
def list_links(
    session: SessionDep,
    _: ReaderDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> LinksPublic:
    """Links by name. `count` is this page's size, `total` all links."""
    rows, total = queries.list_links(session=session, offset=offset, limit=limit)
    return LinksPublic(
        data=[LinkPublic.model_validate(r) for r in rows], count=len(rows), total=total
    )


@router.get("/latest", response_model=LinksLatestPublic, responses=responses(422, *AUTH))
def links_latest(
    session: SessionDep,
    _: ReaderDep,
    model: Literal["liquid", "incremental", "persistence", "seasonal", "hybrid"] = "hybrid",
) -> Response:
    """Every link's newest sample and the peak of the model's newest forecast, in one call
    (what a network overview needs)."""
    rows = queries.links_latest(session=session, model=model)
    # Serialised here, not through the response model: a network of 10,000 links made
    # FastAPI validate and encode 10,000 objects on every overview refresh (about a third
    # of the call on a quiet machine, more beside ingest in the same worker). The rows'
    # keys and types are LinkLatestPublic's (tests/api/test_links.py checks the document).
    body = {"data": rows, "count": len(rows)}
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.post(
    "",
    response_model=LinkPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": LinkPublic, "description": "Updated"},
        **responses(400, 422, *AUTH),
    },
)
def create_link(body: LinkCreate, session: SessionDep, _: AdminDep, response: Response):
    """Register a link, or update its nodes, capacity and labels (200 when it existed).
    The label `edge` (`ingress` or `egress`) makes it an edge link of the router at its
    `dst` (`src`): another value, or no router, is a 422. The labels the network model
    reads, `metric` (IGP metric, a number above 0) and `src_lat`, `src_lon`, `dst_lat`,
    `dst_lon` (degrees), are checked as it reads them: one it could not read is a 422
    naming it (the link would otherwise be left out of the topology, what-if and risk)."""
    record = body.model_dump()
    try:
        if edge_link(record) is None:  # a backbone link: its metric and coordinates
            Topology.from_links([_placed(record)])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    link, created = queries.upsert_link(session=session, **body.model_dump())
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return LinkPublic.model_validate(link)


def _placed(record: dict) -> dict:
    """``record`` with stand-in nodes where it names none (a link not placed yet), so
    that its labels are checked now, not once it is placed."""
    if endpoints(str(record["name"]), record.get("src"), record.get("dst")) is not None:
        return record
    return {**record, "src": "\x01src", "dst": "\x01dst"}


@router.get(
    "/{link:path}/samples",
    response_model=SamplesPublic,
    responses={
        **responses(404, *AUTH),
        422: {"model": ErrorPublic, "description": RANGE_422},
    },
)
def get_samples(
    link: LinkPath,
    session: SessionDep,
    _: ReaderDep,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> SamplesPublic:
    """Samples of one link with `start <= ts < end`, oldest first, one page at a time.

    Link names may hold `/`, `:` and `>`; percent-encode them or not.
    """
    validate_range(start, end)
    row = queries.get_link(session=session, name=link)
    if row is None:
        raise HTTPException(404, f"unknown link {link!r}")
    rows = queries.get_samples(
        session=session, link_id=row.id, start=start, end=end, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return SamplesPublic(
        data=[SamplePublic.model_validate(r) for r in rows],
        count=len(rows),
        next_start=rows[-1].ts if more else None,
    )
