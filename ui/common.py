"""What every page shares: the API settings, clear messages instead of tracebacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import streamlit as st

from ui import client, transforms
from ui.client import ApiError, Config

REFRESH_SECONDS = 15

T = TypeVar("T")

TOKEN_HELP = """\
The dashboard reads the API with a bearer token (the `read` scope is enough). Create one
and start the dashboard with it:

```bash
export LINKCAST_TOKEN=$(linkcast token create --scope read)
export LINKCAST_API_URL={url}
linkcast ui
```

`linkcast up` sets both for you."""

EMPTY_HELP = (
    "No links yet: the database is empty. Push telemetry to `POST /api/v1/telemetry`, "
    "or run `linkcast up --demo` (or `linkcast simulate --push URL --token T`) to feed a "
    "simulated network."
)


#: Column settings for every alerts table: times in UTC, the message given room.
ALERT_COLUMN_CONFIG = {
    "onset": st.column_config.DatetimeColumn("onset (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "magnitude": st.column_config.TextColumn(
        "magnitude", help="change of level in %, or the share of capacity"
    ),
    "message": st.column_config.TextColumn("message", width="large"),
    "link": st.column_config.TextColumn("link(s)", width="medium"),
    "part_of": st.column_config.TextColumn(
        "part of", help="the failure alert this one is grouped under (only it is notified)"
    ),
    "state": st.column_config.TextColumn("state", width="small"),
    "kind": st.column_config.TextColumn("kind", width="small"),
    "silenced": st.column_config.CheckboxColumn(
        "silenced", help="a silence matches it: no notification goes out"
    ),
}
#: What an operator reads first: the state, the kind, the message; then the rest.
ALERT_ORDER = (
    "state",
    "kind",
    "message",
    "link",
    "part_of",
    "silenced",
    "magnitude",
    "onset",
    "model",
    "id",
)


def setup() -> Config:
    """The page's API settings; stops the page with instructions when there is no token."""
    cfg = client.config()
    if cfg.token is None:
        st.warning("No API token: set `LINKCAST_TOKEN`.", icon=":material/key:")
        st.markdown(TOKEN_HELP.format(url=cfg.api_url))
        st.stop()
    return cfg


def show_error(err: ApiError, cfg: Config) -> None:
    if err.kind == "unreachable":
        st.error(
            f"**The linkcast API is unreachable.** {err}\n\n"
            f"Is `linkcast api` (or `linkcast up`) running? The dashboard uses "
            f"`LINKCAST_API_URL={cfg.api_url}`. This page retries on its own.",
            icon=":material/cloud_off:",
        )
    elif err.kind == "auth":
        st.error(f"**The API refused the token.** {err}", icon=":material/key_off:")
        st.markdown(TOKEN_HELP.format(url=cfg.api_url))
    else:
        st.error(f"**The API answered with an error.** {err}", icon=":material/error:")


def fetch(cfg: Config, get: Callable[[], T]) -> T:
    """``get()``, or the page stops with a clear message when the API cannot answer."""
    try:
        return get()
    except ApiError as err:
        show_error(err, cfg)
        st.stop()
        raise  # st.stop() raises; this keeps type checkers honest


def links_or_stop(cfg: Config) -> list[dict]:
    rows = fetch(cfg, lambda: client.links(cfg))
    if not rows:
        st.info(EMPTY_HELP, icon=":material/database:")
        st.stop()
    return rows


def link_states(cfg: Config, links: list[dict], latest: list[dict]) -> dict[str, str]:
    """Every link's status (``ui.transforms.LINK_STATUSES``) now: open failures from the
    events (and the reverse of each: the IGP, and the engine, take a link down both
    ways), staleness from the newest sample against the engine's grid step."""
    grid = fetch(cfg, lambda: client.grid(cfg))
    down = transforms.open_failures(fetch(cfg, lambda: client.events(cfg)))
    if down:
        try:
            down = transforms.with_reverses(down, client.reverses(cfg))
        except client.ApiError:  # the links the events name are still down
            pass
    known = {r["name"] for r in latest}
    rows = latest + [{"name": x["name"], "ts": None} for x in links if x["name"] not in known]
    return transforms.link_status(rows, down, grid.step_seconds)


def warn_if_network_silent(cfg: Config, latest: list[dict]) -> None:
    """A banner when no link at all has reported lately: the collectors, or the path
    from them, are down (each link's own status is measured against the network)."""
    grid = fetch(cfg, lambda: client.grid(cfg))
    lag = transforms.network_lag(latest, datetime.now(UTC))
    limit = max(transforms.STALE_STEPS * grid.step_seconds, transforms.STALE_FLOOR_SECONDS)
    if lag is not None and lag > limit + client.TTL_SECONDS:
        st.warning(
            f"No link has reported for {transforms.duration_text(lag)}: are the "
            "collectors (or the demo feeder) running?",
            icon=":material/sensors_off:",
        )


def bps_columns(df: Any, labels: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Columns of loads in bit/s shown in one SI unit: ``df`` with ``labels``' columns
    scaled, and their column configs (``label (unit)``), so a column reads ``61.2`` under
    ``MAE (Mbit/s)`` and the columns compare at a glance."""
    values = [v for col in labels for v in df[col].tolist()]
    unit, scale = transforms.bps_unit(values)
    config = {
        col: st.column_config.NumberColumn(f"{label} ({unit})", format="%.3g")
        for col, label in labels.items()
    }
    return transforms.in_unit(df, list(labels), scale), config


def url_choice(key: str, choices: Sequence[T], default: T) -> T:
    """The URL's ``key`` when it names one of ``choices`` (compared as text), else
    ``default``: a stale or mangled link falls back, never an error."""
    given = st.query_params.get(key)
    return next((c for c in choices if str(c) == given), default)


def url_list(key: str, choices: Sequence[str], default: list[str]) -> list[str]:
    """The URL's comma-separated ``key``, keeping only known ``choices``; else ``default``."""
    given = [v for v in st.query_params.get(key, "").split(",") if v in choices]
    return given or default


def url_int(key: str, low: int, high: int, default: int) -> int:
    """The URL's integer ``key`` clamped to ``[low, high]``, else ``default``."""
    try:
        return min(max(int(st.query_params.get(key, default)), low), high)
    except ValueError:
        return default
