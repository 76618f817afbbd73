"""Models: versions, last retrain and recent error."""

from datetime import datetime

import pandas as pd
import streamlit as st

from ui import charts, client, transforms
from ui.common import REFRESH_SECONDS, bps_columns, fetch, setup

st.title("linkcast: models")
cfg = setup()

#: Models that never retrain: they adapt every step, or have nothing to learn.
ONLINE = {"liquid": "adapts online", "hybrid": "weights adapt online"}


def retrained(model: str, when: object) -> str:
    if isinstance(when, datetime) and not pd.isna(when):  # NaT is a datetime too
        return f"{when:%Y-%m-%d %H:%M:%S}"
    if model in ONLINE:
        return f"never ({ONLINE[model]})"
    return "not yet" if model == "incremental" else "never (nothing to learn)"


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    rows = fetch(cfg, lambda: client.models(cfg))
    df = transforms.frame(
        rows, ["name", "version", "last_retrain", "retrains", "rmse_bps", "mae_bps", "scored"]
    )
    if df.empty or df["version"].isna().all():
        st.info("The engine has not started yet: no model version is recorded.")
    df["last_retrain"] = [
        retrained(n, t) for n, t in zip(df["name"], df["last_retrain"], strict=True)
    ]
    shown, columns = bps_columns(df, {"rmse_bps": "RMSE, last hour", "mae_bps": "MAE, last hour"})
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "name": "model",
            "last_retrain": st.column_config.TextColumn("last retrain (UTC)"),
            "scored": st.column_config.NumberColumn("one-step errors scored"),
            **columns,
        },
    )
    board = transforms.leaderboard(rows)
    if board["mae_bps"].notna().any():
        st.altair_chart(charts.model_errors(board), width="stretch")
    else:
        st.info("No forecast has been scored in the last hour yet.")
    st.caption(
        "Only the incremental baseline is retrained (on a schedule); the liquid network "
        "adapts every step; persistence and seasonal have nothing to learn. "
        f"Refreshes every {REFRESH_SECONDS} s."
    )


live()
