"""Time partitions of sample, forecast and forecast_error (migration 0006,
db/partitions.py), on the real database: the conversion keeps every row both ways,
every time has a partition, retention drops whole days and keeps the rest, and the
ingest path writes across a partition boundary."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from db import live, partitions
from db.ingest import LinkIds, write_samples
from db.migrate import downgrade, upgrade
from db.partitions import DAY, floor_day

TABLES = ("sample", "forecast", "forecast_error")


@pytest.fixture
def layout(database_url: str, clean_db: Engine) -> Iterator[Engine]:
    """The layout a fresh migration gives (days from today to AHEAD_DAYS ahead), and
    the same again afterwards: the tests here add and drop partitions, and every
    partition makes the other tests' TRUNCATE slower."""
    downgrade(database_url, "0005")
    upgrade(database_url)
    yield clean_db
    with clean_db.begin() as conn:
        conn.execute(text("TRUNCATE sample, forecast, forecast_error, link RESTART IDENTITY"))
    downgrade(database_url, "0005")
    upgrade(database_url)


def iso(ts: datetime) -> str:
    return ts.isoformat()


def hourly(start: datetime, end: datetime) -> list[datetime]:
    out, ts = [], start
    while ts < end:
        out.append(ts)
        ts += timedelta(hours=1)
    return out


def stored(engine: Engine, table: str = "sample") -> dict[tuple, str]:
    """Every row of ``table`` (its key) -> the partition holding it."""
    column = partitions.TABLES[table]
    key = "link_id, ts" if table == "sample" else f"link_id, model, {column}"
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {key}, tableoid::regclass::text FROM {table}"))
        return {tuple(r[:-1]): r[-1] for r in rows}


def checksums(engine: Engine) -> dict[str, tuple[int, str | None]]:
    with engine.connect() as conn:
        return {
            t: tuple(
                conn.execute(
                    text(
                        "SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text))"
                        f" FROM {t} x"
                    )
                ).one()
            )
            for t in TABLES
        }


def relkind(engine: Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.scalar(
                text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            )
        )


def bounds(engine: Engine, table: str) -> list[tuple[datetime | None, datetime | None]]:
    with engine.connect() as conn:
        return [(p.lower, p.upper) for p in partitions.partitions(conn, table)]


def put_forecasts(engine: Engine, times: list[datetime]) -> None:
    params = [{"t": ts} for ts in times]
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO forecast VALUES (1, 'liquid', :t, 60, '{1,2}', '{0,1}', '{2,3}')"),
            params,
        )
        conn.execute(
            text("INSERT INTO forecast_error VALUES (1, 'liquid', :t, 5, '{1,NULL}')"), params
        )


def test_migration_keeps_every_row_and_downgrade_restores_them(database_url, layout):
    engine = layout
    today = floor_day(datetime.now(UTC))
    downgrade(database_url, "0005")
    assert relkind(engine, "sample") == "r"
    times = hourly(today - 3 * DAY, today + 5 * DAY)  # from before the first day to `after`
    rows = [
        (f"a{k}>b{k}", iso(ts), float(k * 1e6 + i)) for i, ts in enumerate(times) for k in range(3)
    ]
    write_samples(engine, rows, LinkIds())
    put_forecasts(engine, times[::7])
    original = checksums(engine)
    assert original["sample"][0] == len(rows)

    upgrade(database_url)
    assert {relkind(engine, t) for t in TABLES} == {"p"}
    assert checksums(engine) == original
    for table in TABLES:  # one day each from the oldest row's to AHEAD_DAYS after today
        b = bounds(engine, table)
        days = [today + (i - 3) * DAY for i in range(3 + partitions.AHEAD_DAYS + 2)]
        assert b == [(None, days[0]), *zip(days[:-1], days[1:], strict=True), (days[-1], None)]
    where = stored(engine)
    for (_, ts), part in where.items():
        day = floor_day(ts)
        want = "sample_after" if day >= today + 3 * DAY else partitions.day_name("sample", day)
        assert part == want, ts
    with engine.connect() as conn:  # the key, the CHECK and the default came along
        with pytest.raises(IntegrityError):
            conn.execute(text("INSERT INTO sample VALUES (1, :t, 1, 'bad')"), {"t": today})
        conn.rollback()
        with pytest.raises(IntegrityError):
            conn.execute(
                text(
                    "INSERT INTO sample (link_id, ts, value_bps)"
                    " SELECT link_id, ts, 1 FROM sample LIMIT 1"
                )
            )
        conn.rollback()
        conn.execute(
            text("INSERT INTO sample (link_id, ts, value_bps) VALUES (99, :t, 1)"), {"t": today}
        )
        assert conn.scalar(text("SELECT quality FROM sample WHERE link_id = 99")) == "ok"
        conn.rollback()

    downgrade(database_url, "0005")
    assert {relkind(engine, t) for t in TABLES} == {"r"}
    assert checksums(engine) == original
    upgrade(database_url)
    assert checksums(engine) == original


def test_a_time_without_a_day_partition_is_still_stored(layout):
    engine = layout
    today = floor_day(datetime.now(UTC))
    far = [
        datetime(2001, 1, 1, tzinfo=UTC),
        today - 400 * DAY,
        today + 30 * DAY,
        datetime(2200, 1, 1, tzinfo=UTC),
    ]
    near = today + 12 * timedelta(hours=1)
    rows = [("x>y", iso(ts), 1e6) for ts in [*far, near]]
    assert write_samples(engine, rows, LinkIds()).rows == len(rows)
    put_forecasts(engine, far)
    where = {ts: part for (_, ts), part in stored(engine).items()}
    assert where == {
        far[0]: "sample_before",
        far[1]: "sample_before",
        far[2]: "sample_after",
        far[3]: "sample_after",
        near: partitions.day_name("sample", today),
    }
    assert len(stored(engine, "forecast")) == len(stored(engine, "forecast_error")) == len(far)


def test_retention_drops_whole_days_older_than_the_cutoff_and_keeps_the_rest(layout):
    engine = layout
    now = datetime.now(UTC)
    today = floor_day(now)
    old = [datetime(2001, 1, 1, tzinfo=UTC)]  # in `before`
    times = old + hourly(today - 5 * DAY, today + 4 * DAY)  # up to `after`
    rows = [(f"l{k}", iso(ts), float(k + 1)) for ts in times for k in range(2)]
    write_samples(engine, rows, LinkIds())
    put_forecasts(engine, times)
    all_samples = set(stored(engine))

    # A cutoff mid-day: rounded down to the start of its UTC day. `before` held the
    # days before the migration's first: it is lowered to the bound, the rows from the
    # bound on are moved into day partitions, and the older ones are gone with it.
    cutoff = today - 2 * DAY + timedelta(hours=5)
    bound = today - 2 * DAY
    with engine.begin() as conn:
        live.delete_older_than(conn, forecasts=cutoff + DAY, samples=cutoff)
    kept = set(stored(engine))
    assert kept == {(i, ts) for i, ts in all_samples if ts >= bound}
    assert any(bound <= ts < cutoff for _, ts in kept)  # the rounding: kept, not removed
    assert bounds(engine, "sample")[0] == (None, bound)
    f_kept = {ts for _, _, ts in stored(engine, "forecast")}
    assert f_kept == {ts for ts in times if ts >= bound + DAY}
    assert {ts for _, _, ts in stored(engine, "forecast_error")} == f_kept

    # Later: whole day partitions dropped, the rest untouched.
    cutoff = today + timedelta(hours=5)
    names = {partitions.day_name("sample", today - d * DAY) for d in (1, 2)}
    with engine.connect() as conn:
        assert names <= {p.name for p in partitions.partitions(conn, "sample")}
    done = partitions.drop_older_than(engine, "sample", cutoff)
    assert (done.dropped, done.bound) == (2, today)
    with engine.connect() as conn:
        assert not names & {p.name for p in partitions.partitions(conn, "sample")}
    assert set(stored(engine)) == {(i, ts) for i, ts in all_samples if ts >= today}
    assert bounds(engine, "sample")[0] == (None, today)

    # Nothing due: nothing changes. An old time is still stored, in `before`.
    assert partitions.drop_older_than(engine, "sample", cutoff).dropped == 0
    write_samples(engine, [("l0", iso(today - 10 * DAY), 5.0)], LinkIds())
    assert stored(engine)[(1, today - 10 * DAY)] == "sample_before"


def test_retention_waits_for_the_lock_only_briefly_and_changes_nothing_without_it(
    layout, monkeypatch
):
    engine = layout
    today = floor_day(datetime.now(UTC))
    write_samples(engine, [("l0", iso(today - 3 * DAY), 1.0), ("l0", iso(today), 2.0)], LinkIds())
    monkeypatch.setattr(partitions, "LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(partitions, "LOCK_RETRY_SECONDS", 0.01)
    layout_before = bounds(engine, "sample")
    reader = engine.connect()
    reader.execute(text("SELECT count(*) FROM sample"))  # holds ACCESS SHARE until it ends
    try:
        with pytest.raises(partitions.PartitionLockTimeout):
            partitions.drop_older_than(engine, "sample", today - DAY)
        assert bounds(engine, "sample") == layout_before
        assert len(stored(engine)) == 2
    finally:
        reader.rollback()
        reader.close()
    done = partitions.drop_older_than(engine, "sample", today - DAY)
    assert done.bound == today - DAY
    assert set(stored(engine)) == {(1, today)}


def test_ingest_across_a_partition_boundary_copies_and_upserts(layout):
    engine = layout
    midnight = floor_day(datetime.now(UTC)) + DAY
    times = [midnight + timedelta(seconds=s) for s in range(-30, 30, 10)]
    rows = [(f"b{k}", iso(ts), float(k)) for ts in times for k in range(3)]
    ids = LinkIds()
    assert write_samples(engine, rows, ids).rows == len(rows)  # the COPY path
    where = stored(engine)
    assert {where[(k + 1, ts)] for ts in times for k in range(3)} == {
        partitions.day_name("sample", midnight - DAY),
        partitions.day_name("sample", midnight),
    }
    again = [(name, ts, value + 10) for name, ts, value in rows]
    assert write_samples(engine, again, ids).rows == len(rows)  # ON CONFLICT path
    with engine.connect() as conn:
        values = {
            (i, ts): v
            for i, ts, v in conn.execute(text("SELECT link_id, ts, value_bps FROM sample"))
        }
    assert values == {(k + 1, ts): float(k + 10) for ts in times for k in range(3)}
    assert stored(engine) == where  # the same rows in the same partitions


def test_days_ahead_take_the_rows_a_catch_all_held(layout, monkeypatch):
    engine = layout
    today = floor_day(datetime.now(UTC))
    first_after = today + (partitions.AHEAD_DAYS + 1) * DAY
    times = hourly(first_after, first_after + 6 * DAY)  # as if the engine were down
    write_samples(engine, [("a>b", iso(ts), 1.0) for ts in times], LinkIds())
    assert set(stored(engine).values()) == {"sample_after"}
    done = partitions.ensure(engine, "sample", today, first_after + 6 * DAY)
    assert (done.created, done.moved) == (7, len(times))  # two holds of the lock: 4 + 3
    where = stored(engine)
    assert len(where) == len(times)
    assert all(
        part == partitions.day_name("sample", floor_day(ts)) for (_, ts), part in where.items()
    )
    assert bounds(engine, "sample")[-1] == (first_after + 7 * DAY, None)
    assert partitions.ensure(engine, "sample", today, first_after).created == 0


def test_writers_are_not_refused_while_retention_runs(layout):
    """Retention under a steady writer: every batch is stored (it may wait for the
    lock, never fails), and retention completes."""
    engine = layout
    today = floor_day(datetime.now(UTC))
    write_samples(engine, [(f"w{k}", iso(today - 3 * DAY), 1.0) for k in range(5)], LinkIds())
    stop = threading.Event()
    errors: list[BaseException] = []
    written = []

    def writer() -> None:
        ids = LinkIds()
        ts = today + timedelta(hours=1)
        try:
            while not stop.is_set():
                ts += timedelta(seconds=1)
                written.append(
                    write_samples(engine, [(f"w{k}", iso(ts), 2.0) for k in range(5)], ids).rows
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 30
        while len(written) < n and not errors and time.monotonic() < deadline:
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(3)
        done = partitions.drop_older_than(engine, "sample", today - DAY)
        wait_for(len(written) + 3)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    assert done.bound == today - DAY
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM sample")) == sum(written)
        assert conn.scalar(text("SELECT count(*) FROM sample WHERE ts < :t"), {"t": today}) == 0


def test_a_day_detached_by_a_run_that_stopped_is_dropped_by_the_next(layout):
    engine = layout
    today = floor_day(datetime.now(UTC))
    name = partitions.day_name("sample", today)
    with engine.begin() as conn:  # as a retention run leaves it if it dies after its commit
        conn.execute(text(f"ALTER TABLE sample DETACH PARTITION {name}"))
        lo, hi = f"'{iso(today)}'", f"'{iso(today + DAY)}'"
        conn.execute(
            text(f"CREATE TABLE {name}_new PARTITION OF sample FOR VALUES FROM ({lo}) TO ({hi})")
        )
    with engine.connect() as conn:
        assert partitions._detached(conn, "sample") == [name]
    partitions.drop_older_than(engine, "sample", today - 5 * DAY)
    with engine.connect() as conn:
        assert partitions._detached(conn, "sample") == []
        assert conn.scalar(text("SELECT to_regclass(:n)"), {"n": name}) is None
