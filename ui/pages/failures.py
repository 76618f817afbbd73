"""Failures: each model's error against time since the failure, over the affected links."""

import pandas as pd
import streamlit as st

from ui import charts, client, transforms
from ui.common import REFRESH_SECONDS, fetch, setup, url_int, url_list

st.title("linkcast: failures")
st.caption(
    "The paper's comparison, live: after a failure re-routes traffic, how wrong is each "
    "model (one-step |error| in % of the link's current load, averaged over the affected "
    "links) and how long until it converges again. Time to convergence: the first step "
    "k after the event where the mean error over the next 12 steps is within 1.5x its "
    "pre-event level plus 1 percentage point, and stays so for 36 steps; pending: fewer "
    "than 24 steps after the event yet."
)
cfg = setup()

KINDS = ["failure", "maintenance", "reroute"]


c1, c2, c3 = st.columns([3, 1, 1])
kinds = c1.multiselect(
    "Events",
    KINDS,
    default=url_list("kinds", KINDS, ["failure"]),
    key="kinds",
    help="reroute: level shifts the engine detected on several links at once",
)
before = c2.number_input("Steps before", 2, 10_000, url_int("before", 2, 10_000, 30), key="before")
after = c3.number_input("Steps after", 1, 10_000, url_int("after", 1, 10_000, 120), key="after")
st.query_params.update({"kinds": ",".join(kinds), "before": str(before), "after": str(after)})


def ttc_view(results: list[dict]) -> None:
    count = st.column_config.NumberColumn
    table = transforms.ttc_table(results)
    for col in ("ttc_steps", "ttc_minutes", "baseline_percent"):  # "–", never "None"
        table[col] = table[col].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    text = st.column_config.TextColumn
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "ttc_steps": text(
                "ttc (steps)", help="mean over the events that converged; – when none did"
            ),
            "ttc_minutes": text("ttc (minutes)"),
            "converged": count("converged", help="events after which the model converged"),
            "not_converged": count(
                "not converged", help="events after which it is not back within the data"
            ),
            "pending": count("pending", help="too few steps after the event yet"),
            "no_baseline": count("no baseline", help="too few errors before the event"),
            "baseline_percent": text(
                "error before (% of load)",
                help="mean one-step |error| before the event, % of the current load",
            ),
        },
    )


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    events = [e for e in fetch(cfg, lambda: client.events(cfg)) if e["kind"] in kinds]
    if not events:
        st.info(
            "No failure recorded yet. Failures come from operators and collectors "
            "(`POST /api/v1/events`) or the demo feeder; re-routes from the engine."
        )
        return
    results = [
        fetch(cfg, lambda e=e: client.event_errors(cfg, e["id"], before=before, after=after))
        for e in events
    ]
    scored = [r for r in results if r.get("data")]

    if len(scored) > 1:  # with one scored event, "together" would draw the same chart twice
        st.subheader(f"All {len(scored)} events together")
        together = transforms.average_aligned(scored)
        if together.empty:
            st.info("No forecast errors around these events yet.")
        else:
            st.altair_chart(
                charts.aligned_errors(together, "mean error over all events, aligned at t = 0"),
                width="stretch",
            )
            ttc_view(scored)
        st.subheader("Per event")
    else:
        st.subheader("Per event" if len(events) > 1 else "The one event so far")
    labels = {
        f"#{e['id']} {e['kind']} {e['ts'][:16].replace('T', ' ')} · {', '.join(e['links'][:4])}"
        + (" …" if len(e["links"]) > 4 else ""): i
        for i, e in enumerate(events)
    }
    ids = [str(e["id"]) for e in events]
    wanted = st.query_params.get("event")
    choice = st.selectbox(
        "Event",
        list(labels),
        index=ids.index(wanted) if wanted in ids else 0,
        key="event",
    )
    result = results[labels[choice]]
    st.query_params["event"] = str(result["event"]["id"])
    df = transforms.aligned_frame(result)
    affected = result.get("affected", [])
    st.markdown(
        f"**{len(affected)} affected link(s)**: {', '.join(affected) or 'none shifted'}"
        + (f" · note: {result['event']['note']}" if result["event"].get("note") else "")
    )
    if df.empty:
        st.info("No forecast errors around this event yet.")
        return
    st.altair_chart(
        charts.aligned_errors(df, f"event #{result['event']['id']}: mean over affected links"),
        width="stretch",
    )
    ttc_view([result])


live()
