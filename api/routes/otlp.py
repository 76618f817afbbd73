"""POST /v1/metrics: the OTLP/HTTP metrics receiver (outside /api/v1, where OTLP puts it)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api import otlp
from api.deps import SettingsDep, WriterDep
from api.errors import RETRY_AFTER_SECONDS, logged_unavailable
from api.metrics import record_push, record_refused
from api.push import BodyTooLarge, read_body, store_points
from api.series import BadPoint
from db.session import is_connection_problem

_STATUS = {"description": "A google.rpc.Status in the request's encoding"}


class OtlpRoute(APIRoute):
    """Every error of this router is answered as OTLP/HTTP wants it: a
    ``google.rpc.Status`` in the request's encoding (JSON when it named neither),
    whether it comes from the decoder, the token check or an unreachable database."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except otlp.Refused as exc:
                # A refused request: nothing of it stored (counted as refused on /metrics).
                return _status(request, exc.status, exc.message)
            except HTTPException as exc:  # 401 and 403 from the token check
                return _status(request, exc.status_code, str(exc.detail), exc.headers)
            except Exception as exc:
                if not is_connection_problem(exc):
                    raise
                retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
                return _status(request, 503, logged_unavailable(request, exc), retry)

        return answer


router = APIRouter(prefix="/v1", tags=["otlp"], route_class=OtlpRoute)


def _status(
    request: Request, code: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    wire = otlp.answer_wire(request.headers.get("content-type"))
    body = otlp.status_body(wire, code, message)
    return Response(body, code, headers, media_type=otlp.MEDIA_TYPES[wire])


@router.post(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "An ExportMetricsServiceResponse in the request's encoding;"
            " partial_success counts the data points not stored and says why",
            "content": {otlp.MEDIA_TYPES["protobuf"]: {}, otlp.MEDIA_TYPES["json"]: {}},
        },
        400: _STATUS | {"description": "Undecodable body, or a bad value or timestamp"},
        401: _STATUS | {"description": "Missing, invalid or revoked bearer token"},
        403: _STATUS | {"description": "Token scope too low (needs write)"},
        413: _STATUS | {"description": "Body (decompressed) or data points over the limit"},
        415: _STATUS | {"description": "Content-Type or Content-Encoding not supported"},
        503: _STATUS | {"description": "Database unreachable: retry after Retry-After"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                otlp.MEDIA_TYPES["protobuf"]: {"schema": {"type": "string", "format": "binary"}},
                otlp.MEDIA_TYPES["json"]: {"schema": {"type": "object"}},
            },
        }
    },
)
async def export_metrics(request: Request, _: WriterDep, settings: SettingsDep) -> Response:
    """Store the link loads of an OTLP ExportMetricsServiceRequest, all or nothing.

    Source: the OTLP/HTTP spec (https://opentelemetry.io/docs/specs/otlp/#otlphttp).
    Body: binary protobuf (`application/x-protobuf`) or OTLP JSON (`application/json`),
    optionally `Content-Encoding: gzip`; at most `LINKCAST_MAX_BODY_BYTES` (10 MiB)
    after decompression and `LINKCAST_MAX_BATCH_SAMPLES` (50,000) data points.

    Gauges and cumulative sums go through the series rules (`LINKCAST_SERIES_FILE`):
    a gauge rule stores the value in bit/s, a counter rule (hostmetrics'
    `system.network.io`, bytes) stores 8 x delta / elapsed between readings.
    Data points no rule takes, histograms, summaries and delta sums are not stored
    and counted in `partial_success` (200). Errors are `google.rpc.Status` bodies:
    400 (undecodable; a value that is not finite or negative; a timestamp before
    1970, missing or past now + `LINKCAST_MAX_FUTURE_SECONDS`), 401/403, 413, 415,
    503 with `Retry-After`.
    """
    wire = otlp.wire_of(request.headers.get("content-type"))
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge as exc:
        raise otlp.Refused(413, str(exc)) from None
    decoded = await run_in_threadpool(
        partial(
            otlp.decode,
            wire=wire,
            content_encoding=request.headers.get("content-encoding"),
            limit=settings.max_body_bytes,
            max_points=settings.max_batch_samples,
            metrics=request.app.state.series_map.metrics,  # the series worth keeping
        ),
        body,
    )
    try:
        pushed = await store_points(request, decoded.points)
    except BadPoint as exc:
        # a value the document allows but a link load cannot take: `invalid`, with the
        # request's points, as the other formats count it (not the middleware's malformed)
        record_refused("otlp", "invalid", len(decoded.points))
        raise otlp.Refused(400, f"{decoded.locate(exc.index)}: {exc.msg}") from None
    rejected = otlp.Rejected.of(decoded, pushed.dropped, request.app.state.series_map)
    # The request's counts (self-monitoring): len(decoded.points) data points taken,
    # pushed.stored samples written, rejected.count dropped (by_reason), decoded.skipped
    # NO_RECORDED_VALUE. A refused request (nothing stored) ends in OtlpRoute.answer.
    pushed.dropped = dict(rejected.by_reason)  # histograms, summaries, delta sums too
    record_push("otlp", pushed)  # refusals: counted by api.metrics.RequestMetrics by status
    content = otlp.export_response(wire, rejected)
    return Response(content, media_type=otlp.MEDIA_TYPES[wire])
