"""db.ingest's write path: rows copied in PostgreSQL's binary format, as the text COPY
stored them: times as instants (an offset or none, which is UTC), values to the bit,
the line-rate mark, and a (link, ts) given twice keeping the last, on the COPY path and
on the upsert path that a stored (link, ts) sends a batch to."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import Engine, text

from db.ingest import LinkIds, write_samples, write_series

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def rows(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT l.name, s.ts, s.value_bps, s.quality FROM sample s"
                    " JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
                )
            )
        ]


@pytest.fixture
def away_from_utc():
    """The process in New York's time zone, so that "no offset: UTC" is not the
    machine's own zone passing for UTC (CI's machines run in UTC)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "EST5EDT,M3.2.0,M11.1.0"  # a POSIX rule: no zoneinfo files needed
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_times_values_and_marks_are_stored_as_sent(clean_db: Engine, away_from_utc) -> None:
    assert time.localtime(0).tm_hour != 0  # really away from UTC
    with clean_db.begin() as conn:
        conn.execute(text("INSERT INTO link (name, capacity_bps) VALUES ('c', 1e9)"))
    ids = LinkIds()
    written = write_samples(
        clean_db,
        [
            ("a", "2026-03-01T12:00:00+00:00", 0.0),
            ("a", "2026-03-01T14:00:00+02:00", 5.0),  # the same instant: the last is kept
            ("b", "2026-03-01T12:00:00.123456", 1e15 + 1),  # no offset: UTC
            ("c", "2026-03-01T12:00:00Z", 2e9),  # above 1e9 x 1.05: marked
        ],
        ids,
    )
    assert written == (3, 1)
    ms = T.replace(microsecond=123456)
    assert rows(clean_db) == [
        ("a", T, 5.0, "ok"),
        ("b", ms, 1e15 + 1, "ok"),
        ("c", T, 2e9, "over_line_rate"),
    ]
    # again, a value changed: the (link, ts) is stored, so the batch is upserted
    write_samples(clean_db, {("a", T): 6.0}, ids)  # as the JSON route keys them
    assert rows(clean_db)[0] == ("a", T, 6.0, "ok")
    # a naive datetime key is UTC too (psycopg's binary dumper would refuse it)
    write_samples(clean_db, {("a", T.replace(tzinfo=None)): 7.0, ("d", T): 1.0}, ids)
    assert rows(clean_db)[0] == ("a", T, 7.0, "ok") and rows(clean_db)[-1] == ("d", T, 1.0, "ok")


@pytest.mark.parametrize("seed", range(3))
def test_columns_store_what_datetimes_would(clean_db: Engine, seed: int) -> None:
    """write_series builds the binary COPY with numpy (db.ingest.copy_payload): each
    row must be stored as the datetime and dict it replaced would have stored it: times
    rounded to the microsecond as datetime.fromtimestamp rounds them (half-microsecond
    fractions included), the last of a repeated (link, ts) kept, the line-rate mark;
    then the same keys again with new values, through the upsert."""
    rng = np.random.default_rng(seed)
    with clean_db.begin() as conn:
        conn.execute(text("INSERT INTO link (name, capacity_bps) VALUES ('l0', 1e9), ('l1', 5e8)"))
    base = T.timestamp()
    # whole seconds, milliseconds, and fractions near half a microsecond
    seconds = [base + 60.0 * k for k in range(6)]
    seconds += [base + 0.001 * int(k) for k in rng.integers(1, 10**6, 6)]
    seconds += [base + k + 0.5e-6 + d for k in range(6) for d in (0.0, 1e-9, -1e-9)]
    # exact ties: j/128 s is a whole number of microseconds and a half, for odd j (half
    # to even, as datetime rounds: 1/128 s is 7812.5 us, stored as 7812)
    seconds += [base + j / 128 for j in (1, 3, 5, 7, 127)]
    gauges = []
    for _ in range(400):
        link = f"l{rng.integers(0, 4)}"
        value = float(rng.choice([0.0, rng.uniform(0, 2e9), 1e15 + 1]))
        gauges.append((link, seconds[rng.integers(0, len(seconds))], value))
    ceiling = {"l0": 1e9 * 1.05, "l1": 5e8 * 1.05}

    def expected(batch, before=None):
        out = dict(before or {})
        for link, ts, value in batch:
            out[link, datetime.fromtimestamp(ts, UTC)] = value
        return sorted(
            (link, at, value, "over_line_rate" if value > ceiling.get(link, np.inf) else "ok")
            for (link, at), value in out.items()
        )

    ids = LinkIds()
    written = write_series(clean_db, gauges, [], {}, ids)
    want = expected(gauges)
    assert written.rows == len(want) and sorted(rows(clean_db)) == want
    assert written.quarantined == sum(1 for row in want if row[3] == "over_line_rate")
    again = [(link, ts, value + 1.0) for link, ts, value in gauges[::3]]
    write_series(clean_db, again, [], {}, ids)
    stored = {(link, at): value for link, at, value, _ in want}
    assert sorted(rows(clean_db)) == expected(again, stored)


def test_a_direct_caller_cannot_store_what_the_routes_refuse(clean_db: Engine) -> None:
    """The routes check times and values first; write_series and write_samples still
    refuse a NaN time or load (numpy would store them), storing nothing of the batch,
    and take capacities given as ints, alone or beside floats."""
    ids, ts = LinkIds(), T.timestamp()
    with pytest.raises(ValueError, match="time"):
        write_series(clean_db, [("a", ts, 1.0), ("a", float("nan"), 2.0)], [], {}, ids)
    with pytest.raises(ValueError, match="load"):
        write_samples(clean_db, [("a", T, 1.0), ("b", T, None)], ids)  # type: ignore[list-item]
    assert rows(clean_db) == []
    both = [("b", ts, 2e9), ("c", ts, 2e9)]
    written = write_series(clean_db, both, [], {"b": 10**9, "c": 2.5e9}, ids)  # int and float
    assert (written.rows, written.quarantined, written.capacities) == (2, 1, 2)


def test_link_names_that_need_quoting_in_an_array(clean_db: Engine) -> None:
    """Names go to PostgreSQL inside text[] literals (db.live.text_array_literal):
    quotes, backslashes, braces, commas, spaces and the word NULL must come back as
    sent, on the first write (registration) and the next (the cached ids' check)."""
    names = ['a"b', "c\\d", "{e,f}", " g h ", "NULL", "ünï>x", ""]
    ids = LinkIds()
    for value in (1.0, 2.0):  # the second write checks the cached ids
        write_samples(clean_db, [(n, T, value) for n in names], ids)
    assert sorted(rows(clean_db)) == sorted((n, T, 2.0, "ok") for n in names)
    with clean_db.connect() as conn:
        stored = conn.execute(text("SELECT name, src, dst FROM link WHERE name = 'ünï>x'")).one()
    assert tuple(stored) == ("ünï>x", "ünï", "x")
