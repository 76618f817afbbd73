"""POST /write: Prometheus remote write 1.0 (the decoding is api/remote_write.py)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import remote_write as rw
from api.deps import SettingsDep, WriterDep
from api.errors import AUTH, responses
from api.metrics import REASON_BY_STATUS, record_push, record_refused
from api.push import BodyTooLarge, Pushed, read_body, store_batch
from api.schemas import ErrorPublic
from api.series import BadPoint

log = logging.getLogger(__name__)

router = APIRouter(prefix="/write", tags=["remote write"])

FORMAT = "remote_write"  # the format label of the push metrics (api/metrics.py)

PUSHED_HEADER = "X-Linkcast-Pushed"
_ERROR: dict[str, Any] = {"model": ErrorPublic}

RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {
        "description": "Stored, all of it (empty body). Series that no rule makes a link"
        " load, and staleness markers, are counted and not stored.",
        "headers": {
            PUSHED_HEADER: {
                "description": "What the request did, as JSON: `samples` received, `stored`"
                " (gauges and counter rates), `quarantined`, `capacities` changed, `dropped`"
                " by reason (`no_rule`, `missing_label`, `bad_link_name`, `unknown_capacity`,"
                " `staleness_marker`), `counter_events` (`baseline`, `wrap`, `reset`, `gap`,"
                " `stale`)",
                "schema": {"type": "string"},
            }
        },
    },
    400: _ERROR
    | {
        "description": "Bad data, nothing stored, not to be retried: corrupt or truncated"
        " snappy, not a prometheus.WriteRequest, a series without `__name__` or with a label"
        " twice, or a link load's value NaN, infinite or negative or its timestamp before"
        " 1970 or past now + `LINKCAST_MAX_FUTURE_SECONDS`; `detail` names the series"
    },
    413: _ERROR
    | {
        "description": "Body over `LINKCAST_MAX_BODY_BYTES`, compressed or as its snappy"
        " header declares it decompressed, or samples over `LINKCAST_MAX_BATCH_SAMPLES`"
    },
    415: _ERROR
    | {
        "description": "Not `Content-Type: application/x-protobuf` (remote write 1.0,"
        " `proto=prometheus.WriteRequest`) with `Content-Encoding: snappy`"
    },
    **responses(*AUTH),
}


def _bad_point(decoded: rw.Decoded, exc: BadPoint) -> str:
    p = decoded.batch.point(exc.index)
    why = exc.msg.removeprefix(f"{p.name}: ")
    return f"series {rw.selector(p.name, dict(p.labels))}: sample at {p.ts:.3f} s: {why}"


@router.post(
    "",
    status_code=204,
    response_class=Response,
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A prometheus.WriteRequest (remote write 1.0), protobuf,"
            " snappy block-compressed",
            "content": {rw.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        "parameters": [
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "enum": [rw.CONTENT_ENCODING]},
            },
            {
                "name": "X-Prometheus-Remote-Write-Version",
                "in": "header",
                "required": False,
                "description": "Sent by remote write 1.0 senders; accepted, not required",
                "schema": {"type": "string", "example": rw.VERSION},
            },
        ],
    },
)
async def remote_write(request: Request, _: WriterDep, settings: SettingsDep) -> Response:
    """Store the link loads of a Prometheus remote write 1.0 request, all or nothing.

    Spec: https://prometheus.io/docs/specs/prw/remote_write_spec/ . Prometheus sends it
    with `remote_write: [{url: .../api/v1/write, authorization: {credentials: TOKEN}}]`
    (a `write` token). Each series goes through the series rules
    (`LINKCAST_SERIES_FILE`; by default `link_load_bps{link}` in bit/s,
    `node_network_transmit_bytes_total` and snmp_exporter's `ifHCOutOctets` counters
    turned into bit/s, `ifHighSpeed` and `node_network_speed_bytes` as capacities);
    a series no rule takes is counted in `X-Linkcast-Pushed` and not stored, never
    refused. Prometheus' staleness markers are skipped. Body at most
    `LINKCAST_MAX_BODY_BYTES` compressed and decompressed, and
    `LINKCAST_MAX_BATCH_SAMPLES` samples.

    Statuses as the spec has them: 204 stored; 400 bad data (Prometheus drops the
    batch and never retries it); 401/403; 413; 415; 503 with `Retry-After` while the
    database is unreachable (Prometheus retries).
    """
    try:
        rw.check_headers(
            request.headers.get("content-type"), request.headers.get("content-encoding")
        )
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge as exc:
            raise rw.Refused(413, str(exc)) from None
        decoded = await run_in_threadpool(
            partial(
                rw.decode,
                limit=settings.max_body_bytes,
                max_samples=settings.max_batch_samples,
                metrics=request.app.state.series_map.metrics,  # the series worth keeping
            ),
            body,
        )
        try:
            pushed = await store_batch(request, decoded.batch)
        except BadPoint as exc:
            message = _bad_point(decoded, exc)
            raise rw.Refused(400, message, reason="invalid", samples=decoded.samples) from None
    except rw.Refused as exc:
        # Refused as a whole, nothing stored: counted here. 401/403 (WriterDep) and 503
        # (api.errors' handler) are counted by api.metrics.RequestMetrics from the status.
        log.info("remote write refused (%d): %s", exc.status, exc.message)
        record_refused(FORMAT, exc.reason or REASON_BY_STATUS.get(exc.status, "error"), exc.samples)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    if decoded.stale:
        pushed.dropped["staleness_marker"] = decoded.stale
    record_push(FORMAT, pushed)
    return Response(status_code=204, headers={PUSHED_HEADER: _summary(decoded, pushed)})


def _summary(decoded: rw.Decoded, pushed: Pushed) -> str:
    return orjson.dumps(
        {
            "samples": decoded.samples,
            "stored": pushed.stored,
            "quarantined": pushed.quarantined,
            "capacities": pushed.capacities,
            "dropped": pushed.dropped,
            "counter_events": pushed.counter_events,
        }
    ).decode()
