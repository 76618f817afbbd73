"""A live API seeded once per module: a simulated failure pushed over REST, then the
real engine ticked with a fake clock (see ``seed.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, text

from db.queries import create_token
from db.session import make_sessionmaker, session_scope
from linkcast.settings import Settings
from tests.conftest import LiveServer, _tables
from tests.ui.seed import STEP_SECONDS, Seeded, seed


@pytest.fixture(autouse=True, scope="session")
def _patient_expectations() -> Iterator[None]:
    """Playwright's assertions wait 30 s, not 5, for what a page shows (a Streamlit
    rerun or an API call behind a widget can take seconds on a loaded machine); the
    waits that already name a timeout keep theirs."""
    try:
        from playwright.sync_api import expect
    except ImportError:  # the browser tests say they need it; the others do not
        yield
        return
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


@dataclass
class SeededApi:
    url: str
    tokens: dict[str, str]
    data: Seeded


@pytest.fixture(scope="module")
def seeded_api(
    database_url: str, db_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededApi]:
    with db_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_tables(db_engine))} RESTART IDENTITY CASCADE"))
    with session_scope(make_sessionmaker(db_engine)) as session:
        tokens = {s: create_token(session=session, scope=s).token for s in ("read", "admin")}
    settings = Settings(
        database_url=database_url,
        data_dir=Path(tmp_path_factory.mktemp("ui-data")),
        step_seconds=STEP_SECONDS,
    )
    with LiveServer(settings) as server:
        yield SeededApi(server.url, tokens, seed(server.url, tokens, database_url))


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    """Streamlit's caches live in the process: no test sees another's results."""
    st.cache_data.clear()
    st.cache_resource.clear()
