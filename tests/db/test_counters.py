"""Counters to rates (db/counters.py) and write_series, on the real database."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, text

from api.series import DEFAULT_RULES, BadPoint, Point, Rule, SeriesMap
from db import counters
from db.counters import NO_CAPACITY_CEILING_BPS, rate
from db.ingest import LinkIds, write_series

SNMP = {"instance": "r1", "ifName": "xe-0/0/1"}
LINK = "r1:xe-0/0/1"
SERIES = SeriesMap(DEFAULT_RULES)


@pytest.fixture(autouse=True)
def fresh_known_rows(monkeypatch):
    """Each test starts with a process that remembers no counter_state row (the set is
    the process's, and clean_db empties the table between tests)."""
    monkeypatch.setattr(counters, "_KNOWN_ROWS", counters._KnownRows())


def push(engine: Engine, points: list[Point], ids: LinkIds | None = None):
    m = SERIES.map(points, latest=4e9)
    return write_series(engine, m.gauges, m.counters, m.capacities, ids or LinkIds())


def octets(ts: float, value: int) -> Point:
    return Point("ifHCOutOctets", SNMP, ts, value)


def loads(engine: Engine, link: str = LINK) -> list[tuple[float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT extract(epoch FROM s.ts)::float8, s.value_bps FROM sample s"
                " JOIN link l ON l.id = s.link_id WHERE l.name = :n ORDER BY s.ts"
            ),
            {"n": link},
        )
        return [(float(t), float(v)) for t, v in rows]


def test_rate_wrap_reset_gap_and_stale() -> None:
    kw = {"scale": 8.0, "bits": 32, "ceiling": 1e9, "max_gap": 900.0}
    # a 32-bit wrap: 2**32 - 1000 -> 1000 in 10 s is 2000 octets, 1600 bit/s
    assert rate((2**32 - 1000, 0.0), 1000, 10.0, **kw) == (1600.0, "wrap")
    # down by a lot with a 100 Mbit/s line: a reboot, no sample
    assert rate((3 * 10**9, 0.0), 5, 30.0, **{**kw, "ceiling": 1e8}) == (None, "reset")
    assert rate((10, 0.0), 20, 901.0, **kw) == (None, "gap")
    assert rate((10, 5.0), 20, 5.0, **kw) == (None, "stale")
    assert rate(None, 20, 5.0, **kw) == (None, "baseline")
    # a 64-bit counter far below its top cannot have wrapped in seconds
    big = {**kw, "bits": 64, "ceiling": NO_CAPACITY_CEILING_BPS}
    assert rate((10**15, 0.0), 10, 60.0, **big) == (None, "reset")


def test_counter_series_to_rates_with_wrap_reboot_and_capacity(clean_db: Engine) -> None:
    top = 2**64
    w = push(clean_db, [octets(60, top - 3_000_000), Point("ifHighSpeed", SNMP, 60, 10)])
    assert (w.rows, w.capacities, w.counter_events) == (0, 1, {"baseline": 1})
    # 60 s later: wrapped past 2**64; 7.5e6 octets in 60 s = 1 Mbit/s
    push(clean_db, [octets(120, 4_500_000)])
    # then a reboot: the counter restarts near 0; no sample, never a spike
    w = push(clean_db, [octets(180, 1000)])
    assert w.counter_events == {"reset": 1} and w.rows == 0
    push(clean_db, [octets(240, 1000 + 75_000_000)])  # 10 Mbit/s
    assert loads(clean_db) == [(120.0, 1e6), (240.0, 1e7)]
    with clean_db.connect() as conn:
        cap = conn.scalar(text("SELECT capacity_bps FROM link WHERE name = :n"), {"n": LINK})
        value = conn.scalar(text("SELECT value FROM counter_state WHERE link = :n"), {"n": LINK})
    assert cap == 10e6 and int(value) == 75_001_000


def test_a_retry_or_an_older_reading_changes_nothing(clean_db: Engine) -> None:
    push(clean_db, [octets(0, 0), octets(30, 3_750_000)])  # one request, two readings
    again = push(clean_db, [octets(0, 0), octets(30, 3_750_000)])
    assert again.counter_events == {"stale": 2} and again.rows == 0
    assert loads(clean_db) == [(30.0, 1e6)]


def test_a_refused_request_leaves_the_counter_where_it_was(clean_db: Engine) -> None:
    push(clean_db, [octets(0, 0)])
    bad = [octets(30, 3_750_000), Point("link_load_bps", {"link": "A>B"}, 30, -1.0)]
    with pytest.raises(BadPoint, match="negative"):
        push(clean_db, bad)
    with pytest.raises(BadPoint, match="future"):
        push(clean_db, [octets(30, 3_750_000), octets(5e9, 1)])
    push(clean_db, [octets(30, 3_750_000)])
    assert loads(clean_db) == [(30.0, 1e6)]


def test_workers_share_the_last_reading(clean_db: Engine) -> None:
    """Readings of one series pushed by two workers at once: each rate is taken from
    the reading before it, whichever worker stored that one (no rate is lost or
    doubled; each worker has its own LinkIds, as processes do)."""
    push(clean_db, [octets(0, 0)])
    barrier = threading.Barrier(2)

    def worker(ts: float, value: int) -> None:
        barrier.wait()
        push(clean_db, [octets(ts, value)], LinkIds())

    threads = [
        threading.Thread(target=worker, args=(60, 7_500_000)),
        threading.Thread(target=worker, args=(120, 15_000_000)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = loads(clean_db)
    # either order: 60 then 120 gives two rates of 1 Mbit/s; 120 first gives one
    # rate over 0..120 s (1 Mbit/s) and 60 is stale. Never a wrong or doubled value.
    assert got in ([(60.0, 1e6), (120.0, 1e6)], [(120.0, 1e6)])


def test_gauges_store_in_bits_per_second_and_unmatched_are_counted(clean_db: Engine) -> None:
    w = push(
        clean_db,
        [
            Point("link_load_bps", {"link": "A>B"}, 60, 2.5e9),
            Point("link_load_bps", {"link": "A>B"}, 60, 3.0e9),  # same (link, ts): last wins
            Point("up", {"instance": "r1"}, 60, 1.0),
        ],
    )
    assert w.rows == 1
    assert loads(clean_db, "A>B") == [(60.0, 3.0e9)]
    m = SERIES.map([Point("up", {}, 1, 1.0), Point("ifHCOutOctets", {}, 1, 1)], latest=4e9)
    assert m.dropped == {"no_rule": 1, "missing_label": 1}


def test_a_rise_faster_than_the_line_is_no_sample(clean_db: Engine) -> None:
    """0 then 2**64 - 1 a minute later would be 2.5e18 bit/s: never stored, on a link
    with a capacity (its line rate) or without (1 Tbit/s)."""
    w = push(clean_db, [octets(0, 0), octets(60, 2**64 - 1)])
    assert w.counter_events == {"baseline": 1, "implausible": 1} and w.rows == 0
    push(clean_db, [octets(120, 2**64 - 1 + 0)])  # the jump's reading is the new base
    push(clean_db, [Point("ifHighSpeed", SNMP, 180, 1000), octets(180, 2**64 - 2)])
    # a fall from near the top: a wrap implying 2**64 / 60 s, over a 1 Gbit/s line
    assert loads(clean_db) == [(120.0, 0.0)]


def test_two_series_of_one_link_keep_their_own_readings(clean_db: Engine) -> None:
    """Two collectors (jobs) report the same interface: each rate comes from its own
    previous reading, not from the other's (which would be resets and jumps)."""
    a, b = {**SNMP, "job": "snmp-a"}, {**SNMP, "job": "snmp-b"}
    push(clean_db, [Point("ifHCOutOctets", a, 0, 10**12), Point("ifHCOutOctets", b, 0, 5)])
    w = push(
        clean_db,
        [Point("ifHCOutOctets", a, 60, 10**12 + 7_500_000), Point("ifHCOutOctets", b, 61, 5)],
    )
    assert w.counter_events == {} and w.rows == 2
    assert loads(clean_db) == [(60.0, 1e6), (61.0, 0.0)]


def test_a_reading_ahead_of_the_clock_does_not_hold_the_series(clean_db: Engine) -> None:
    now = float(int(time.time()))
    w = push(clean_db, [octets(now - 60, 0), octets(now + 3000, 10**9)])
    assert w.counter_events == {"baseline": 1, "future": 1}
    push(clean_db, [octets(now, 7_500_000)])  # a true reading is not taken as stale
    assert loads(clean_db) == [(now, 1e6)]


def test_a_gauge_out_of_range_once_in_bits_per_second_is_refused(clean_db: Engine) -> None:
    m = SeriesMap([*DEFAULT_RULES, Rule("g", "{link}", "Gbit/s")])
    with pytest.raises(BadPoint, match="exceeds 1e"):
        m.map([Point("g", {"link": "A>B"}, 1.0, 1e300)], latest=1e10)
    with pytest.raises(BadPoint, match="exceeds 1e"):
        m.map([Point("ifHighSpeed", SNMP, 1.0, 1e305)], latest=1e10)


def test_a_counter_row_gone_behind_the_process_is_placed_again(clean_db: Engine) -> None:
    """A process remembers which series have a counter_state row and skips placing
    them; a row deleted behind it (the table emptied) is placed again, so readings keep
    their base and give rates, never baselines forever."""
    first = push(clean_db, [octets(0, 0)])
    assert first.counter_events == {"baseline": 1}
    with clean_db.begin() as conn:
        conn.execute(text("DELETE FROM counter_state"))
    assert push(clean_db, [octets(60, 0)]).counter_events == {"baseline": 1}
    push(clean_db, [octets(120, 7_500_000)])
    assert loads(clean_db) == [(120.0, 1e6)]


def test_series_and_links_that_need_quoting_keep_their_readings(clean_db: Engine) -> None:
    """counter_state's keys go to PostgreSQL inside text[] literals: a series whose
    labels hold quotes, backslashes, braces and commas keeps its reading."""
    labels = {"instance": 'r"1\\', "ifName": "{x, NULL}"}
    push(clean_db, [Point("ifHCOutOctets", labels, 0, 0)])
    push(clean_db, [Point("ifHCOutOctets", labels, 60, 7_500_000)])
    assert loads(clean_db, 'r"1\\:{x, NULL}') == [(60.0, 1e6)]


def waiting_on_a_lock(engine: Engine, within: float = 60.0) -> None:
    """Return once some backend waits on a lock to insert into counter_state (asked on
    a new connection each time: a transaction sees one snapshot of pg_stat_activity)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
        " AND query LIKE '%INSERT INTO counter_state%'"
    )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.scalar(text(sql)):
                return
        time.sleep(0.05)
    raise AssertionError(f"no insert into counter_state waited on a lock within {within} s")


def test_a_push_holds_no_lock_while_it_places_a_missing_row(clean_db: Engine) -> None:
    """A series this process took for stored has lost its row, which another
    transaction is inserting and which then locks another series of the same push. The
    push gives its locks back before it places the row: holding them while it waited
    on that insert was a deadlock, one side refused (found by a reviewer)."""
    other = Point("ifHCOutOctets", {"instance": "r2", "ifName": "et2"}, 0, 0)
    push(clean_db, [octets(0, 0), other])  # both rows placed, and remembered
    series = 'ifHCOutOctets{ifName="xe-0/0/1",instance="r1"}'
    with clean_db.begin() as conn:
        conn.execute(text("DELETE FROM counter_state WHERE series = :s"), {"s": series})
    errors: list[BaseException] = []

    def pushing() -> None:
        try:
            push(clean_db, [octets(60, 7_500_000), other._replace(ts=60, value=7_500_000)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with clean_db.connect() as x:
        x.execute(text("SET lock_timeout = '30s'"))
        x.execute(
            text("INSERT INTO counter_state (series, link) VALUES (:s, :l)"),
            {"s": series, "l": LINK},
        )  # not committed: the push's insert of the same row waits for it
        thread = threading.Thread(target=pushing)
        thread.start()
        waiting_on_a_lock(clean_db)  # the push found the row missing and is placing it
        x.execute(
            text("SELECT 1 FROM counter_state WHERE link = 'r2:et2' FOR UPDATE")
        )  # the other series: the push must not be holding it now
        x.commit()
        thread.join(60)
    assert not thread.is_alive() and errors == []
    assert loads(clean_db, "r2:et2") == [(60.0, 1e6)]
    assert loads(clean_db) == []  # its row came back empty: that reading is a baseline


def test_a_nul_or_quotes_in_a_label_keep_the_series_apart_and_storable(clean_db: Engine) -> None:
    """A counter series' identity holds every label: a NUL in one (an ifAlias a device
    returned) must not make PostgreSQL refuse the push (that was a 500, which Prometheus
    retries for ever), and label values holding quotes must not make two series one."""
    nul = {**SNMP, "ifAlias": "up\x00link"}
    one, two = {**SNMP, "a": 'x",b="y'}, {**SNMP, "a": "x", "b": "y"}
    first = push(clean_db, [Point("ifHCOutOctets", x, 0, 0) for x in (nul, one, two)])
    assert first.counter_events == {"baseline": 3}  # three series, three readings kept
    then = [Point("ifHCOutOctets", x, 60, 7_500_000 * k) for k, x in enumerate((nul, one, two), 1)]
    push(clean_db, then)
    # three rates of one link at one time: the last of them is kept (1, 2, 3 Mbit/s)
    assert loads(clean_db) == [(60.0, 3e6)]
    with clean_db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM counter_state")) == 3


def test_a_push_of_known_series_places_nothing_and_is_done_once(
    clean_db: Engine, monkeypatch
) -> None:
    """The fast path: a new series is placed in the push's one attempt, and once a
    process has placed a series' row its later pushes run no placeholder insert."""
    calls = []
    real = counters.counter_rates

    def counted(*args, **kwargs):
        calls.append(kwargs.get("trust_known", True))
        return real(*args, **kwargs)

    monkeypatch.setattr("db.ingest.counter_rates", counted)
    push(clean_db, [octets(0, 0)])
    assert calls == [True]  # placed at once, no second attempt
    monkeypatch.setattr(counters, "_PLACEHOLD", "SELECT 1 / 0 -- not to run: %s %s")
    push(clean_db, [octets(60, 7_500_000)])
    assert calls == [True, True] and loads(clean_db) == [(60.0, 1e6)]


def test_the_retry_after_a_missing_row_registers_links_and_capacities_once(
    clean_db: Engine,
) -> None:
    """The first attempt of a push registers a new link and sets its capacity, then
    finds a counter row missing and rolls back: the retry registers the link again
    (the process's cached id, rolled back, is checked and relearnt) and stores all."""
    push(clean_db, [octets(0, 0)])
    with clean_db.begin() as conn:
        conn.execute(text("DELETE FROM counter_state"))
    ids = LinkIds()
    new_link = {"instance": "r9", "ifName": "e9"}
    points = [octets(60, 7_500_000), Point("ifHighSpeed", new_link, 60, 10)]
    points.append(Point("ifHCOutOctets", new_link, 60, 5))
    written = push(clean_db, points, ids)
    assert written.capacities == 1 and written.counter_events == {"baseline": 2}
    push(clean_db, [Point("ifHCOutOctets", new_link, 120, 5 + 7_500_000)], ids)
    assert loads(clean_db, "r9:e9") == [(120.0, 1e6)]
    with clean_db.connect() as conn:
        links = conn.execute(text("SELECT name, capacity_bps FROM link ORDER BY name")).all()
    assert [tuple(r) for r in links] == [("r1:xe-0/0/1", None), ("r9:e9", 1e7)]
