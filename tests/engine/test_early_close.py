"""Early close (issue 14, latency): a bucket that has ended is processed as soon as every
link that reported in the bucket before it has reported, not only at the late allowance;
a link that stopped reporting holds it until the allowance (and no later bucket); samples
arriving after an early close are late samples, counted and not used.

Time is the engine's injectable clock: each check says where that clock stands against
the bucket's end and its allowance, and what had been processed by then."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from engine import LiveEngine
from tests.engine.test_loop import STEP, Clock, at, engine, loads, push

FAILED = "n3>m3"  # stops reporting in bucket 9


def without(name: str):  # noqa: ANN201
    return lambda k: {link: v for link, v in loads(k).items() if link != name}


def issues(clean_db) -> list:  # noqa: ANN001
    with clean_db.connect() as conn:
        rows = conn.execute(text("SELECT DISTINCT issued_at FROM forecast ORDER BY 1"))
        return [r[0] for r in rows]


def led(settings, clock: Clock) -> LiveEngine:  # noqa: ANN001
    eng = engine(settings.database_url, clock)
    assert eng.try_lead()
    return eng


def test_a_complete_bucket_closes_before_its_allowance(client, tokens, settings, clean_db):
    push(client, tokens["write"], range(10))  # buckets 0..9, every link
    clock = Clock(0)
    eng = led(settings, clock)
    try:
        late = eng.config.late
        assert late == timedelta(seconds=STEP / 4)
        # Bucket 9 has every sample but has not ended: it stays open (a link may send more).
        clock.now = at(10) - timedelta(seconds=1)
        assert eng.tick().last_bucket == at(8)
        # One second after its end, long before its allowance (at(10) + late): closed.
        clock.now = at(10) + timedelta(seconds=1)
        assert clock.now < at(10) + late
        report = eng.tick()
        assert (report.buckets, report.last_bucket) == (1, at(9))
        assert issues(clean_db)[-1] == at(10)  # its forecasts are stored
        # Polling on before the allowance finds nothing more to do.
        clock.now = at(10) + late
        assert eng.tick().buckets == 0
    finally:
        eng.release()


def test_a_missing_link_holds_the_bucket_until_its_allowance_and_no_longer(
    client, tokens, settings, clean_db
):
    push(client, tokens["write"], range(9))
    push(client, tokens["write"], range(9, 12), without(FAILED))  # it stopped reporting
    clock = Clock(0)
    eng = led(settings, clock)
    try:
        late = eng.config.late
        for behind in (timedelta(seconds=1), late - timedelta(seconds=1)):
            clock.now = at(10) + behind  # bucket 9 ended, its allowance not reached
            eng.tick()
            assert issues(clean_db)[-1] == at(9)  # bucket 8 processed, 9 not
        clock.now = at(10) + late  # the allowance: closed as before early close
        report = eng.tick()
        assert (report.buckets, report.last_bucket) == (1, at(9))
        # Bucket 10 expects the links of bucket 9, without the one that stopped: it is
        # complete without it, and closes early.
        clock.now = at(11) + timedelta(seconds=1)
        assert clock.now < at(11) + late
        assert eng.tick().last_bucket == at(10)
    finally:
        eng.release()


def test_a_bucket_after_one_without_samples_waits_for_its_allowance(
    client, tokens, settings, clean_db
):
    """With nothing reported in the bucket before (a collector outage), nothing says
    which links to wait for: the allowance decides."""
    push(client, tokens["write"], [*range(8), 9])  # bucket 8 empty
    clock = Clock(0)
    eng = led(settings, clock)
    try:
        clock.now = at(10) + timedelta(seconds=1)
        assert eng.tick().last_bucket == at(8)
        clock.now = at(10) + eng.config.late
        assert eng.tick().last_bucket == at(9)
    finally:
        eng.release()


def test_samples_after_an_early_close_are_late_and_counted(client, tokens, settings, clean_db):
    push(client, tokens["write"], range(10))
    clock = Clock(0)
    eng = led(settings, clock)
    try:
        clock.now = at(10) + timedelta(seconds=1)
        assert eng.tick().last_bucket == at(9)  # early
        # Another sample of bucket 9 arrives inside its allowance, after the early close.
        late_ts = at(9) + timedelta(seconds=30)
        sample = {"link": "n0>m0", "ts": late_ts.isoformat(), "value": 5e9}
        write = {"Authorization": f"Bearer {tokens['write']}"}
        r = client.post("/api/v1/telemetry", json={"samples": [sample]}, headers=write)
        assert r.status_code == 200, r.text
        push(client, tokens["write"], range(10, 11))
        clock.now = at(11) + timedelta(seconds=1)
        report = eng.tick()
        assert (report.last_bucket, report.late_samples) == (at(10), 1)
        assert eng.late_samples_total == 1
    finally:
        eng.release()
    # The models saw bucket 9 as it was at the close: its actual is the first sample alone.
    with clean_db.connect() as conn:
        actual = conn.execute(
            text(
                "SELECT DISTINCT e.actual_bps FROM forecast_error e JOIN link l ON l.id = e.link_id"
                " WHERE l.name = 'n0>m0' AND e.ts = :t"
            ),
            {"t": at(9)},
        ).scalar_one()
    assert actual == loads(9)["n0>m0"]
