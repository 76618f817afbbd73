"""What every page shares: the API settings, clear messages instead of tracebacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
ALERT_COLUMNS = {
    "onset": st.column_config.DatetimeColumn("onset (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "magnitude": st.column_config.TextColumn(
        "magnitude", help="change of level in %, or the share of capacity"
    ),
    "message": st.column_config.TextColumn("message", width="large"),
    "link": st.column_config.TextColumn("link(s)", width="medium"),
}
#: What an operator reads first: the state, the kind, the message; then the rest.
ALERT_ORDER = ("state", "kind", "message", "link", "magnitude", "onset", "model", "id")


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
    events, staleness from the newest sample against the engine's grid step."""
    grid = fetch(cfg, lambda: client.grid(cfg))
    down = transforms.open_failures(fetch(cfg, lambda: client.events(cfg)))
    known = {r["name"] for r in latest}
    rows = latest + [{"name": x["name"], "ts": None} for x in links if x["name"] not in known]
    return transforms.link_status(rows, down, datetime.now(UTC), grid.step_seconds)


def bps_column(values: Iterable[float | None], label: str) -> tuple[float, Any]:
    """A table column of loads in one SI unit: the scale to divide by and its column
    config (``label (unit)``), so a column reads ``61.2`` under ``MAE (Mbit/s)``."""
    unit, scale = transforms.bps_unit(values)
    return scale, st.column_config.NumberColumn(f"{label} ({unit})", format="%.3g")
