"""Link: actual load, chosen models' forecasts with intervals, events, alerts, capacity.

The view is in the URL (``?link=...&models=...&back=...&ahead=...&step=...``), so a link
pasted into a ticket opens the same view; windows count grid steps, so they read the
same on the demo's 3-s grid and a 60-s production grid."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from ui import charts, client, transforms
from ui.common import (
    ALERT_COLUMN_CONFIG,
    REFRESH_SECONDS,
    fetch,
    link_states,
    links_or_stop,
    setup,
    url_choice,
    url_list,
)

st.title("linkcast: link")
cfg = setup()
links = links_or_stop(cfg)
grid = fetch(cfg, lambda: client.grid(cfg))
by_name = {link["name"]: link for link in links}
names = sorted(by_name)


query = st.query_params.get("link")
if query not in by_name:
    asked = query
    latest = fetch(cfg, lambda: client.links_latest(cfg, "hybrid"))
    status = link_states(cfg, links, latest)
    capacity = {n: link.get("capacity_bps") for n, link in by_name.items()}
    alerts = fetch(cfg, lambda: client.alerts(cfg, state="firing"))
    query = transforms.rank_links(names, status, alerts, latest, capacity)[0]
    if asked:  # a stale or mistyped link in a shared URL: say so, never swap silently
        shown = transforms.markdown_code(asked)  # the URL's text, never Markdown of its own
        st.warning(f"No link named {shown} is registered: showing {query}, chosen below.")
back_choices = list(transforms.BACK_STEPS)
ahead_choices = [grid.horizon, 0]
steps = list(range(1, grid.horizon + 1))

c1, c2, c3 = st.columns([3, 3, 2])
name = c1.selectbox("Link", names, index=names.index(query), key="link")
chosen = c2.multiselect(
    "Models",
    list(client.MODELS),
    default=url_list("models", list(client.MODELS), ["liquid", "incremental", "hybrid"]),
    key="models",
)
lead = c3.selectbox(
    "Horizon step",
    steps,
    index=steps.index(url_choice("step", steps, 1)),
    key="lead",
    help="Past forecasts shown are those made this many steps ahead; the newest issue "
    "(the fan) is shown beyond them, into the future.",
)
r1, r2 = st.columns(2)
back = r1.selectbox(
    "Look back",
    back_choices,
    index=back_choices.index(url_choice("back", back_choices, back_choices[0])),
    format_func=lambda n: transforms.window_label(n, grid.step_seconds),
    key="back",
)
ahead = r2.selectbox(
    "Look ahead (forecasts)",
    ahead_choices,
    index=ahead_choices.index(url_choice("ahead", ahead_choices, grid.horizon)),
    format_func=lambda n: (
        "none" if n == 0 else "the horizon, " + transforms.window_label(n, grid.step_seconds)
    ),
    key="ahead",
    help="The time range may reach into the future: the newest forecasts run up to the horizon.",
)
st.query_params.update(
    {
        "link": name,
        "models": ",".join(chosen),
        "step": str(lead),
        "back": str(back),
        "ahead": str(ahead),
    }
)


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    link = by_name[name]
    now = datetime.now(UTC)
    step = timedelta(seconds=grid.step_seconds)
    start, end = now - back * step, now + ahead * step  # slides with each refresh
    samples = transforms.frame(
        fetch(cfg, lambda: client.samples(cfg, name, start, end)), ["ts", "value_bps", "quality"]
    )
    step_rows, latest_rows = [], []
    for model in chosen:
        step_rows += fetch(
            cfg,
            lambda m=model: client.forecasts(
                cfg, name, start=start, end=end, model=m, step=int(lead)
            ),
        )
        latest_rows += fetch(cfg, lambda m=model: client.forecasts(cfg, name, model=m, latest=True))
    lines = transforms.forecast_lines(step_rows, latest_rows)
    if not lines.empty:
        lines = lines[(lines["ts"] >= start) & (lines["ts"] <= end)]
    events = fetch(cfg, lambda: client.events(cfg))
    bands = transforms.event_bands(
        events, name, start, end, min_width=transforms.REROUTE_BAND_STEPS * step
    )
    on_link = transforms.link_alerts(
        fetch(cfg, lambda: client.alerts(cfg, link=name)), name, start, end
    )
    markers = on_link[on_link["in_range"]]
    latest = fetch(cfg, lambda: client.links_latest(cfg, "hybrid"))
    state = link_states(cfg, links, latest).get(name, "no data")
    if state == "no data":  # forecasts an older engine wrote for a link that never reported
        lines = lines.iloc[0:0]

    m1, m2, m3, m4 = st.columns(4)
    ok = samples[samples["quality"] == "ok"] if "quality" in samples else samples
    last = ok["value_bps"].iloc[-1] if not ok.empty else None  # a quarantined one is no load
    m1.metric("status", state)
    m2.metric("latest load", transforms.human_bps(last))
    m3.metric("capacity", transforms.human_bps(link.get("capacity_bps")))
    util = transforms.utilisation(last, link.get("capacity_bps"))
    m4.metric("utilisation", "–" if util is None or state != "up" else f"{util:.0%}")
    if state != "up":
        st.warning(
            {
                "down": f"{name} is down: a failure is open on it, or on its reverse (no"
                " repair event yet).",
                "stale": f"{name} is stale: its newest sample is {transforms.STALE_RULE}.",
                "no data": f"{name} has never reported a sample.",
            }[state],
            icon=":material/link_off:",
        )

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
        f"{int(lead)} step(s) ahead, then each model's newest issue (the fan); shaded: "
        "its interval. Bands: failures, maintenance, re-routes. Red marks: alerts "
        "(triangle: failure, diamond: drift, square: capacity). Red dotted: capacity. "
        "Grey x: quarantined samples (over the line rate, or a one-step excursion), stored "
        "but not learned from, at the top edge when above the chart. "
        f"Times in UTC. Refreshes every {REFRESH_SECONDS} s."
    )
    if not on_link.empty:
        still_open = int((on_link["state"] != "resolved").sum())
        with st.expander(
            f"{len(on_link)} alert(s) on this link: {still_open} open, the rest in range"
        ):
            st.dataframe(
                on_link.drop(columns="in_range"),
                hide_index=True,
                width="stretch",
                column_config=ALERT_COLUMN_CONFIG,
            )


live()
