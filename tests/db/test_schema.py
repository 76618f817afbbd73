"""Migrations and the embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db.migrate import alembic_config, downgrade, upgrade
from db.session import make_engine


def test_migrations_create_the_schema_and_round_trip(database_url, db_engine):
    names = set(inspect(db_engine).get_table_names())
    assert {
        "link",
        "sample",
        "api_token",
        "forecast",
        "forecast_error",
        "alert",
        "event",
        "model_checkpoint",
        "model_version",
        "silence",
        "notification",
        "alembic_version",
    } <= names
    assert "quality" in {c["name"] for c in inspect(db_engine).get_columns("sample")}
    alert_columns = {c["name"] for c in inspect(db_engine).get_columns("alert")}
    assert {"parent_id", "clear_steps"} <= alert_columns
    pk = inspect(db_engine).get_pk_constraint("sample")
    assert pk["constrained_columns"] == ["link_id", "ts"]
    with db_engine.connect() as conn:  # room for HOT updates of each push's counters
        sql = "SELECT reloptions FROM pg_class WHERE relname = 'counter_state'"
        assert conn.scalar(text(sql)) == ["fillfactor=50"]
    downgrade(database_url)
    assert "sample" not in inspect(make_engine(database_url, pool_size=1)).get_table_names()
    upgrade(database_url)
    upgrade(database_url)  # idempotent
    with db_engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_embedded_database_keeps_data_across_restarts(tmp_path):
    """Two separate processes on the same DATA_DIR: the second sees the first's data."""
    script = textwrap.dedent(
        """
        import sys
        from sqlalchemy import text
        from db.migrate import upgrade
        from db.session import make_engine
        from linkcast.settings import Settings
        url = Settings().resolved_database_url
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            if sys.argv[1] == "write":
                conn.execute(text("INSERT INTO link (name) VALUES ('kept>across')"))
            print(conn.scalar(text("SELECT count(*) FROM link WHERE name = 'kept>across'")))
        engine.dispose()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "LINKCAST_DATABASE_URL"}
    env["LINKCAST_DATA_DIR"] = str(tmp_path / "data")
    outs = [
        subprocess.run(
            [sys.executable, "-c", script, mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()[-1]
        for mode in ("write", "read")
    ]
    assert outs == ["1", "1"]
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()


def test_upgrading_a_0002_database_keeps_its_samples_as_ok(database_url, db_engine):
    """An operator's database from before issue 11: its samples and alerts stay; the
    samples read ok, the alerts have no parent and nothing counted clear."""
    downgrade(database_url, "0002")
    try:
        with db_engine.begin() as conn:
            conn.execute(text("TRUNCATE sample, alert"))
            conn.execute(text("INSERT INTO sample VALUES (1, '2026-01-01T00:00Z', 4e8)"))
            conn.execute(
                text(
                    "INSERT INTO alert (kind, state, links, onset, message)"
                    " VALUES ('drift', 'firing', '{a>b}', '2026-01-01T00:00Z', 'm')"
                )
            )
    finally:
        upgrade(database_url)
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT value_bps, quality FROM sample")).all() == [(4e8, "ok")]
        assert conn.execute(text("SELECT parent_id, clear_steps FROM alert")).all() == [(None, 0)]
