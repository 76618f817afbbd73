"""Alerts: pending, firing and resolved, filterable."""

import streamlit as st

from ui import client, transforms
from ui.common import ALERT_COLUMN_CONFIG, ALERT_ORDER, REFRESH_SECONDS, fetch, setup, url_list

st.title("linkcast: alerts")
cfg = setup()

STATES = ["pending", "firing", "resolved"]
KINDS = ["drift", "failure", "capacity"]


c1, c2, c3 = st.columns(3)
states = c1.multiselect(
    "State", STATES, default=url_list("states", STATES, ["pending", "firing"]), key="states"
)
kinds = c2.multiselect("Kind", KINDS, default=url_list("kinds", KINDS, KINDS), key="kinds")
link = c3.text_input("Link (exact name)", st.query_params.get("link", ""), key="link").strip()
link = link or None
st.query_params.update({"states": ",".join(states), "kinds": ",".join(kinds)})
if link:
    st.query_params["link"] = link
else:
    st.query_params.pop("link", None)


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
        column_config=ALERT_COLUMN_CONFIG,
        column_order=ALERT_ORDER,
    )
    st.caption(f"{len(shown)} of {len(rows)} alert(s). Refreshes every {REFRESH_SECONDS} s.")


live()

SILENCE_COLUMN_CONFIG = {
    "link": st.column_config.TextColumn("link"),
    "kind": st.column_config.TextColumn("kind"),
    "ends_at": st.column_config.DatetimeColumn("until (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "comment": st.column_config.TextColumn("comment", width="large"),
    "created_by": st.column_config.TextColumn("by"),
    "starts_at": st.column_config.DatetimeColumn("from (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


@st.fragment(run_every=REFRESH_SECONDS)
def silences() -> None:
    st.subheader("Silences")
    rows = fetch(cfg, lambda: client.silences(cfg))
    if not rows:
        st.info("No active silence: every firing alert is notified.")
    else:
        st.dataframe(
            transforms.silences_table(rows),
            hide_index=True,
            width="stretch",
            column_config=SILENCE_COLUMN_CONFIG,
            column_order=tuple(SILENCE_COLUMN_CONFIG),
        )
    st.caption(
        "A silence holds back the notifications of the alerts it matches (link, kind; "
        "`any` matches all). Create or end one with `POST` or `DELETE /api/v1/silences` "
        "(a write token)."
    )


silences()
