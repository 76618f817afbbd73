"""POST /telemetry: collectors push link loads."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import EngineDep, SettingsDep, WriterDep
from api.errors import AUTH, responses
from api.ingest import InvalidSample, MalformedBody, TooLarge, parse_batch
from api.metrics import record_accepted, record_refused
from api.push import BodyTooLarge, read_body
from api.schemas import TELEMETRY_BODY_SCHEMA, TelemetryAccepted
from db.ingest import write_samples

router = APIRouter(prefix="/telemetry", tags=["telemetry"])


@router.post(
    "",
    response_model=TelemetryAccepted,
    responses=responses(400, 413, 422, *AUTH),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TELEMETRY_BODY_SCHEMA}},
        }
    },
)
async def push_telemetry(
    request: Request, _: WriterDep, engine: EngineDep, settings: SettingsDep
) -> JSONResponse:
    """Store a batch of link loads (bit/s), all or nothing.

    Unknown links are registered. A sample for a (link, ts) already stored replaces
    it, so a retried request is harmless. At most 50,000 samples and 10 MiB per request.
    A value above its link's line rate (capacity plus `LINKCAST_LINE_RATE_MARGIN`) is
    stored all the same, marked `over_line_rate` and never learned from; `quarantined`
    counts them.
    """
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    try:
        batch = parse_batch(
            body,
            max_samples=settings.max_batch_samples,
            max_future=timedelta(seconds=settings.max_future_seconds),
        )
    except MalformedBody as exc:
        record_refused("json", "malformed")
        return JSONResponse({"detail": str(exc)}, status_code=400)
    except TooLarge as exc:
        record_refused("json", "too_large", exc.samples)
        return JSONResponse({"detail": str(exc)}, status_code=413)
    except InvalidSample as exc:
        record_refused("json", "invalid", exc.samples)
        return JSONResponse({"detail": exc.detail()}, status_code=422)
    written = await run_in_threadpool(
        partial(write_samples, line_rate_margin=settings.line_rate_margin),
        engine,
        batch.rows,
        request.app.state.link_ids,
    )
    record_accepted("json", batch.received, written.quarantined)
    return JSONResponse({"accepted": batch.received, "quarantined": written.quarantined})
