"""What every page shares: the API settings, clear messages instead of tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from ui import client
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
