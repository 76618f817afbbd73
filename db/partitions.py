"""Time partitions of ``sample``, ``forecast`` and ``forecast_error``: creating them
ahead, and retention by dropping whole partitions.

Each table is partitioned by RANGE on its time column (PostgreSQL declarative
partitioning, migration 0006) into UTC days, ``<table>_pYYYYMMDD`` = [day, day + 1 d),
between two catch-all partitions:

* ``<table>_before`` = [MINVALUE, first day): rows older than every day partition;
* ``<table>_after`` = [day after the last, MAXVALUE): rows newer than every day partition.

So every time has a partition and an insert never fails for want of one, however far
in the past or future it is. The catch-alls are ranges, not a DEFAULT partition, on
purpose: with a DEFAULT partition PostgreSQL cannot treat the partitions as ordered
(``partitions_are_ordered``), so "a link's newest sample" (``ORDER BY ts DESC LIMIT 1``)
becomes a Merge Append that probes every partition's index instead of an Append that
stops at the newest partition holding a row (measured in bench/partitions.py).

Why a day, at 50,000 samples/s: a day is 4.3e9 rows (about 60 B of heap and 30 B of
primary key each: ~390 GB), an hour 180 M rows. Days keep ~100 partitions for the
default 90-day retention (hours would be 2,160): a query that cannot be pruned locks
every partition and its indexes, and the shared lock table holds
``max_locks_per_transaction`` (64) x ``max_connections`` (100) = 6,400 locks, so a
few such queries over hourly partitions would exhaust it; planning also grows with
the count. Inserts do not slow as a partition grows: the primary key (link_id, ts)
is appended at each link's right edge, one hot leaf page per link, whatever the
partition's size. The engine's bucket queries name a time range and touch one or two
partitions. Retention granularity is a day: 1/90 of the sample retention, and the
forecast tables (2 days by default) keep up to one day more than asked.

Who creates what: migration 0006 makes the days from the oldest row's (or today) to
``AHEAD_DAYS`` ahead; every engine process runs :func:`ensure` at start and hourly to
keep ``AHEAD_DAYS`` ahead (engine/run.py); retention (the leader, hourly) first lowers
``before`` to its bound, creating the days in between, then drops.

Maintenance reads the catalogue without locking, and does nothing when nothing is
due. When something is, it takes the parent's ACCESS EXCLUSIVE lock (creating,
attaching, detaching and dropping partitions need it, and it keeps the layout
whole: DETACH ... CONCURRENTLY would leave a range without a partition for a moment,
so that an old row written then would fail) with a short ``lock_timeout`` and
retries, so that it never queues for long in front of the writers: a writer waits at
most ``LOCK_TIMEOUT_MS`` per attempt. One transaction per table, so a lock on one is
never held while waiting for another.

Known cost: rows a catch-all holds in days that become day partitions are moved
(INSERT .. SELECT, DELETE) under that lock, ``DAYS_PER_LOCK`` days at a time. That
happens only after the engine was down longer than ``AHEAD_DAYS`` while samples kept
coming, or after rows were written for days before the first day partition; the
writers wait for the move meanwhile (they are not refused).

Retention rounds the cutoff down to the start of its UTC day: every row older than
that day's start is removed (whole day partitions dropped, the ``before`` catch-all
emptied by TRUNCATE), every row from then on is kept. A row is therefore kept for at
least the retention and at most one day (plus the job's interval) longer. No DELETE.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
AHEAD_DAYS = 2  # day partitions kept ready after today (each costs every TRUNCATE)
LOCK_TIMEOUT_MS = 200  # the longest a writer waits behind one attempt to take the lock
LOCK_ATTEMPTS = 20
LOCK_RETRY_SECONDS = 0.2
DAYS_PER_LOCK = 4  # day partitions created under one hold of the lock

# table -> its time column (the partition key)
TABLES: dict[str, str] = {"sample": "ts", "forecast": "issued_at", "forecast_error": "ts"}

T = TypeVar("T")


class PartitionLockTimeout(RuntimeError):
    """The table's lock could not be taken in ``LOCK_ATTEMPTS`` tries (a long reader or
    writer held it each time); nothing was changed, the next run tries again."""


@dataclass(frozen=True)
class Partition:
    """One partition and its range [lower, upper); None stands for MINVALUE / MAXVALUE."""

    name: str
    lower: datetime | None
    upper: datetime | None


@dataclass(frozen=True)
class Maintained:
    """What one run did to a table: day partitions created and dropped, rows moved out
    of a catch-all into day partitions, the boundary below which retention removed
    everything (None when it did not run), and for how long the table's lock was held
    (seconds, from its grant to the commit: how long writers could have waited)."""

    table: str
    created: int = 0
    dropped: int = 0
    moved: int = 0
    bound: datetime | None = None
    locked_seconds: float = 0.0


def floor_day(ts: datetime) -> datetime:
    """The start (UTC midnight) of the UTC day holding ``ts``.

    >>> floor_day(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)).isoformat()
    '2026-11-30T00:00:00+00:00'
    """
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)


def day_name(table: str, day: datetime) -> str:
    """``sample_p20261130`` for the day partition of ``sample`` starting at ``day``."""
    return f"{table}_p{day:%Y%m%d}"


def _literal(ts: datetime) -> str:
    return f"'{ts.astimezone(UTC).isoformat()}'"


_BOUND = re.compile(r"FOR VALUES FROM \((.+)\) TO \((.+)\)")


def _bound(value: str) -> datetime | None:
    if value in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.fromisoformat(value.strip("'")).astimezone(UTC)


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The partitions of ``table``, oldest range first (empty if it is not partitioned).

    Reads the catalogue only: no lock on the table. Raises ValueError for a partition
    that is not a range of this scheme (a DEFAULT one, say)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    )
    found = []
    for name, bound in rows:
        match = _BOUND.fullmatch(bound)
        if match is None:
            raise ValueError(f"partition {name} of {table} is not a time range: {bound}")
        found.append(Partition(name, _bound(match.group(1)), _bound(match.group(2))))
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: p.lower or oldest)


def _catch_alls(table: str, parts: list[Partition]) -> tuple[Partition, Partition]:
    if len(parts) < 2 or parts[0].lower is not None or parts[-1].upper is not None:
        raise ValueError(
            f"{table} is not partitioned by time with catch-all partitions at both ends:"
            " run `linkcast db upgrade`"
        )
    return parts[0], parts[-1]


def _under_lock(engine: Engine, table: str, work: Callable[[Connection], T]) -> tuple[T, float]:
    """Run ``work`` in a transaction of its own holding ``table``'s ACCESS EXCLUSIVE lock
    (the parent only: ``LOCK TABLE ONLY``), waiting at most ``LOCK_TIMEOUT_MS`` a try.
    Returns its result and the seconds the lock was held."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
                conn.execute(text(f"LOCK TABLE ONLY {table} IN ACCESS EXCLUSIVE MODE"))
                granted = time.perf_counter()
                result = work(conn)
            return result, time.perf_counter() - granted
        except OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise
            log.info("partitions of %s: lock busy (try %d), retrying", table, attempt)
            time.sleep(LOCK_RETRY_SECONDS)
    raise PartitionLockTimeout(
        f"could not lock {table} within {LOCK_TIMEOUT_MS} ms in {LOCK_ATTEMPTS} tries"
    )


def _create_days(conn: Connection, table: str, start: datetime, end: datetime) -> int:
    """Day partitions for [start, end) (both day starts); the range must be free."""
    created = 0
    day = start
    while day < end:
        conn.execute(
            text(
                f"CREATE TABLE {day_name(table, day)} PARTITION OF {table}"
                f" FOR VALUES FROM ({_literal(day)}) TO ({_literal(day + DAY)})"
            )
        )
        created += 1
        day += DAY
    return created


def _move(conn: Connection, table: str, source: str, where: str, at: datetime) -> int:
    """Rows of the detached ``source`` matching ``where`` into ``table`` (routed to its
    partitions), then out of ``source``. Returns how many."""
    moved = conn.execute(
        text(f"INSERT INTO {table} SELECT * FROM {source} WHERE {where}"), {"at": at}
    ).rowcount
    if moved:
        conn.execute(text(f"DELETE FROM {source} WHERE {where}"), {"at": at})
    return int(moved)


def _rebound(conn: Connection, table: str, part: str, lower: str, upper: str) -> None:
    conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {part}"))
    conn.execute(
        text(f"ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ({lower}) TO ({upper})")
    )


def ensure(engine: Engine, table: str, start: datetime, end: datetime) -> Maintained:
    """Make every UTC day from ``start``'s to ``end``'s (inclusive) a day partition of
    ``table``: the ``before`` catch-all is lowered and ``after`` raised as needed, and the
    rows they held in the new days are moved into them (none, unless the engine was
    down longer than ``AHEAD_DAYS`` while samples kept coming, or rows were written
    older than the first day). At most ``DAYS_PER_LOCK`` days are created under one
    hold of the lock (creating one takes ~40 ms here), so a first start that lowers
    ``before`` by the whole retention never stops the writers for long. Nothing is
    locked when nothing is due."""
    first, last = floor_day(start), floor_day(end) + DAY
    column = TABLES[table]

    def due(conn: Connection) -> tuple[Partition, Partition] | None:
        before, after = _catch_alls(table, partitions(conn, table))
        assert before.upper is not None and after.lower is not None
        return None if before.upper <= first and after.lower >= last else (before, after)

    def work(conn: Connection) -> Maintained:
        found = due(conn)  # again, as locked: another process may have done it
        if found is None:
            return Maintained(table)
        before, after = found
        assert before.upper is not None and after.lower is not None
        if first < before.upper:  # lower `before` by at most DAYS_PER_LOCK days
            to = max(first, before.upper - DAYS_PER_LOCK * DAY)
            conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {before.name}"))
            created = _create_days(conn, table, to, before.upper)
            moved = _move(conn, table, before.name, f"{column} >= :at", to)
            conn.execute(
                text(
                    f"ALTER TABLE {table} ATTACH PARTITION {before.name}"
                    f" FOR VALUES FROM (MINVALUE) TO ({_literal(to)})"
                )
            )
        else:  # raise `after` by at most DAYS_PER_LOCK days
            to = min(last, after.lower + DAYS_PER_LOCK * DAY)
            conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {after.name}"))
            created = _create_days(conn, table, after.lower, to)
            moved = _move(conn, table, after.name, f"{column} < :at", to)
            conn.execute(
                text(
                    f"ALTER TABLE {table} ATTACH PARTITION {after.name}"
                    f" FOR VALUES FROM ({_literal(to)}) TO (MAXVALUE)"
                )
            )
        return Maintained(table, created=created, moved=moved)

    with engine.connect() as conn:
        if due(conn) is None:
            return Maintained(table)
    created = moved = 0
    held = 0.0
    while True:
        step, seconds = _under_lock(engine, table, work)
        held += seconds
        if not step.created and not step.moved:
            break
        created, moved = created + step.created, moved + step.moved
    if created or moved:
        log.info(
            "partitions of %s: %d day(s) created, %d row(s) moved out of a catch-all",
            table,
            created,
            moved,
        )
    return Maintained(table, created=created, moved=moved, locked_seconds=held)


def _detached(conn: Connection, table: str) -> list[str]:
    """Day tables of ``table`` that are no longer partitions: detached by a retention
    run that stopped before dropping them."""
    rows = conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relname ~ :pattern AND relkind = 'r'"
            " AND NOT relispartition AND relnamespace = current_schema()::regnamespace"
        ),
        {"pattern": f"^{table}_p[0-9]{{8}}$"},
    )
    return sorted(r[0] for r in rows)


def drop_older_than(engine: Engine, table: str, cutoff: datetime) -> Maintained:
    """Retention: remove every row of ``table`` older than ``cutoff`` rounded down to
    the start of its UTC day (``bound``), by dropping the day partitions that end at or
    before it and emptying (TRUNCATE) the ``before`` catch-all, which is then bounded
    there. Every row at or after ``bound`` is kept. Never a DELETE of old rows.

    Under the table's lock the old days are only detached (catalogue changes); they
    are dropped after the commit, each in a transaction of its own that does not lock
    the table: removing a day's files (1.3 GB for 14.4 M rows) takes seconds on a busy
    disk, and writers need not wait for it.

    Raises :class:`PartitionLockTimeout` when the lock could not be had (nothing
    changed), ValueError when ``table`` is not partitioned by this scheme."""
    bound = floor_day(cutoff)
    ensured = ensure(engine, table, bound, bound)  # ``bound`` is now a partition boundary
    with engine.connect() as conn:
        parts = partitions(conn, table)
        before, _ = _catch_alls(table, parts)
        due = any(p.upper is not None and p.upper <= bound for p in parts[1:])
        due = due or bool(conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {before.name})")))
        left = _detached(conn, table)
    held = ensured.locked_seconds
    old: list[Partition] = []
    if due:

        def work(conn: Connection) -> list[Partition]:
            parts = partitions(conn, table)
            before, _ = _catch_alls(table, parts)
            old = [p for p in parts[1:-1] if p.upper is not None and p.upper <= bound]
            for part in old:
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {part.name}"))
            conn.execute(text(f"TRUNCATE {before.name}"))  # all its rows are older than bound
            if before.upper != bound:
                _rebound(conn, table, before.name, "MINVALUE", _literal(bound))
            return old

        old, seconds = _under_lock(engine, table, work)
        held += seconds
    for name in sorted({*left, *(p.name for p in old)}):
        with engine.begin() as conn:  # no longer a partition: the table is not locked
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    if due:
        log.info(
            "retention of %s: %d day partition(s) dropped, rows before %s removed,"
            " table locked %.3f s",
            table,
            len(old),
            bound.isoformat(),
            held,
        )
    return Maintained(
        table,
        created=ensured.created,
        dropped=len(old),
        moved=ensured.moved,
        bound=bound,
        locked_seconds=held,
    )
