"""Link: actual load, chosen models' forecasts with intervals, events, alerts, capacity."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from ui import charts, client, transforms
from ui.common import REFRESH_SECONDS, fetch, links_or_stop, setup

st.title("linkcast: link")
cfg = setup()
links = links_or_stop(cfg)
by_name = {link["name"]: link for link in links}
names = sorted(by_name)

query = st.query_params.get("link")
c1, c2, c3 = st.columns([3, 3, 2])
name = c1.selectbox("Link", names, index=names.index(query) if query in names else 0, key="link")
st.query_params["link"] = name
chosen = c2.multiselect(
    "Models", list(client.MODELS), default=["liquid", "incremental", "hybrid"], key="models"
)
horizon = c3.number_input(
    "Horizon step",
    min_value=1,
    max_value=1000,
    value=1,
    key="horizon",
    help="Past forecasts shown are those made this many steps ahead; the newest issue "
    "is shown beyond them, into the future.",
)

WINDOWS = {
    "15 min": timedelta(minutes=15),
    "1 hour": timedelta(hours=1),
    "6 hours": timedelta(hours=6),
    "1 day": timedelta(days=1),
    "7 days": timedelta(days=7),
}
AHEAD = {"none": timedelta(0), **WINDOWS}
r1, r2 = st.columns(2)
back = r1.selectbox("Look back", list(WINDOWS), index=1, key="back")
ahead = r2.selectbox(
    "Look ahead (forecasts)",
    list(AHEAD),
    index=1,
    key="ahead",
    help="The time range may reach into the future: the newest forecasts run up to the horizon.",
)


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    link = by_name[name]
    now = datetime.now(UTC)
    start, end = now - WINDOWS[back], now + AHEAD[ahead]  # slides with each refresh
    samples = transforms.frame(
        fetch(cfg, lambda: client.samples(cfg, name, start, end)), ["ts", "value_bps"]
    )
    step_rows, latest_rows = [], []
    for model in chosen:
        step_rows += fetch(
            cfg,
            lambda m=model: client.forecasts(
                cfg, name, start=start, end=end, model=m, step=int(horizon)
            ),
        )
        latest_rows += fetch(cfg, lambda m=model: client.forecasts(cfg, name, model=m, latest=True))
    lines = transforms.forecast_lines(step_rows, latest_rows)
    if not lines.empty:
        lines = lines[(lines["ts"] >= start) & (lines["ts"] <= end)]
    bands = transforms.event_bands(fetch(cfg, lambda: client.events(cfg)), name, start, end)
    markers = transforms.drift_markers(
        fetch(cfg, lambda: client.alerts(cfg, link=name)), name, start, end
    )

    m1, m2, m3 = st.columns(3)
    last = samples["value_bps"].iloc[-1] if not samples.empty else None
    m1.metric("latest load", transforms.human_bps(last))
    m2.metric("capacity", transforms.human_bps(link.get("capacity_bps")))
    util = transforms.utilisation(last, link.get("capacity_bps"))
    m3.metric("utilisation", "–" if util is None else f"{util:.0%}")

    if samples.empty and lines.empty:
        st.info(f"No samples or forecasts for {name} in this time range.")
        return
    st.altair_chart(
        charts.link_chart(
            samples, lines, bands, markers, link.get("capacity_bps"), now, start, end
        ),
        width="stretch",
    )
    st.caption(
        "Black: actual load. Dashed: forecasts made "
        f"{int(horizon)} step(s) ahead, then each model's newest issue; shaded: "
        "its interval. Bands: failures, maintenance, re-routes. Triangles: drift and "
        f"failure alerts. Red dotted: capacity. Refreshes every {REFRESH_SECONDS} s."
    )
    if not markers.empty:
        with st.expander(f"{len(markers)} alert(s) on this link in range"):
            st.dataframe(markers, hide_index=True, width="stretch")


live()
