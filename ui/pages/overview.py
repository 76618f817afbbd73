"""Overview: the network coloured by utilisation now and by forecast peak; alerts; models."""

import streamlit as st

from ui import charts, client, transforms
from ui.common import (
    ALERT_COLUMN_CONFIG,
    ALERT_ORDER,
    REFRESH_SECONDS,
    bps_columns,
    fetch,
    link_states,
    links_or_stop,
    setup,
    warn_if_network_silent,
)

st.title("linkcast: overview")
cfg = setup()


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    links = links_or_stop(cfg)
    latest = fetch(cfg, lambda: client.links_latest(cfg, "hybrid"))
    status = link_states(cfg, links, latest)
    warn_if_network_silent(cfg, latest)
    now_bps = {r["name"]: float(r["value_bps"]) for r in latest if r["value_bps"] is not None}
    peak_bps = {r["name"]: float(r["peak_bps"]) for r in latest if r["peak_bps"] is not None}
    positions = transforms.node_positions(links)
    segments = transforms.network_segments(links, positions, now_bps, peak_bps, status)
    nodes = transforms.nodes_frame(positions)
    labels = transforms.label_offsets(positions, width=330, height=300)  # one of two columns

    alerts = fetch(cfg, lambda: client.alerts(cfg))
    active = [a for a in alerts if a["state"] in ("pending", "firing")]
    counts = {s: sum(v == s for v in status.values()) for s in transforms.LINK_STATUSES}
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("links", len(links))
    c2.metric(
        "reporting",
        counts["up"],
        help="not down, and its newest sample not " + transforms.STALE_RULE,
    )
    c3.metric(
        "down",
        counts["down"],
        help="a failure event on it, or on its reverse, without a repair yet",
    )
    c4.metric(
        "stale or no data",
        counts["stale"] + counts["no data"],
        help="newest sample " + transforms.STALE_RULE + ", or never a sample",
    )
    c5.metric("firing alerts", sum(a["state"] == "firing" for a in active))

    if segments.empty:
        st.info("The links have no source and destination nodes to draw.")
    else:
        left, right = st.columns(2)
        left.altair_chart(
            charts.network(segments, nodes, labels, "utilisation_now", "utilisation now"),
            width="stretch",
        )
        right.altair_chart(
            charts.network(
                segments,
                nodes,
                labels,
                "utilisation_peak",
                "forecast peak within the horizon (hybrid)",
            ),
            width="stretch",
        )
        st.caption(
            "Colour: utilisation (load over capacity; darker past 100 %). Dashed: links not "
            "reporting a load (black: down, grey: stale, light grey: no data yet)."
        )
        if segments["capacity_bps"].isna().all():
            st.caption("No link has a capacity: register capacities to colour by utilisation.")
    silent = sorted(n for n, s in status.items() if s != "up")
    if silent:
        with st.expander(f"{len(silent)} link(s) not reporting"):
            st.dataframe(
                [{"link": n, "status": status[n]} for n in silent],
                hide_index=True,
                width="stretch",
            )

    st.subheader("Active alerts")
    if active:
        st.dataframe(
            transforms.alerts_table(active),
            hide_index=True,
            width="stretch",
            column_config=ALERT_COLUMN_CONFIG,
            column_order=ALERT_ORDER,
        )
    else:
        st.success("No pending or firing alerts.", icon=":material/check_circle:")

    st.subheader("Models by recent error")
    board = transforms.leaderboard(fetch(cfg, lambda: client.models(cfg)))
    if board["scored"].fillna(0).sum() == 0:
        st.info("No forecast has been scored in the last hour yet.")
    shown, columns = bps_columns(board, {"mae_bps": "MAE", "rmse_bps": "RMSE"})
    st.dataframe(shown, hide_index=True, width="stretch", column_config=columns)
    st.caption(f"Refreshes every {REFRESH_SECONDS} s · API {cfg.api_url}")


live()
