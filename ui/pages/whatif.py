"""What if: the forecasts with chosen links failed, and the N-1 scan (issue 10).

The API estimates the origin-destination demands behind the newest forecasts, routes
them around the failed links and sums each surviving link's new load
(``GET /api/v1/whatif``); the N-1 table is ``GET /api/v1/risk``. The view is in the URL
(``?fail=A>B&fail=C>D&cable=1&model=hybrid&threshold=100``, the threshold in % of
capacity; ``cable=0`` fails the chosen direction only), so a
scenario pasted into a ticket opens the same view. A link in the URL that the API does
not know is kept in the choice, so the page shows the API's own words about it."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from ui import charts, client, transforms
from ui.client import ApiError
from ui.common import (
    REFRESH_SECONDS,
    bps_columns,
    links_or_stop,
    setup,
    show_error,
    url_choice,
    url_int,
)

st.title("linkcast: what if")
st.caption(
    "Fail links before they fail: linkcast estimates the origin-destination demands "
    "behind the newest forecasts (tomogravity), routes them around the failed links by "
    "shortest paths and adds up each surviving link's new load over the forecast "
    "horizon. Utilisation: load over capacity."
)
cfg = setup()
links = links_or_stop(cfg)
names = sorted(link["name"] for link in links)
models = list(client.MODELS)

asked = list(dict.fromkeys(st.query_params.get_all("fail")))
unknown = [n for n in asked if n not in names]  # kept: the API says what is wrong with them
c1, c2, c3, c4 = st.columns([4, 1, 1, 1])
fail = c1.multiselect(
    "Links to fail",
    names + unknown,
    default=asked,
    key="fail",
    placeholder="Choose one or more links",
    help="Directed links, as registered.",
)
cable = c2.toggle(
    "Both ways",
    value=st.query_params.get("cable", "1") != "0",
    key="cable",
    help="A cut cable, or any fault the IGP sees: each chosen link's reverse fails too "
    "(the IGP drops the adjacency both ways, as a posted failure does). Off: only the "
    "direction chosen is taken out of routing; the reverse still carries.",
)
model = c3.selectbox(
    "Forecasts of",
    models,
    index=models.index(url_choice("model", models, "hybrid")),
    key="model",
    help="The model whose newest forecasts are re-routed.",
)
threshold = c4.number_input(
    "Overload at (% of capacity)",
    min_value=1,
    max_value=1000,
    value=url_int("threshold", 1, 1000, 100),
    step=5,
    key="threshold",
    help="A link overloads when its forecast utilisation passes this share of its capacity.",
)
st.query_params.update(
    {"cable": "1" if cable else "0", "model": model, "threshold": str(threshold)}
)
if fail:
    st.query_params["fail"] = fail
elif "fail" in st.query_params:
    del st.query_params["fail"]


def refused(err: ApiError, what: str) -> None:
    """Why the API cannot answer ``what``: no forecasts yet (409), a request it refuses
    (404, 422: an unknown link, with the API's ``detail``), or the usual messages."""
    if err.status == 409:
        st.info(
            f"**No forecasts yet** to compute the {what} from: the engine issues them once "
            f"links have reported for a few steps. The API says: {err.detail}",
            icon=":material/hourglass_empty:",
        )
    elif err.status in (400, 404, 422):
        st.error(f"**The API refused the {what}.** {err.detail}", icon=":material/link_off:")
    else:
        show_error(err, cfg)


def scenario(answer: dict) -> None:
    failed = answer.get("failed_links") or answer.get("failed") or fail
    named = ", ".join(failed[:4]) + (f" and {len(failed) - 4} more" if len(failed) > 4 else "")
    step = timedelta(seconds=int(answer["step_seconds"]))
    times = answer.get("times") or []
    horizon = transforms.duration_text(len(times) * step.total_seconds())
    overloaded = answer.get("overloaded", [])
    unroutable = [v for v in answer.get("unroutable_bps") or [] if v is not None]
    worst = transforms.busiest_links(answer)
    by_name = {r["link"]: r for r in answer.get("links", [])}
    worst_util = by_name[worst[0]].get("peak_utilisation") if worst else None

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("links failed", len(failed))
    m2.metric(
        "would overload",
        len(overloaded),
        help=f"links whose forecast utilisation passes {threshold} % within {horizon}",
    )
    m3.metric(
        "worst peak utilisation",
        transforms.percent_text(worst_util),
        help=f"on {worst[0]}" if worst and worst_util is not None else None,
    )
    m4.metric(
        "unroutable demand (peak)",
        transforms.human_bps(max(unroutable, default=0.0)),
        help="demand between nodes the failure disconnects: it has no path left",
    )
    down = answer.get("already_down") or []
    if down:
        st.info(
            f"Already down (an open failure, no repair yet): {', '.join(down)}. The "
            "scenario adds the chosen links to them.",
            icon=":material/link_off:",
        )
    pairs = transforms.unroutable_table(answer)
    if max(unroutable, default=0.0) > 0 or not pairs.empty:
        st.error(
            f"**Unroutable demand.** Failing {named} disconnects the network: "
            f"up to {transforms.human_bps(max(unroutable, default=0.0))} of forecast demand "
            f"({len(pairs)} origin-destination pair(s)) would have no path and be dropped.",
            icon=":material/portable_wifi_off:",
        )
        if not pairs.empty:
            shown, columns = bps_columns(pairs, {"demand_bps": "demand"})
            st.dataframe(
                shown,
                hide_index=True,
                width="stretch",
                column_config={"src": "from node", "dst": "to node", **columns},
            )

    positions = transforms.node_positions(links)
    segments = transforms.whatif_segments(links, positions, answer)
    if segments.empty:
        st.info("The links have no source and destination nodes to draw.")
    else:
        nodes = transforms.nodes_frame(positions)
        labels = transforms.label_offsets(positions, width=330, height=300)
        left, right = st.columns(2)
        for place, status, field, title, loads in (
            (
                left,
                "status_base",
                "utilisation_base",
                f"forecast peak within {horizon}, as things are",
                (("base_peak", "forecast peak"),),
            ),
            (
                right,
                "status",
                "utilisation_whatif",
                f"forecast peak with {named} failed",
                (("whatif_peak", "peak with the failure"), ("base_peak", "without")),
            ),
        ):
            drawn = segments.assign(status=segments[status])
            present = set(drawn["status"])
            colours = {k: v for k, v in charts.WHATIF_STATUS_COLOURS.items() if k in present}
            place.altair_chart(
                charts.network(
                    drawn,
                    nodes,
                    labels,
                    field,
                    title,
                    loads=loads,
                    status_title="out of service",
                    status_colours=colours,
                ),
                width="stretch",
            )
        st.caption(
            "Colour: forecast peak utilisation within the horizon (darker past 100 %). "
            "Black dashed: links failed in the scenario, or down already (an open "
            "failure); light grey dashed: links without a forecast."
        )

    st.subheader("Links that would overload")
    if overloaded:
        table = transforms.overload_table(answer)
    else:
        st.success(
            f"No link would pass {threshold} % of its capacity within {horizon}.",
            icon=":material/check_circle:",
        )
        table = transforms.overload_table(answer, worst[:5])
        st.caption("The busiest links with the failure:")
    labels_bps = {
        "peak_bps": "peak load",
        "baseline_peak_bps": "peak without the failure",
        "capacity_bps": "capacity",
    }
    column_config = {
        "link": st.column_config.TextColumn("link"),
        "peak_percent": st.column_config.NumberColumn("peak utilisation (%)", format="%.0f"),
        "at": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "ahead": st.column_config.TextColumn("when", help="after the forecasts were issued"),
    }
    shown, columns = bps_columns(table, labels_bps)
    st.dataframe(
        shown, hide_index=True, width="stretch", column_config={**column_config, **columns}
    )
    drawn = overloaded[:6] or worst[:3]
    lines = transforms.utilisation_lines(answer, drawn)
    if not lines.empty and lines["percent"].notna().any():
        start = datetime.fromisoformat(answer["issued_at"])
        end = datetime.fromisoformat(times[-1]) if times else start
        st.altair_chart(
            charts.whatif_utilisation(lines, float(threshold), start, end), width="stretch"
        )
        st.caption(
            "Solid: forecast utilisation with the failure; dotted: without it. Red "
            f"dashed: the overload threshold ({threshold} %). Times in UTC."
        )
    with st.expander(f"Every link with the failure ({len(worst)} surviving)"):
        every, columns = bps_columns(transforms.overload_table(answer, worst), labels_bps)
        st.dataframe(
            every, hide_index=True, width="stretch", column_config={**column_config, **columns}
        )
    fit = answer.get("demand_fit_error")
    issued = datetime.fromisoformat(answer["issued_at"]).astimezone(UTC)
    st.caption(
        f"Forecasts of {answer.get('model', model)} issued {issued:%Y-%m-%d %H:%M:%S} UTC, "
        f"{len(times)} steps of {transforms.duration_text(step.total_seconds())}. "
        f"Routing by {answer.get('metric', '?')}."
        + (
            f" Demand fit: the estimated demands reproduce the forecast loads within "
            f"{100 * float(fit):.1f} % (relative error)."
            if fit is not None
            else ""
        )
    )


def n1() -> None:
    st.subheader("N-1: every single cable cut, worst first")
    try:
        risk = client.risk(cfg, model=model, threshold=threshold / 100)
    except ApiError as err:
        refused(err, "N-1 scan")
        return
    table = transforms.risk_table(risk)
    if table.empty:
        st.info("No single-link failure to scan: the topology has no routable links.")
        return
    shown, columns = bps_columns(table, {"unroutable_bps": "unroutable demand"})
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "cut": st.column_config.TextColumn(
                "cut", help="one cable: a link and its reverse, where there is one"
            ),
            "worst_utilisation": st.column_config.TextColumn(
                "worst utilisation", help="the highest forecast utilisation it causes (%)"
            ),
            "worst_link": st.column_config.TextColumn("on link"),
            "worst_time": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "overloaded": st.column_config.TextColumn(
                "overloads", help=f"links past {threshold} % of capacity"
            ),
            **columns,
        },
    )
    issued = datetime.fromisoformat(risk["issued_at"]).astimezone(UTC)
    scanned = int(risk.get("scanned", len(table)))
    shown_text = f", the worst {len(table)} shown" if len(table) < scanned else ""
    down = risk.get("already_down") or []
    st.caption(
        f"{scanned} cables scanned (every one not down now){shown_text}, with the forecasts "
        f"of {risk.get('model', model)} issued {issued:%Y-%m-%d %H:%M:%S} UTC; routing by "
        f"{risk.get('metric', '?')}."
        + (f" Down already, in every scenario: {', '.join(down)}." if down else "")
        + f" Refreshes every {REFRESH_SECONDS} s."
    )


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    if fail:
        try:
            answer = client.whatif(
                cfg, tuple(fail), model=model, threshold=threshold / 100, cable=cable
            )
        except ApiError as err:
            refused(err, "what-if")
        else:
            scenario(answer)
    else:
        st.info(
            "Choose links to fail above, or start from the N-1 table below: its worst "
            "single failures come first.",
            icon=":material/touch_app:",
        )
    n1()


live()
