"""Connections of linkcast's engines."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from db.session import make_engine


def test_connections_work_in_utc_whatever_the_client_or_server_zone(database_url, monkeypatch):
    # libpq applies PGTZ after the startup options: the way a host's zone reaches a session
    monkeypatch.setenv("PGTZ", "Europe/Berlin")
    engine = make_engine(database_url, pool_size=1)
    try:
        for _ in range(2):  # a new connection, then the same one back from the pool
            with engine.connect() as conn:
                assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
                now = conn.execute(text("SELECT now()")).scalar()
                assert now.utcoffset() == timedelta(0)
                conn.rollback()  # what the pool does on return must not undo it
    finally:
        engine.dispose()
    # without the listener the same environment gives Berlin time: the test can fail
    import psycopg

    with psycopg.connect(database_url) as raw:
        assert raw.execute("SHOW TimeZone").fetchone()[0] == "Europe/Berlin"
