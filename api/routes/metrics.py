"""GET /metrics: linkcast's own metrics for Prometheus, outside /api/v1 and without a
token, as exporters serve them (keep the port off the internet, or put the scrape
behind a proxy that checks one)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import SettingsDep
from api.metrics import DatabaseCollector
from linkcast.metrics import exposition

router = APIRouter(tags=["metrics"])


# Prometheus' text format, not JSON: left out of the OpenAPI schema (README lists them).
@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Counters and histograms of every local linkcast process (linkcast/metrics.py) and
    the forecast, utilisation and alert gauges read from the database now."""
    body = exposition(settings.data_dir, DatabaseCollector(request.app.state.sessionmaker))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
