"""Shared fixtures: a real PostgreSQL, the app, tokens.

The database is the one named by LINKCAST_TEST_DATABASE_URL (CI: the machine's
server), otherwise an embedded server started with pgserver. Its schema is rebuilt
by the migrations once per run, and the tables are emptied before every test.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from db.migrate import downgrade, upgrade
from db.queries import create_token
from db.session import make_engine, make_sessionmaker, session_scope
from linkcast.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _torch_on_one_thread() -> Iterator[None]:
    """Every test runs torch on one thread, the engine's default
    (``EngineConfig.torch_threads``): results do not depend on which test made a
    ``LiveEngine`` first, nor on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("LINKCAST_TEST_DATABASE_URL")
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(tmp_path_factory.mktemp("pg"))
    downgrade(url)  # a previous run may have left tables of an older schema
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=2)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename <> 'alembic_version'"
            )
        )
        return [r[0] for r in rows]


@pytest.fixture
def clean_db(db_engine: Engine) -> Engine:
    tables = _tables(db_engine)
    with db_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    return db_engine


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings, clean_db: Engine) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def tokens(clean_db: Engine) -> dict[str, str]:
    """One token per scope."""
    with session_scope(make_sessionmaker(clean_db)) as session:
        return {s: create_token(session=session, scope=s).token for s in ("read", "write", "admin")}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn in a thread, for HTTP clients outside the test."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from api.main import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the api did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_api(settings: Settings, clean_db: Engine) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server
