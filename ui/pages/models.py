"""Models: versions, last retrain and recent error."""

import streamlit as st

from ui import charts, client, transforms
from ui.common import REFRESH_SECONDS, fetch, setup

st.title("linkcast: models")
cfg = setup()


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    rows = fetch(cfg, lambda: client.models(cfg))
    df = transforms.frame(
        rows, ["name", "version", "last_retrain", "retrains", "rmse_bps", "mae_bps", "scored"]
    )
    if df.empty or df["version"].isna().all():
        st.info("The engine has not started yet: no model version is recorded.")
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        column_config={
            "name": "model",
            "last_retrain": st.column_config.DatetimeColumn("last retrain (UTC)"),
            "rmse_bps": st.column_config.NumberColumn("RMSE, last hour (bit/s)", format="%.3e"),
            "mae_bps": st.column_config.NumberColumn("MAE, last hour (bit/s)", format="%.3e"),
            "scored": st.column_config.NumberColumn("one-step errors scored"),
        },
    )
    board = transforms.leaderboard(rows)
    if board["mae_bps"].notna().any():
        st.altair_chart(charts.model_errors(board), width="stretch")
    else:
        st.info("No forecast has been scored in the last hour yet.")
    st.caption(
        "Only the incremental baseline is retrained (on a schedule); the liquid network "
        f"adapts every step. Refreshes every {REFRESH_SECONDS} s."
    )


live()
