"""Bulk writes of samples: one COPY straight into `sample`, an upsert when needed.

Link names are resolved to ids in Python (a per-process cache, checked against the
table on every write, so a stale entry can never attach samples to a missing link).
A batch is held as columns (:class:`Columns`: link ids, microseconds, bit/s), each
(link, ts) once, sorted by the primary key (within each quality). New samples, the
common case, go in with a single COPY into `sample`: the cheapest write PostgreSQL
has, in its binary format, the payload laid out by numpy (:func:`copy_payload`: no
number or time printed as text and parsed back, no Python per row). If any (link, ts)
of the batch is already stored, that COPY
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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import compress, repeat
from typing import NamedTuple

import numpy as np
import psycopg
from sqlalchemy import Engine

from db.counters import CounterStateMissing, Rates, Reading, counter_rates
from db.live import array_literal, text_array_literal
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
_ONE_US = timedelta(microseconds=1)


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
            cur.execute(  # array literals: no Python per element in psycopg
                "SELECT l.id, l.capacity_bps FROM link l"
                " JOIN unnest(%s::text[], %s::int[]) AS k(name, id)"
                " ON l.id = k.id AND l.name = k.name",
                (text_array_literal(known), array_literal(known.values())),
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
            names_array = text_array_literal(missing)
            cur.execute(_REGISTER_LINKS, {"names": names_array})
            cur.execute(
                "SELECT name, id, capacity_bps FROM link WHERE name = ANY(%s::text[])",
                (names_array,),
            )
            found = {}
            for name, link_id, cap in cur.fetchall():
                found[name] = link_id
                if cap is not None:
                    capacity[link_id] = cap
            with self._lock:
                self._ids.update(found)
            known.update(found)
        return known, capacity


# PostgreSQL's binary COPY format ("COPY", File Formats, in PostgreSQL's manual): an
# 11-byte signature, 32-bit flags and header-extension length (both 0); per row its
# number of fields (16-bit), then each field's length (32-bit) and its bytes, all
# big-endian; a trailer of -1. Timestamps are microseconds since 2000-01-01 UTC.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_TRAILER = b"\xff\xff"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_S = 946_684_800  # PG_EPOCH in Unix seconds
_YEAR_10000_S = 253_402_300_800  # where Python's datetime ends (PostgreSQL's goes on)


def _row_type(quality: str) -> np.dtype:
    """A row of ``sample`` (link_id int4, ts timestamptz, value_bps float8, quality
    text) as binary COPY lays it out, for one quality: fixed width, no padding."""
    width = len(quality.encode())
    return np.dtype(
        [("fields", ">i2"), ("link_len", ">i4"), ("link", ">i4"), ("ts_len", ">i4"),
         ("ts", ">i8"), ("value_len", ">i4"), ("value", ">f8"), ("quality_len", ">i4"),
         ("quality", f"S{width}")]
    )  # fmt: skip


_ROW_TYPES = {q: _row_type(q) for q in (SampleQuality.OK, SampleQuality.OVER_LINE_RATE)}


class Columns(NamedTuple):
    """A batch of samples as columns, one entry per sample: link ids (int32), times in
    microseconds since 2000-01-01 UTC (int64: PostgreSQL's own timestamp) and loads
    (float64, bit/s)."""

    link: np.ndarray
    us: np.ndarray
    bps: np.ndarray


def micros(seconds: np.ndarray) -> np.ndarray:
    """Unix times (float64 seconds, 1970 to 9999) as int64 microseconds since
    2000-01-01 UTC, each rounded to the microsecond exactly as
    ``datetime.fromtimestamp`` rounds it (the fraction of a second times 10^6, half to
    even), so that a time stored from columns is the one stored from a datetime.
    Raises ValueError for a time that is NaN or out of that range.

    >>> micros(np.array([946_684_800.0, 1_767_225_600.123]))
    array([              0, 820540800123000])

    Exact ties (1/128 s is 7812.5 us, 3/128 s 23437.5 us) go to the even microsecond:

    >>> micros(np.array([946_684_800 + 1 / 128, 946_684_800 + 3 / 128]))
    array([ 7812, 23438])
    """
    if len(seconds) and not (seconds.min() >= 0 and seconds.max() < _YEAR_10000_S):
        raise ValueError(
            "a time is not a number of seconds from 1970 to 9999 (NaN or out of range)"
        )
    whole = np.floor(seconds)
    frac_us = np.rint((seconds - whole) * 1e6).astype(np.int64)  # rint: half to even
    return (whole.astype(np.int64) - _PG_EPOCH_S) * 1_000_000 + frac_us


def last_wins(cols: Columns) -> Columns:
    """``cols`` with each (link, us) once, its last value kept, sorted by link and
    time (the order of ``sample``'s primary key).

    >>> c = last_wins(Columns(np.array([2, 1, 2]), np.array([5, 9, 5]), np.array([1., 2., 3.])))
    >>> c.link.tolist(), c.bps.tolist()
    ([1, 2], [2.0, 3.0])
    """
    order = np.lexsort((cols.us, cols.link))  # stable: a repeated key keeps its order
    link, us, bps = cols.link[order], cols.us[order], cols.bps[order]
    last = np.ones(len(order), bool)  # the last of each run of one key
    last[:-1] = (link[1:] != link[:-1]) | (us[1:] != us[:-1])
    return Columns(link[last], us[last], bps[last])


def copy_payload(cols: Columns, over: np.ndarray | None = None) -> bytes:
    """The whole binary COPY of ``cols`` into ``sample``'s columns (:data:`_COLUMNS`),
    quality ``over_line_rate`` where ``over`` (bool per sample) is true, else ``ok``:
    made by numpy in one pass per quality, no Python per row (against psycopg's
    ``write_row`` and a datetime per row, storing a 5,000-sample push went from 1.0 to
    0.63 us of the API's CPU per sample, in one process).

    >>> p = copy_payload(Columns(np.array([7]), np.array([0]), np.array([1e9])))
    >>> p[:11], len(p), p[-6:]
    (b'PGCOPY\\n\\xff\\r\\n\\x00', 61, b'\\x00\\x02ok\\xff\\xff')
    """
    parts = [_SIGNATURE]
    for quality, rows_type in _ROW_TYPES.items():
        if over is None:  # nothing judged: every row is ok
            if quality != SampleQuality.OK:
                continue
            link, us, bps = cols
        else:
            mask = over if quality == SampleQuality.OVER_LINE_RATE else ~over
            link, us, bps = (column[mask] for column in cols)
        if len(link) == 0:
            continue
        rows = np.empty(len(link), rows_type)
        rows["fields"], rows["link"], rows["ts"], rows["value"] = 4, link, us, bps
        rows["link_len"], rows["ts_len"], rows["value_len"] = 4, 8, 8
        rows["quality_len"], rows["quality"] = rows_type["quality"].itemsize, quality
        parts.append(rows.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


def _copy(cur: psycopg.Cursor, table: str, payload: bytes) -> None:
    with cur.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(payload)


def _store(
    cur: psycopg.Cursor,
    cols: Columns,
    capacity: Mapping[int, float],
    line_rate_margin: float,
) -> Written:
    """COPY ``cols`` (each (link, us) once: :func:`last_wins`), a sample above its
    link's ``capacity`` (bit/s, by link id) x (1 + ``line_rate_margin``) marked
    ``over_line_rate``; an upsert if any (link, ts) is already stored.

    Raises ValueError for a load that is not a finite number of bit/s, 0 or more (the
    routes refuse those first; this keeps a direct caller from storing one as ``ok``).
    """
    if len(cols.bps) and not (np.isfinite(cols.bps).all() and cols.bps.min() >= 0):
        raise ValueError("a load is not a finite number of bit/s, 0 or more")
    over = None
    if capacity:  # judged per distinct link, then spread to its samples
        links, where = np.unique(cols.link, return_inverse=True)
        inf = float("inf")
        ceilings = np.array([capacity.get(i, inf) for i in links.tolist()], np.float64)
        ceilings *= 1 + line_rate_margin
        over = cols.bps > ceilings[where]
    quarantined = int(over.sum()) if over is not None else 0
    payload = copy_payload(cols, over)
    cur.execute("SAVEPOINT fresh")
    try:
        _copy(cur, "sample", payload)
        written = len(cols.link)
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT fresh")
        cur.execute(_STAGE_DDL)  # rare path; inside this transaction on purpose
        _copy(cur, "sample_stage", payload)
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
    if isinstance(rows, Mapping):
        names, times = zip(*rows, strict=True)
        values: Collection[float] = rows.values()
    else:
        names, times, values = zip(*rows, strict=True)
    n = len(names)
    # each distinct time once (a batch repeats few): text parsed, no offset read as UTC
    stamps = {ts: (_utc(ts) - PG_EPOCH) // _ONE_US for ts in set(times)}
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            ids, capacity = link_ids.resolve(cur, set(names))
            us = np.fromiter(map(stamps.__getitem__, times), np.int64, n)
            cols = _columns(names, ids, us, values)
            written = _store(cur, last_wins(cols), capacity, line_rate_margin)
        conn.commit()
        return written
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


@dataclass(frozen=True, slots=True)
class Gauges:
    """A request's gauge samples as columns: sample ``i`` is a load of ``links[of[i]]``
    at ``ts[i]`` seconds, ``bps[i]`` bit/s.

    ``links``: a link name per series of the request (None for a series that is not a
    gauge); ``of``: int64 per sample, its series; ``ts``, ``bps``: float64 per sample.
    """

    links: list[str | None]
    of: np.ndarray
    ts: np.ndarray
    bps: np.ndarray

    @classmethod
    def of_rows(cls, rows: Sequence[tuple[str, float, float]]) -> Gauges:
        """(link, ts seconds, bit/s) rows as columns, each its own series."""
        n = len(rows)
        links, ts, bps = zip(*rows, strict=True) if rows else ((), (), ())
        return cls(
            list(links),
            np.arange(n, dtype=np.int64),
            np.fromiter(ts, np.float64, n),
            np.fromiter(bps, np.float64, n),
        )

    def __len__(self) -> int:
        return len(self.of)

    def names(self) -> set[str]:
        """The links that have a sample."""
        sampled = np.bincount(self.of, minlength=len(self.links)) > 0
        return set(compress(self.links, sampled.tolist())) - {None}  # type: ignore[return-value]

    def rows(self) -> list[tuple[str, float, float]]:
        """The samples as (link, ts seconds, bit/s), in order."""
        links = self.links
        return [
            (links[i], t, v)  # type: ignore[misc]
            for i, t, v in zip(self.of.tolist(), self.ts.tolist(), self.bps.tolist(), strict=True)
        ]


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
    gauges: Gauges | Sequence[tuple[str, float, float]],
    counters: Sequence[Reading],
    capacities: Mapping[str, float],
    link_ids: LinkIds,
    *,
    line_rate_margin: float = 0.05,
    counter_max_gap: float = 900.0,
) -> SeriesWritten:
    """Store a request's series, all or nothing.

    ``gauges``: loads as columns (:class:`Gauges`) or (link, ts seconds, bit/s) rows;
    ``counters``: readings as
    :func:`db.counters.counter_rates` takes them; ``capacities``: link -> bit/s (what
    :meth:`api.series.SeriesMap.map_batch` sorted them into). In one transaction: the
    links are registered, capacities set (``ifHighSpeed``), counters turned into
    bit/s against their last stored reading (:func:`db.counters.counter_rates`,
    which advances that reading only if this transaction commits), and gauges and
    rates copied into ``sample``; a (link, ts) given twice keeps the last value.
    """
    if not isinstance(gauges, Gauges):
        gauges = Gauges.of_rows(gauges)
    names = gauges.names() | {c[1] for c in counters} | set(capacities)
    if not names:
        return SeriesWritten(0, 0, 0, {})
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        for trust_known in (True, False):
            try:
                with conn.cursor() as cur:
                    written, changed, rates = _write_series(
                        cur, gauges, counters, capacities, names, link_ids,
                        line_rate_margin, counter_max_gap, trust_known,
                    )  # fmt: skip
                break
            except CounterStateMissing:  # rows locked: give them back, then place before locking
                conn.rollback()
        conn.commit()
        return SeriesWritten(written.rows, written.quarantined, changed, rates.events)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _write_series(
    cur: psycopg.Cursor,
    gauges: Gauges,
    counters: Sequence[Reading],
    capacities: Mapping[str, float],
    names: Collection[str],
    link_ids: LinkIds,
    line_rate_margin: float,
    counter_max_gap: float,
    trust_known: bool,
) -> tuple[Written, int, Rates]:
    """:func:`write_series`' statements, in the caller's transaction: what was stored,
    the capacities changed, and the counters' rates and events."""
    ids, capacity = link_ids.resolve(cur, names)
    changed = 0
    if capacities:
        caps = {ids[n]: c for n, c in sorted(capacities.items())}
        cur.execute(_SET_CAPACITY, (array_literal(caps), array_literal(map(float, caps.values()))))
        changed = cur.rowcount
        capacity.update(caps)
    ceilings = {n: capacity[i] * (1 + line_rate_margin) for n, i in ids.items() if i in capacity}
    rates = counter_rates(cur, counters, ceilings, max_gap=counter_max_gap, trust_known=trust_known)
    written = _store_loads(cur, gauges, rates.rows, ids, capacity, line_rate_margin)
    return written, changed, rates


def _store_loads(
    cur: psycopg.Cursor,
    gauges: Gauges,
    rows: Sequence[tuple[str, float, float]],
    ids: Mapping[str, int],
    capacity: Mapping[int, float],
    line_rate_margin: float,
) -> Written:
    """:func:`_store` of ``gauges`` then (link, ts seconds, bit/s) ``rows``; the last of
    a repeated (link, ts) wins (ts to the microsecond)."""
    if not len(gauges) and not rows:
        return Written(0, 0)
    # each gauge series' link id (0 for a series that is not a gauge: never picked)
    # (dict.get: None is no link's name; a gauge series' name is always in ids)
    series_ids = np.fromiter(map(ids.get, gauges.links, repeat(0)), np.int32, len(gauges.links))
    link, seconds, bps = [series_ids[gauges.of]], [gauges.ts], [gauges.bps]
    if rows:
        names, ts, values = zip(*rows, strict=True)
        link.append(np.fromiter(map(ids.__getitem__, names), np.int32, len(names)))
        seconds.append(np.fromiter(ts, np.float64, len(names)))
        bps.append(np.fromiter(values, np.float64, len(names)))
    cols = Columns(np.concatenate(link), micros(np.concatenate(seconds)), np.concatenate(bps))
    return _store(cur, last_wins(cols), capacity, line_rate_margin)


def _columns(
    links: Sequence[str], ids: Mapping[str, int], us: np.ndarray, bps: Iterable[float]
) -> Columns:
    """The columns of samples of ``links`` (names, resolved by ``ids``) at ``us``."""
    n = len(links)
    link = np.fromiter(map(ids.__getitem__, links), np.int32, n)
    return Columns(link, us, np.fromiter(bps, np.float64, n))
