"""What every push format shares once its body is decoded into series points.

A route decodes its format (remote write, line protocol, OTLP) into an
:class:`api.series.SeriesBatch` (or :class:`api.series.Point` values), then calls
:func:`store_batch` (:func:`store_points`): the samples are
mapped to links by the app's :class:`api.series.SeriesMap` (``LINKCAST_SERIES_FILE``)
and stored in one transaction by :func:`db.ingest.write_series`, all or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.series import Point, SeriesBatch, SeriesMap
from db.ingest import write_series
from linkcast.settings import Settings


class BodyTooLarge(ValueError):
    """A request body over the limit; the message says which (declared or streamed)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes: refused from ``Content-Length`` before
    reading when it declares more, else as soon as the stream passes the limit.

    Raises :class:`BodyTooLarge`; each route answers it as its format's 413.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# The oldest time a pushed series may carry: 2000-01-01. Nothing earlier is a load of a
# live network; it is a timestamp in the wrong unit (seconds sent as line protocol's
# default nanoseconds land in 1970), refused rather than stored where no one looks.
EARLIEST_TS = 946_684_800.0


@dataclass
class Pushed:
    """What one request did: points received, samples stored (gauges and counter
    rates), quarantined among them, capacities changed, points dropped by reason
    (``no_rule``, ``missing_label``, ``bad_link_name``, ``unknown_capacity``; a route adds
    its own) and
    counter readings by event (``baseline``, ``wrap``, ``reset``, ``implausible``,
    ``gap``, ``stale``, ``future``: :mod:`db.counters`)."""

    received: int
    stored: int = 0
    quarantined: int = 0
    capacities: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    counter_events: dict[str, int] = field(default_factory=dict)


async def store_points(request: Request, points: Sequence[Point]) -> Pushed:
    """:func:`store_batch` of ``points``, each its own series."""
    return await store_batch(request, SeriesBatch.of_points(points))


async def store_batch(request: Request, batch: SeriesBatch) -> Pushed:
    """Map the samples of ``batch`` to links and store them, all or nothing.

    Raises :class:`api.series.BadPoint` (the route answers 400 naming it in its own
    format's terms) before anything is stored; a database that cannot be reached
    raises what the app's handlers turn into a 503 with ``Retry-After``.
    """
    settings: Settings = request.app.state.settings
    series: SeriesMap = request.app.state.series_map
    mapped = series.map_batch(
        batch, latest=time.time() + settings.max_future_seconds, earliest=EARLIEST_TS
    )
    written = await run_in_threadpool(
        partial(
            write_series,
            line_rate_margin=settings.line_rate_margin,
            counter_max_gap=settings.counter_max_gap_seconds,
        ),
        request.app.state.engine,
        mapped.gauges,
        mapped.counters,
        mapped.capacities,
        request.app.state.link_ids,
    )
    return Pushed(
        received=len(batch),
        stored=written.rows,
        quarantined=written.quarantined,
        capacities=written.capacities,
        dropped=mapped.dropped,
        counter_events=written.counter_events,
    )
