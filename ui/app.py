"""linkcast dashboard (the full dashboard is built in its own issue)."""

import os

import streamlit as st

st.set_page_config(page_title="linkcast", layout="wide")
st.title("linkcast")
st.write(f"API: {os.environ.get('LINKCAST_API_URL', 'http://127.0.0.1:8000')}")
