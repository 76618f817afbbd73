"""Overview: the network coloured by utilisation now and by forecast peak; alerts; models."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from ui import charts, client, transforms
from ui.common import REFRESH_SECONDS, fetch, links_or_stop, setup

st.title("linkcast: overview")
cfg = setup()


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    links = links_or_stop(cfg)
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    latest = fetch(cfg, lambda: client.links_latest(cfg, "hybrid"))
    now_rows = transforms.recent_loads(latest, since)
    now_bps = {k: float(r["value_bps"]) for k, r in now_rows.items()}
    peak_bps = {r["name"]: float(r["peak_bps"]) for r in latest if r["peak_bps"] is not None}
    positions = transforms.node_positions(links)
    segments = transforms.network_segments(links, positions, now_bps, peak_bps)
    nodes = transforms.nodes_frame(positions)

    alerts = fetch(cfg, lambda: client.alerts(cfg))
    active = [a for a in alerts if a["state"] in ("pending", "firing")]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("links", len(links))
    c2.metric("reporting (last 30 min)", len(now_rows))
    c3.metric("firing alerts", sum(a["state"] == "firing" for a in active))
    c4.metric("pending alerts", sum(a["state"] == "pending" for a in active))

    if segments.empty:
        st.info("The links have no source and destination nodes to draw.")
    else:
        left, right = st.columns(2)
        left.altair_chart(
            charts.network(segments, nodes, "utilisation_now", "utilisation now"),
            width="stretch",
        )
        right.altair_chart(
            charts.network(
                segments, nodes, "utilisation_peak", "forecast peak within the horizon (hybrid)"
            ),
            width="stretch",
        )
        if segments["capacity_bps"].isna().all():
            st.caption("No link has a capacity: register capacities to colour by utilisation.")

    st.subheader("Active alerts")
    if active:
        st.dataframe(transforms.alerts_table(active), hide_index=True, width="stretch")
    else:
        st.success("No pending or firing alerts.", icon=":material/check_circle:")

    st.subheader("Models by recent error")
    board = transforms.leaderboard(fetch(cfg, lambda: client.models(cfg)))
    if board["scored"].fillna(0).sum() == 0:
        st.info("No forecast has been scored in the last hour yet.")
    st.dataframe(
        board,
        hide_index=True,
        width="stretch",
        column_config={
            "mae_bps": st.column_config.NumberColumn("MAE (bit/s)", format="%.3e"),
            "rmse_bps": st.column_config.NumberColumn("RMSE (bit/s)", format="%.3e"),
        },
    )
    st.caption(f"Refreshes every {REFRESH_SECONDS} s · API {cfg.api_url}")


live()
