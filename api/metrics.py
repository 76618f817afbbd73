"""The API's own metrics: what each push format took and refused, request latency, and
the forecasts, utilisation and alerts read from the database at scrape time.

Push routes count with two calls, whatever their format (``fmt``: ``json``,
``remote_write``, ``influx``, ``otlp``):

- :func:`record_push` (or :func:`record_accepted` for JSON telemetry) once the batch is
  stored;
- :func:`record_refused` with a reason (``malformed``, ``invalid``, ``too_large``,
  ``unauthorized``, ``unsupported``, ``unavailable``) and, when known, the number of
  samples refused with the request.

A refusal that no route code sees (the token check, a database that cannot be reached
answered 503 by the app's handler) is counted by :class:`RequestMetrics` from the
status of a push route's answer (:data:`PUSH_ROUTES`), unless the route counted it.

Counters and histograms are prometheus-client's, multiprocess-safe when the command set
``PROMETHEUS_MULTIPROC_DIR`` (linkcast/metrics.py). The gauges from the database
(:class:`DatabaseCollector`) are read by whichever process serves the scrape, so they
are right with any number of workers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from db.metrics import alert_counts
from db.models import AlertKind, AlertState, ModelName
from db.queries import links_latest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from api.push import Pushed

log = logging.getLogger(__name__)

#: The push routes (templates as FastAPI matches them) and their ``format`` label.
PUSH_ROUTES: Mapping[str, str] = {
    "/api/v1/telemetry": "json",
    "/api/v1/write": "remote_write",
    "/api/v2/write": "influx",
    "/write": "influx",
    "/v1/metrics": "otlp",
}
#: The reason a push refused with this status gave, when its route did not say.
REASON_BY_STATUS: Mapping[int, str] = {
    400: "malformed",
    401: "unauthorized",
    403: "unauthorized",
    413: "too_large",
    415: "unsupported",
    422: "invalid",
    503: "unavailable",
}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SAMPLES_ACCEPTED = Counter(
    "linkcast_samples_accepted",
    "Samples stored, by push format (json: every sample of a stored batch, as its answer's"
    " accepted; series formats: link loads stored, gauges and counter rates).",
    ["format"],
)
SAMPLES_QUARANTINED = Counter(
    "linkcast_samples_quarantined",
    "Samples stored but marked over_line_rate at ingest (above capacity plus the margin).",
    ["format"],
)
SAMPLES_REFUSED = Counter(
    "linkcast_samples_refused",
    "Samples in refused pushes, by format and reason, where the count is known.",
    ["format", "reason"],
)
REQUESTS_REFUSED = Counter(
    "linkcast_push_requests_refused",
    "Push requests refused (nothing stored), by format and reason.",
    ["format", "reason"],
)
SERIES_DROPPED = Counter(
    "linkcast_series_dropped",
    "Series points pushed that are not link loads: no_rule (no series rule matched),"
    " missing_label (a rule matched, the link's labels were missing), bad_link_name (the"
    " name they make is blank, too long or not printable), unknown_capacity"
    " (a speed of 0 or below), staleness_marker (remote write), non_numeric (line"
    " protocol strings and booleans), histogram, exponential_histogram, summary,"
    " delta_sum (OTLP).",
    ["format", "reason"],
)
COUNTER_READINGS = Counter(
    "linkcast_counter_readings",
    "Counter readings turned into rates, by what each was: baseline (first), wrap, reset,"
    " implausible (a rise faster than the line), gap (too far from the previous), stale,"
    " future (ahead of the clock).",
    ["format", "event"],
)
CAPACITIES = Counter(
    "linkcast_capacities_updated",
    "Links whose capacity_bps a push set or changed.",
    ["format"],
)
REQUEST_SECONDS = Histogram(
    "linkcast_http_request_duration_seconds",
    "HTTP request latency in seconds, from the request to the end of the answer, by method,"
    " route template (unmatched: no route) and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# The reasons a push request's route recorded; the middleware counts the rest.
_refusals: ContextVar[list[str] | None] = ContextVar("linkcast_refusals", default=None)


def record_accepted(fmt: str, samples: int, quarantined: int = 0) -> None:
    """Count a stored batch of ``samples``, ``quarantined`` of them over their line rate."""
    SAMPLES_ACCEPTED.labels(fmt).inc(samples)
    SAMPLES_QUARANTINED.labels(fmt).inc(quarantined)


def record_push(fmt: str, pushed: Pushed) -> None:
    """Count what :func:`api.push.store_points` did for one request of format ``fmt``."""
    record_accepted(fmt, pushed.stored, pushed.quarantined)
    if pushed.capacities:
        CAPACITIES.labels(fmt).inc(pushed.capacities)
    for reason, n in pushed.dropped.items():
        SERIES_DROPPED.labels(fmt, reason).inc(n)
    for event, n in pushed.counter_events.items():
        COUNTER_READINGS.labels(fmt, event).inc(n)


def record_refused(fmt: str, reason: str, samples: int | None = None) -> None:
    """Count one refused push request and, if known, the ``samples`` it carried."""
    REQUESTS_REFUSED.labels(fmt, reason).inc()
    if samples is not None:
        SAMPLES_REFUSED.labels(fmt, reason).inc(samples)
    recorded = _refusals.get()
    if recorded is not None:
        recorded.append(reason)


class RequestMetrics:
    """ASGI middleware: every request's latency by method, route template and status
    (a raw path never becomes a label), and push refusals their route did not count."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes the app is answered 500 above us
        recorded: list[str] = []
        token = _refusals.set(recorded)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _refusals.reset(token)
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUEST_SECONDS.labels(method, route, str(status)).observe(time.perf_counter() - start)
            fmt = PUSH_ROUTES.get(route)
            if fmt is not None and method == "POST" and status >= 400 and not recorded:
                record_refused(fmt, REASON_BY_STATUS.get(status, "error"))


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/links/{link}/samples``), or
    ``unmatched``.

    FastAPI 0.16x keeps an included router's routes as they were declared, without the
    prefix, and records the full template of the one it chose in its part of the scope
    (not a documented key: a change shows as route labels without ``/api/v1`` in
    tests/api/test_metrics.py); earlier versions copied each route with its full path.
    """
    chosen = scope.get("fastapi", {}).get("effective_route_context")
    for route in (chosen, scope.get("route")):
        template = getattr(route, "path_format", None)
        if isinstance(template, str) and template:
            return template
    return "unmatched"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


class DatabaseCollector:
    """Gauges read from the database at scrape time, two queries in all:

    - ``linkcast_forecast_peak_bps{link}``: the largest value, in bit/s, of the hybrid
      model's newest forecast of the link (over its whole horizon);
    - ``linkcast_forecast_utilization_ratio{link}``: that peak over the link's
      ``capacity_bps`` (links with a capacity only; above 1 means over capacity);
    - ``linkcast_link_load_bps{link}``: the newest plausible (``ok``) sample, however
      old, as ``GET /api/v1/links/latest`` gives it;
    - ``linkcast_forecast_last_issued_timestamp_seconds``: when the newest hybrid
      forecast was issued (Unix seconds), to alert on an engine that stopped;
    - ``linkcast_alerts{kind,state}``: alerts stored, every kind and state (0 if none);
      resolved ones stay until retention removes them;
    - ``linkcast_database_up``: 1, or 0 when the database could not be read (the others
      are then left out, and the scrape still answers).
    """

    STATEMENT_TIMEOUT_MS = 5000

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "linkcast_database_up", "1 if this scrape read the database, 0 if it could not."
        )
        try:
            with self.sessions() as session:
                session.execute(text(f"SET LOCAL statement_timeout = {self.STATEMENT_TIMEOUT_MS}"))
                links = links_latest(session=session, model=ModelName.HYBRID)
                alerts = alert_counts(session=session)
        except (SQLAlchemyError, psycopg.Error) as exc:
            log.warning("metrics: database unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._links(links)
        yield self._alerts(alerts)

    @staticmethod
    def _links(rows: list[dict[str, Any]]) -> Iterator[Metric]:
        peak = GaugeMetricFamily(
            "linkcast_forecast_peak_bps",
            "Peak of the hybrid model's newest forecast of the link over its horizon, bit/s.",
            labels=["link"],
        )
        ratio = GaugeMetricFamily(
            "linkcast_forecast_utilization_ratio",
            "Forecast peak over the link's capacity_bps (links with a capacity).",
            labels=["link"],
        )
        load = GaugeMetricFamily(
            "linkcast_link_load_bps",
            "The link's newest plausible (ok) sample, bit/s.",
            labels=["link"],
        )
        issued: float | None = None
        for row in rows:
            name = row["name"]
            value = _finite(row["value_bps"])
            if value is not None:
                load.add_metric([name], value)
            top = _finite(row["peak_bps"])
            if top is None:
                continue
            peak.add_metric([name], top)
            capacity = _finite(row["capacity_bps"])
            if capacity:
                ratio.add_metric([name], top / capacity)
            stamp = row["issued_at"].timestamp()
            issued = stamp if issued is None else max(issued, stamp)
        yield from (peak, ratio, load)
        if issued is not None:
            yield GaugeMetricFamily(
                "linkcast_forecast_last_issued_timestamp_seconds",
                "When the newest hybrid forecast was issued, Unix seconds.",
                value=issued,
            )

    @staticmethod
    def _alerts(counts: dict[tuple[str, str], int]) -> Metric:
        family = GaugeMetricFamily(
            "linkcast_alerts", "Alerts stored, by kind and state.", labels=["kind", "state"]
        )
        keys = {(k, s) for k in AlertKind.ALL for s in AlertState.ALL} | set(counts)
        for kind, state in sorted(keys):
            family.add_metric([kind, state], counts.get((kind, state), 0))
        return family
