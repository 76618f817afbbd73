"""Every HTTP call the dashboard makes: the linkcast REST API, read with a bearer token.

One ``httpx.Client`` per (URL, token) is shared by all sessions (``st.cache_resource``);
GET results are cached briefly (``st.cache_data``) so a page's widgets and its
auto-refresh do not hammer the API. Failures become :class:`ApiError` with a message
for the operator; pages show it with :func:`ui.common.show_error`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import streamlit as st

DEFAULT_API_URL = "http://127.0.0.1:8000"
TTL_SECONDS = 10
TIMEOUT_SECONDS = 10.0
MODELS = ("liquid", "incremental", "persistence", "seasonal", "hybrid")

Row = dict[str, Any]


class ApiError(RuntimeError):
    """The API could not answer; ``kind`` is unreachable, auth, not_found or http.

    ``status`` is the HTTP status when the API answered (None when it could not be
    reached) and ``detail`` the API's own words for what was wrong, as its error body's
    ``detail`` says it (the message otherwise)."""

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.detail = message if detail is None else detail


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str | None


def config() -> Config:
    """Where the API is and the token to use, from ``LINKCAST_API_URL`` and ``LINKCAST_TOKEN``."""
    url = os.environ.get("LINKCAST_API_URL", "").strip() or DEFAULT_API_URL
    token = os.environ.get("LINKCAST_TOKEN", "").strip() or None
    return Config(url.rstrip("/"), token)


@st.cache_resource(show_spinner=False)
def http_client(api_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=api_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_SECONDS,
    )


def link_path(link: str) -> str:
    """A link name as a URL path segment (names hold ``>``, ``/``, ``:``).

    >>> link_path("r1:xe-0/0/1")
    'r1%3Axe-0%2F0%2F1'
    """
    return quote(link, safe="")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _get(cfg: Config, path: str, params: dict[str, Any] | None = None) -> Any:
    if cfg.token is None:
        raise ApiError("auth", "no token")
    clean = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        response = http_client(cfg.api_url, cfg.token).get(path, params=clean)
    except httpx.TransportError as exc:
        raise ApiError(
            "unreachable", f"cannot reach the linkcast API at {cfg.api_url} ({exc})"
        ) from None
    code = response.status_code
    if code in (401, 403):
        raise ApiError("auth", f"the API refused the token ({code})", status=code)
    if code == 404:
        detail = _detail(response)
        raise ApiError("not_found", detail, status=code, detail=detail)
    if code == 503:
        raise ApiError(
            "unreachable", "the API cannot reach its database right now (503)", status=code
        )
    if code >= 400:
        detail = _detail(response)
        raise ApiError("http", f"{path}: {code} {detail}", status=code, detail=detail)
    return response.json()


def _detail(response: httpx.Response) -> str:
    """The error body's ``detail``: FastAPI's own text, or its validation errors (a list
    of ``{loc, msg}``) as ``where: what`` clauses.

    >>> _detail(httpx.Response(422, json={"detail": "unknown links: 'x>y'"}))
    "unknown links: 'x>y'"
    >>> _detail(httpx.Response(422, json={"detail": [
    ...     {"loc": ["query", "threshold"], "msg": "Input should be greater than 0"}]}))
    'threshold: Input should be greater than 0'
    >>> _detail(httpx.Response(502, text="bad gateway"))
    'bad gateway'
    """
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:300]
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg', d)}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    return str(detail)[:300]


# --- cached GETs: arguments are the cache key --------------------------------------------


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def health(cfg: Config) -> Row:
    """``/readyz``: whether the API and its database answer (no token needed)."""
    try:
        response = httpx.get(f"{cfg.api_url}/readyz", timeout=TIMEOUT_SECONDS)
    except httpx.TransportError as exc:
        raise ApiError(
            "unreachable", f"cannot reach the linkcast API at {cfg.api_url} ({exc})"
        ) from None
    return {"status_code": response.status_code, "ok": response.status_code == 200}


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def links(cfg: Config) -> list[Row]:
    rows: list[Row] = []
    while True:
        page = _get(cfg, "/api/v1/links", {"offset": len(rows), "limit": 1000})
        rows += page["data"]
        if not page["data"] or len(rows) >= page.get("total", len(rows)):
            return rows


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def samples(cfg: Config, link: str, start: datetime, end: datetime, pages: int = 5) -> list[Row]:
    """Samples in ``[start, end)``, following ``next_start`` for at most ``pages`` pages."""
    rows: list[Row] = []
    params: dict[str, Any] = {"start": _iso(start), "end": _iso(end), "limit": 10_000}
    for _ in range(pages):
        page = _get(cfg, f"/api/v1/links/{link_path(link)}/samples", params)
        rows += page["data"]
        if not page.get("next_start"):
            break
        params["start"] = page["next_start"]
    return rows


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def forecasts(
    cfg: Config,
    link: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model: str | None = None,
    step: int | None = None,
    latest: bool = False,
) -> list[Row]:
    params = {
        "start": _iso(start),
        "end": _iso(end),
        "model": model,
        "step": step,
        "latest": "true" if latest else None,
        "limit": 100_000,
    }
    return _get(cfg, f"/api/v1/links/{link_path(link)}/forecasts", params)["data"]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def links_latest(cfg: Config, model: str = "hybrid") -> list[Row]:
    """Every link's newest sample and forecast peak, in one request."""
    return _get(cfg, "/api/v1/links/latest", {"model": model})["data"]


def _parallel(fn: Any, names: Iterable[str]) -> list[Any]:
    names = list(names)
    if len(names) <= 1:
        return [fn(n) for n in names]
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return list(pool.map(fn, names))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def alerts(
    cfg: Config, *, state: str | None = None, kind: str | None = None, link: str | None = None
) -> list[Row]:
    return _get(cfg, "/api/v1/alerts", {"state": state, "kind": kind, "link": link})["data"]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def silences(cfg: Config) -> list[Row]:
    """Silences not yet expired (active, or starting later)."""
    return _get(cfg, "/api/v1/silences")["data"]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def events(cfg: Config, *, kind: str | None = None) -> list[Row]:
    return _get(cfg, "/api/v1/events", {"kind": kind, "limit": 10_000})["data"]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def event_errors(cfg: Config, event_id: int, *, before: int = 30, after: int = 120) -> Row:
    return _get(cfg, f"/api/v1/events/{event_id}/errors", {"before": before, "after": after})


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def reverses(cfg: Config) -> dict[str, str]:
    """Each link of the topology with a link back (``GET /topology``'s ``reverse``)."""
    links = _get(cfg, "/api/v1/topology")["links"]
    return {x["name"]: x["reverse"] for x in links if x["reverse"] is not None}


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def models(cfg: Config) -> list[Row]:
    return _get(cfg, "/api/v1/models")["data"]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def whatif(
    cfg: Config,
    fail: tuple[str, ...],
    *,
    model: str | None = None,
    threshold: float | None = None,
    cable: bool = True,
) -> Row:
    """``GET /api/v1/whatif``: every link's forecast load (bit/s) and utilisation (load
    over capacity, 1.0 = full) over the horizon with the links ``fail`` failed (with
    ``cable``, their reverses too), the links that would pass ``threshold`` (a fraction
    of capacity) and the demand left unroutable. An unknown link is :class:`ApiError`
    with ``status`` 404 or 422; no forecast yet, ``status`` 409; both with the API's
    ``detail``."""
    params = {
        "fail": list(fail),
        "model": model,
        "threshold": threshold,
        "cable": "true" if cable else "false",
    }
    return _get(cfg, "/api/v1/whatif", params)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def risk(
    cfg: Config,
    *,
    model: str | None = None,
    limit: int | None = None,
    threshold: float | None = None,
) -> Row:
    """``GET /api/v1/risk``: the N-1 scan, every single cable failure (a link and its
    reverse) with the worst utilisation it would cause within the horizon, worst first
    (``limit`` of them)."""
    params = {"model": model, "limit": limit, "threshold": threshold}
    return _get(cfg, "/api/v1/risk", params)


@dataclass(frozen=True)
class Grid:
    """The forecast grid the engine runs on: ``step_seconds`` (s) and ``horizon`` (steps)."""

    step_seconds: int
    horizon: int


@st.cache_data(ttl=60, show_spinner=False)
def grid(cfg: Config) -> Grid:
    body = _get(cfg, "/api/v1/models")
    return Grid(int(body["step_seconds"]), int(body["horizon"]))
