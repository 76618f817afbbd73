"""linkcast dashboard: the router. Pages live in ``ui/pages``; all HTTP in ``ui/client.py``."""

import streamlit as st

st.set_page_config(page_title="linkcast", page_icon=":material/lan:", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/hub:", default=True),
    st.Page("pages/link.py", title="Link", icon=":material/show_chart:"),
    st.Page("pages/failures.py", title="Failures", icon=":material/crisis_alert:"),
    st.Page("pages/whatif.py", title="What if", icon=":material/alt_route:"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
]
st.navigation(pages).run()
