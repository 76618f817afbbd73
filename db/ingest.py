"""Bulk writes of samples: one COPY straight into `sample`, an upsert when needed.

Link names are resolved to ids in Python (a per-process cache, checked against the
table on every write, so a stale entry can never attach samples to a missing link).
New samples, the common case, go in with a single COPY into `sample`: the cheapest
write PostgreSQL has, in its binary format (psycopg's dumpers: no number or time is
printed as text and parsed back). If any (link, ts) of the batch is already stored, that COPY
fails as a whole; it is rolled back to a savepoint and the batch goes through a
staging table and one INSERT .. ON CONFLICT DO UPDATE instead (last write wins; an
identical retry rewrites no row). Either way the request is one transaction.

A sample above its link's line rate (``capacity_bps x (1 + line_rate_margin)``) is
stored as sent but marked ``over_line_rate``, so that the engine never learns from it:
a collector's counter-wrap correction can make 1e14 bit/s of a reset. The capacities
come with the ids, from the one query per batch that checks them against ``link``; they
are never cached (an operator may set a capacity at any time; only samples written
after that are judged by it).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import NamedTuple

import psycopg
from sqlalchemy import Engine

from db.counters import Reading, counter_rates
from db.models import SampleQuality

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS sample_stage "
    "(link_id integer NOT NULL, ts timestamptz NOT NULL, value_bps double precision NOT NULL,"
    " quality text NOT NULL) "
    "ON COMMIT DELETE ROWS"
)

# Unknown links are registered; `A>B` names give the link's source and destination nodes.
# NOT EXISTS first, so that known names do not burn identity values on conflict.
_REGISTER_LINKS = """
INSERT INTO link (name, src, dst)
SELECT n,
       CASE WHEN strpos(n, '>') > 0 THEN split_part(n, '>', 1) END,
       CASE WHEN strpos(n, '>') > 0 THEN substr(n, strpos(n, '>') + 1) END
FROM unnest(%(names)s::text[]) AS n
WHERE NOT EXISTS (SELECT 1 FROM link l WHERE l.name = n)
ON CONFLICT (name) DO NOTHING
"""

# A new value is judged anew (an engine's excursion mark was about the old one); the
# same value again rewrites nothing, so its mark stays.
_UPSERT_SAMPLES = """
INSERT INTO sample (link_id, ts, value_bps, quality)
SELECT link_id, ts, value_bps, quality FROM sample_stage
ON CONFLICT (link_id, ts) DO UPDATE SET value_bps = EXCLUDED.value_bps, quality = EXCLUDED.quality
WHERE sample.value_bps IS DISTINCT FROM EXCLUDED.value_bps
"""

_COLUMNS = "link_id, ts, value_bps, quality"
_LINK, _TS = itemgetter(0), itemgetter(1)
_TZINFO = attrgetter("tzinfo")


class Written(NamedTuple):
    """What a batch stored: rows written, and how many of the batch are quarantined."""

    rows: int
    quarantined: int


class LinkIds:
    """Link name -> id, learned from the table; shared by the threads of one process."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(
        self, cur: psycopg.Cursor, names: Collection[str]
    ) -> tuple[dict[str, int], dict[int, float]]:
        """Ids of ``names``, registering unknown ones, all checked against ``link``; and
        the capacity (bit/s) of those that have one, as the table has it now."""
        with self._lock:
            known = {n: self._ids[n] for n in names if n in self._ids}
        capacity: dict[int, float] = {}
        if known:  # every cached (name, id) pair must still be in the table
            cur.execute(  # binary parameters: no quoting of every name (%b)
                "SELECT l.id, l.capacity_bps FROM link l"
                " JOIN unnest(%b::text[], %b::int[]) AS k(name, id)"
                " ON l.id = k.id AND l.name = k.name",
                (list(known), list(known.values())),
            )
            found_caps = cur.fetchall()
            if len(found_caps) != len(known):
                known = {}  # the table changed under us: learn again
                with self._lock:
                    self._ids.clear()
            else:
                capacity = {i: c for i, c in found_caps if c is not None}
        # sorted: two workers registering the same new links lock them in one order
        missing = sorted(n for n in names if n not in known)
        if missing:
            cur.execute(_REGISTER_LINKS, {"names": missing})
            cur.execute("SELECT name, id, capacity_bps FROM link WHERE name = ANY(%s)", (missing,))
            found = {}
            for name, link_id, cap in cur.fetchall():
                found[name] = link_id
                if cap is not None:
                    capacity[link_id] = cap
            with self._lock:
                self._ids.update(found)
            known.update(found)
        return known, capacity


# A COPY row's columns as psycopg dumps them in binary (PostgreSQL's binary COPY
# format): no number or timestamp is written out and parsed back as text, which costs
# the API about 0.25 us and PostgreSQL more per row (bench/ingest.py).
_COPY_TYPES = ("int4", "timestamptz", "float8", "text")


def copy_rows(
    rows: Mapping[tuple[str, datetime], float],
    ids: Mapping[str, int],
    line_rate: Mapping[int, float] | None = None,
) -> tuple[list[tuple[int, datetime, float, str]], int]:
    """The COPY rows (link id, ts, bit/s, quality) of ``rows`` ((link name, ts) ->
    bit/s), and how many are above their link's ``line_rate`` (bit/s, by link id; a
    link not in it has none), marked ``over_line_rate``.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> copy_rows({("a", t): 1e9, ("b", t): 3.0}, {"a": 7, "b": 8}, {8: 2.0})[1]
    1
    >>> copy_rows({("a", t): 1e9}, {"a": 7})[0][0][::2]
    (7, 1000000000.0)
    """
    ok, over = SampleQuality.OK, SampleQuality.OVER_LINE_RATE
    if not line_rate:  # the common case: no capacity in the batch, nothing to judge
        return [(ids[link], ts, value, ok) for (link, ts), value in rows.items()], 0
    inf = float("inf")
    out = []
    for (link, ts), value in rows.items():
        i = ids[link]
        out.append((i, ts, value, over if value > line_rate.get(i, inf) else ok))
    return out, sum(1 for row in out if row[3] == over)


def _copy(cur: psycopg.Cursor, table: str, rows: list[tuple[int, datetime, float, str]]) -> None:
    with cur.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
        write = copy.write_row
        for row in rows:
            write(row)


def _store(
    cur: psycopg.Cursor,
    rows: Mapping[tuple[str, datetime], float],
    ids: Mapping[str, int],
    capacity: dict[int, float],
    line_rate_margin: float,
) -> Written:
    """COPY ``rows`` ((link name, ts) -> bit/s; ``ids``: the links' ids), falling back
    to an upsert."""
    line_rate = {i: c * (1 + line_rate_margin) for i, c in capacity.items()}
    copied, quarantined = copy_rows(rows, ids, line_rate)
    cur.execute("SAVEPOINT fresh")
    try:
        _copy(cur, "sample", copied)
        written = len(copied)
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT fresh")
        cur.execute(_STAGE_DDL)  # rare path; inside this transaction on purpose
        _copy(cur, "sample_stage", copied)
        cur.execute(_UPSERT_SAMPLES)
        written = cur.rowcount
    return Written(written, quarantined)


def _utc(ts: str | datetime) -> datetime:
    """A time as an aware datetime (ISO 8601 text parsed), UTC when it names no offset."""
    at = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def write_samples(
    engine: Engine,
    rows: Mapping[tuple[str, datetime], float] | Collection[tuple[str, str | datetime, float]],
    link_ids: LinkIds,
    *,
    line_rate_margin: float = 0.05,
) -> Written:
    """Store samples in one transaction: all of them or none.

    ``rows``: (link name, ts) -> value_bps, as :func:`api.ingest.parse_batch` keys
    them (aware datetimes), or (link name, ts, value_bps) triples, the ts a datetime or
    RFC 3339 text; a time without an offset is UTC. Of a (link, ts) given more than
    once, in either form or spelling of the same instant, the last is kept. A value
    above its link's ``capacity_bps x (1 + line_rate_margin)`` is stored marked
    ``over_line_rate``. Returns the rows written and how many of ``rows`` were marked.
    """
    if not rows:
        return Written(0, 0)
    keyed = rows
    if not isinstance(rows, Mapping):
        stamps = {ts: _utc(ts) for ts in {ts for _, ts, _ in rows}}  # a batch repeats few
        keyed = {(name, stamps[ts]): value for name, ts, value in rows}
    elif None in set(map(_TZINFO, map(_TS, rows))):  # a naive datetime key: UTC, as above
        keyed = {}
        for (name, ts), value in rows.items():
            keyed[name, _utc(ts)] = value  # later wins where two keys are one instant
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            ids, capacity = link_ids.resolve(cur, {name for name, _ in keyed})
            written = _store(cur, keyed, ids, capacity, line_rate_margin)
        conn.commit()
        return written
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


class SeriesWritten(NamedTuple):
    """What a push of series stored: samples written (gauges and counter rates),
    quarantined among them, links whose capacity changed, and the counter events."""

    rows: int
    quarantined: int
    capacities: int
    counter_events: dict[str, int]


_SET_CAPACITY = """
UPDATE link SET capacity_bps = u.cap
FROM unnest(%s::int[], %s::float8[]) AS u(id, cap)
WHERE link.id = u.id AND link.capacity_bps IS DISTINCT FROM u.cap
"""


def write_series(
    engine: Engine,
    gauges: Sequence[tuple[str, float, float]],
    counters: Sequence[Reading],
    capacities: Mapping[str, float],
    link_ids: LinkIds,
    *,
    line_rate_margin: float = 0.05,
    counter_max_gap: float = 900.0,
) -> SeriesWritten:
    """Store a request's series, all or nothing.

    ``gauges``: (link, ts seconds, bit/s); ``counters``: readings as
    :func:`db.counters.counter_rates` takes them; ``capacities``: link -> bit/s (what
    :meth:`api.series.SeriesMap.map` sorted them into). In one transaction: the
    links are registered, capacities set (``ifHighSpeed``), counters turned into
    bit/s against their last stored reading (:func:`db.counters.counter_rates`,
    which advances that reading only if this transaction commits), and gauges and
    rates copied into ``sample``; a (link, ts) given twice keeps the last value.
    """
    names = {*map(_LINK, gauges), *(c[1] for c in counters), *capacities}
    if not names:
        return SeriesWritten(0, 0, 0, {})
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            ids, capacity = link_ids.resolve(cur, names)
            changed = 0
            if capacities:
                caps = {ids[n]: c for n, c in sorted(capacities.items())}
                cur.execute(_SET_CAPACITY, (list(caps), list(caps.values())))
                changed = cur.rowcount
                capacity.update(caps)
            ceilings = {
                n: capacity[i] * (1 + line_rate_margin) for n, i in ids.items() if i in capacity
            }
            rates = counter_rates(cur, counters, ceilings, max_gap=counter_max_gap)
            every = (*gauges, *rates.rows) if rates.rows else gauges
            stamps = {ts: datetime.fromtimestamp(ts, UTC) for ts in set(map(_TS, every))}
            # the last of a repeated (link, ts) wins (ts to the microsecond)
            rows = {(link, stamps[ts]): bps for link, ts, bps in every}
            written = Written(0, 0)
            if rows:
                written = _store(cur, rows, ids, capacity, line_rate_margin)
        conn.commit()
        return SeriesWritten(written.rows, written.quarantined, changed, rates.events)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
