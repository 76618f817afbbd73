"""sample, forecast and forecast_error partitioned by time (RANGE, one UTC day each)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Each table is converted keeping its rows, in the migration's one transaction: the
table is renamed, a partitioned table of the same columns, defaults and CHECK
constraints is created under the old name with a partition for every UTC day from
its oldest row's (at most MAX_BACK_DAYS back) to AHEAD_DAYS after today, between two
catch-alls ``<table>_before`` [MINVALUE, first day) and ``<table>_after`` [last day + 1,
MAXVALUE), so that every time has a partition; the rows are copied in, the old table
dropped, and the primary key and BRIN index built on the filled partitions under their
old names. db/partitions.py keeps the scheme going (days ahead, retention); this file
does not import it, so that it stays as it ran. Downgrade copies the rows back into
one plain table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DAY = timedelta(days=1)
AHEAD_DAYS = 2
MAX_BACK_DAYS = 100  # older rows go to <table>_before: the default sample retention is 90 days

# table, time column, primary key, BRIN index on the time column
TABLES = (
    ("sample", "ts", "link_id, ts", "sample_ts"),
    ("forecast", "issued_at", "link_id, model, issued_at", "forecast_issued"),
    ("forecast_error", "ts", "link_id, model, ts", "forecast_error_ts"),
)


def _day(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)


def _lit(ts: datetime) -> str:
    return f"'{ts.isoformat()}'"


def _rename_old(table: str, brin: str, to: str) -> None:
    op.execute(f"ALTER TABLE {table} RENAME TO {to}")
    op.execute(f"ALTER INDEX IF EXISTS {table}_pkey RENAME TO {to}_pkey")
    op.execute(f"ALTER INDEX IF EXISTS {brin} RENAME TO {to}_{brin}")


def _index(table: str, column: str, key: str, brin: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
    op.execute(f"CREATE INDEX {brin} ON {table} USING brin ({column})")


def upgrade() -> None:
    bind = op.get_bind()
    today = _day(datetime.now(UTC))
    for table, column, key, brin in TABLES:
        old = f"{table}_unpartitioned"
        _rename_old(table, brin, old)
        op.execute(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            f" INCLUDING STORAGE) PARTITION BY RANGE ({column})"
        )
        oldest = bind.execute(sa.text(f"SELECT min({column}) FROM {old}")).scalar()
        first = today if oldest is None else min(today, _day(oldest))
        first = max(first, today - MAX_BACK_DAYS * DAY)
        last = today + (AHEAD_DAYS + 1) * DAY  # later rows go to <table>_after
        op.execute(
            f"CREATE TABLE {table}_before PARTITION OF {table}"
            f" FOR VALUES FROM (MINVALUE) TO ({_lit(first)})"
        )
        day = first
        while day < last:
            op.execute(
                f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table}"
                f" FOR VALUES FROM ({_lit(day)}) TO ({_lit(day + DAY)})"
            )
            day += DAY
        op.execute(
            f"CREATE TABLE {table}_after PARTITION OF {table}"
            f" FOR VALUES FROM ({_lit(last)}) TO (MAXVALUE)"
        )
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old}")
        _index(table, column, key, brin)  # built once on the filled partitions


def downgrade() -> None:
    for table, column, key, brin in TABLES:
        old = f"{table}_partitioned"
        _rename_old(table, brin, old)
        op.execute(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING STORAGE)"
        )
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old}")  # and its partitions
        _index(table, column, key, brin)
