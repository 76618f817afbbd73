"""The FastAPI app factory: settings, database, routers, error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request

from api import errors
from api.metrics import RequestMetrics
from api.routes import (
    alerts,
    events,
    forecasts,
    health,
    influx,
    links,
    metrics,
    models,
    otlp,
    remote_write,
    silences,
    telemetry,
    topology,
    whatif,
)
from api.tokens import TokenCache
from db.ingest import LinkIds
from db.session import make_engine, make_sessionmaker
from linkcast.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token_cache.start()  # reads the token table's generation (api/tokens.py)
        yield
        app.state.token_cache.stop()
        app.state.engine.dispose()

    app = FastAPI(
        title="linkcast",
        version="0.1.0",
        summary="Link-load telemetry in, forecasts out.",
        lifespan=lifespan,
        # Collectors and curl users often omit Content-Type; JSON is the only body we take.
        strict_content_type=False,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.token_cache = TokenCache(app.state.engine.url.render_as_string(False))
    app.state.link_ids = LinkIds()
    app.state.series_map = settings.series_map  # LINKCAST_SERIES_FILE, checked at start

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        malformed = any(e["type"] == "json_invalid" for e in detail)
        return JSONResponse({"detail": detail}, status_code=400 if malformed else 422)

    app.add_exception_handler(RequestValidationError, validation_error)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)  # GET /metrics: Prometheus, no token
    app.add_middleware(RequestMetrics)  # latency by route template, push refusals
    app.add_exception_handler(influx.InfluxError, influx.influx_error)
    app.include_router(influx.router)  # InfluxDB's own paths: /api/v2/write, /write
    app.include_router(otlp.router)  # POST /v1/metrics: OTLP/HTTP has its own path
    for router in (
        telemetry.router,
        remote_write.router,  # POST /api/v1/write: Prometheus remote write 1.0
        links.router,
        forecasts.router,
        alerts.router,
        events.router,
        models.router,
        silences.router,
        topology.router,
        whatif.router,  # GET /whatif and /risk (issue 10)
    ):
        app.include_router(router, prefix=API_PREFIX)
    return app
