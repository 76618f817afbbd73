"""Alerts: pending, firing and resolved, filterable."""

import streamlit as st

from ui import client, transforms
from ui.common import REFRESH_SECONDS, fetch, setup

st.title("linkcast: alerts")
cfg = setup()

c1, c2, c3 = st.columns(3)
states = c1.multiselect(
    "State", ["pending", "firing", "resolved"], default=["pending", "firing"], key="states"
)
kinds = c2.multiselect(
    "Kind", ["drift", "failure", "capacity"], default=["drift", "failure", "capacity"], key="kinds"
)
link = c3.text_input("Link (exact name)", "", key="link").strip() or None


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    rows = fetch(cfg, lambda: client.alerts(cfg, link=link))
    counts = {s: sum(r["state"] == s for r in rows) for s in ("pending", "firing", "resolved")}
    m = st.columns(3)
    for col, (state, n) in zip(m, counts.items(), strict=True):
        col.metric(state, n)
    shown = [r for r in rows if r["state"] in states and r["kind"] in kinds]
    if not rows:
        st.info("No alerts" + (f" naming {link}." if link else " yet."))
        return
    if not shown:
        st.info("No alert matches these filters.")
        return
    st.dataframe(
        transforms.alerts_table(shown),
        hide_index=True,
        width="stretch",
        column_config={"magnitude": st.column_config.NumberColumn(format="%.2f")},
    )
    st.caption(f"{len(shown)} of {len(rows)} alert(s). Refreshes every {REFRESH_SECONDS} s.")


live()
