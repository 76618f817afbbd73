"""InfluxDB's write API: Telegraf and InfluxDB clients push line protocol.

``POST /api/v2/write`` (InfluxDB 2.x, Telegraf's ``outputs.influxdb_v2``) and
``POST /write`` (1.x, ``outputs.influxdb``) take the same body and answer as InfluxDB
does, so that a collector pointed here needs no other change. The paths are
InfluxDB's own, hence no ``/api/v1`` prefix.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from fractions import Fraction
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from api.compression import Oversized, Undecodable, gunzip
from api.deps import CredentialsDep, SettingsDep, require
from api.line_protocol import (
    PRECISIONS_V1,
    PRECISIONS_V2,
    LineError,
    TooManyPoints,
    parse,
)
from api.metrics import REASON_BY_STATUS, record_push, record_refused
from api.push import BodyTooLarge, read_body, store_points
from api.series import BadPoint
from db.models import Scope

router = APIRouter(tags=["influx"])
FORMAT = "influx"  # the format label of the push metrics (api/metrics.py)

_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    413: "request too large",
    415: "unsupported media type",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    204: {"description": "Stored, all of it (no body)"},
    400: {"description": 'Bad line: `{"code": "invalid", "message": "... line N: ..."}`'},
    401: {"description": "Missing, invalid or revoked token"},
    403: {"description": "Token scope lacks write"},
    413: {"description": "Body (raw or decompressed) or its number of fields too large"},
    415: {"description": "A Content-Encoding other than gzip"},
    503: {"description": "Database unreachable: retry after `Retry-After` seconds"},
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/plain": {"schema": {"type": "string", "description": "line protocol"}}},
    }
}

_ROUTE: dict[str, Any] = {
    "status_code": 204,
    "response_class": Response,
    "responses": _ERRORS,
    "openapi_extra": _BODY,
}


class InfluxError(Exception):
    """A refusal, answered as InfluxDB answers: ``{"code": ..., "message": ...}``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.reason = reason or REASON_BY_STATUS.get(status, "malformed")  # for /metrics


async def influx_error(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler for :class:`InfluxError`."""
    assert isinstance(exc, InfluxError)
    return JSONResponse(
        {"code": _CODES.get(exc.status, "invalid"), "message": exc.message},
        status_code=exc.status,
        headers=exc.headers,
    )


_write_scope = require(Scope.WRITE)


def _v1_token(request: Request) -> str | None:
    """InfluxDB 1.x credentials: Basic auth's password, else the ``p`` query parameter."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InfluxError(401, "Basic credentials are not base64 of user:password") from None
        return password or None
    return request.query_params.get("p") or None


def _writer(v1: bool):  # noqa: ANN202 - returns a dependency
    def check(request: Request, creds: CredentialsDep) -> str:
        if creds is None and v1:
            token = _v1_token(request)
            if token is not None:
                creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        try:
            return _write_scope(request, creds)
        except HTTPException as exc:
            message = str(exc.detail)
            if creds is None:
                message = "missing token: send Authorization: Token <token>" + (
                    ", Basic auth with the token as password, or ?u=&p=<token>" if v1 else ""
                )
            raise InfluxError(exc.status_code, message, exc.headers) from None

    return check


async def _body(request: Request, limit: int) -> bytes:
    """The body, gunzipped if so encoded; at most ``limit`` bytes before and after."""
    try:
        body = await read_body(request, limit)
    except BodyTooLarge as exc:
        raise InfluxError(413, str(exc)) from None
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise InfluxError(415, f"Content-Encoding {encoding!r} is not supported; send gzip or none")
    try:
        return await run_in_threadpool(gunzip, body, limit)  # CPU: off the event loop
    except Oversized as exc:
        raise InfluxError(413, str(exc)) from None
    except Undecodable as exc:
        raise InfluxError(400, str(exc)) from None


async def _write(
    request: Request, settings: SettingsDep, precision: str, units: dict[str, Fraction]
) -> Response:
    """Parse and store. Every refusal is counted here (by reason, with its points once
    they are known) and answered by :func:`influx_error`; a stored batch by
    :func:`api.metrics.record_push`."""
    points: int | None = None
    try:
        if precision not in units:
            raise InfluxError(400, f"precision {precision!r} is not one of {', '.join(units)}")
        body = await _body(request, settings.max_body_bytes)
        if not body.strip():  # as InfluxDB answers an empty write
            raise InfluxError(400, "writing requires points")
        try:
            parsed = await run_in_threadpool(  # CPU: off the event loop
                partial(
                    parse,
                    unit=units[precision],
                    max_points=settings.max_batch_samples,
                    metrics=request.app.state.series_map.metrics,  # the series worth keeping
                ),
                body,
                now=time.time(),
            )
        except LineError as exc:
            raise InfluxError(400, f"failed to parse line protocol: {exc}") from None
        except TooManyPoints as exc:
            raise InfluxError(413, str(exc)) from None
        points = len(parsed.points)
        try:
            pushed = await store_points(request, parsed.points)
        except BadPoint as exc:
            message = f"line {parsed.lines[exc.index]}: {exc}"
            raise InfluxError(400, message, reason="invalid") from None
    except InfluxError as exc:
        record_refused(FORMAT, exc.reason, points)
        raise
    if parsed.non_numeric:
        pushed.dropped["non_numeric"] = parsed.non_numeric
    record_push(FORMAT, pushed)
    return Response(status_code=204)


@router.post("/api/v2/write", **_ROUTE)
async def write_v2(
    request: Request,
    _: Annotated[str, Depends(_writer(v1=False))],
    settings: SettingsDep,
    org: str | None = None,
    bucket: str | None = None,
    precision: Annotated[str, Query(json_schema_extra={"enum": list(PRECISIONS_V2)})] = "ns",
) -> Response:
    """Store InfluxDB line protocol, all of it or nothing (InfluxDB 2.x write API).

    Body: line protocol, plain or ``Content-Encoding: gzip``, at most
    ``LINKCAST_MAX_BODY_BYTES`` before and after decompression and
    ``LINKCAST_MAX_BATCH_SAMPLES`` numeric fields. ``precision``: the timestamps'
    unit, ``ns`` (default), ``us``, ``ms`` or ``s``; a point without one is stored at
    the request's time. ``org`` and ``bucket`` are accepted and ignored (linkcast has
    one store). Auth: ``Authorization: Token <token>`` (or ``Bearer``), scope write.

    Each numeric field is the series ``<measurement>_<field>`` with the tags as
    labels; ``LINKCAST_SERIES_FILE`` (or the defaults: Telegraf's snmp interface table
    and net, ``link_load,link=A>B bps=...``) says which are link loads, counters
    (turned into bit/s) or capacities. Others, and string or boolean fields, are
    left out. Answers 204 with no body; 400 ``{"code": "invalid", "message": ...}``
    naming the line (1-based) for a syntax error, a NaN, a negative value or a
    timestamp out of range, an empty body (``writing requires points``), an unknown
    precision or corrupt gzip; 413 ``request too
    large``; 401/403; 503 with ``Retry-After`` if the database is unreachable.
    """
    return await _write(request, settings, precision, PRECISIONS_V2)


@router.post("/write", **_ROUTE)
async def write_v1(
    request: Request,
    _: Annotated[str, Depends(_writer(v1=True))],
    settings: SettingsDep,
    db: str | None = None,
    precision: Annotated[str, Query(json_schema_extra={"enum": list(PRECISIONS_V1)})] = "ns",
) -> Response:
    """Store InfluxDB line protocol, all or nothing (InfluxDB 1.x ``/write``).

    As ``POST /api/v2/write``; ``precision`` also takes 1.x's ``n``, ``u``, ``m``
    (minutes) and ``h``; ``db`` is ignored. Auth also as 1.x clients send it: the
    token as Basic auth's password or as ``?p=`` (``u`` ignored; a query string is
    logged by proxies, prefer the header).
    """
    return await _write(request, settings, precision, PRECISIONS_V1)
