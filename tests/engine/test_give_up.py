"""A bucket the engine cannot process, time after time, stops every forecast unless the
engine gives up on it: once its processing has failed at every attempt for
``give_up_after`` grid steps, it is processed as if no link had reported in it. A
database that is down, read-only or out of connections is no reason to give up, nor is
a failure counted under an earlier lead."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from db import live
from engine import loop
from tests.engine.test_loop import STEP, Clock, at, engine, push

STEPS = 30
BAD = 20  # the bucket whose processing raises


def _two_links(step: int) -> dict[str, float]:
    return {"a>b": 1e9 + 1e6 * step, "b>a": 2e9 - 1e6 * step}


@pytest.fixture
def pushed(client, tokens):
    push(client, tokens["write"], range(STEPS), source=_two_links)
    return client


@pytest.fixture
def engines():
    """Makes engines and releases them all at the end, so that a failing test leaves no
    leader's lock behind for the next."""
    made = []

    def make(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        made.append(engine(*args, **kwargs))
        return made[-1]

    yield make
    for eng in made:
        eng.release()


def _failing_at(buckets, exc: BaseException):  # noqa: ANN001, ANN202
    """``live.bucket_means`` raising ``exc`` for a bucket in ``buckets`` (one bucket, or
    a set the test may change later)."""
    real = live.bucket_means
    bad = buckets if isinstance(buckets, set) else {buckets}

    def means(conn, start, end):  # noqa: ANN001, ANN202
        if start in bad:
            raise exc
        return real(conn, start, end)

    return means


def _issues(db, issued_at) -> int:  # noqa: ANN001
    with db.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM forecast WHERE issued_at = :t AND model = 'hybrid'"),
            {"t": issued_at},
        ).scalar_one()


def test_a_bucket_failing_three_times_a_step_apart_is_given_up_and_the_forecasts_go_on(
    pushed, settings, clean_db, monkeypatch, engines
) -> None:
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), ValueError("bad row")))
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=3)
    assert eng.try_lead()
    for _ in range(3):  # each attempt stops at the bad bucket and stores nothing of it
        with pytest.raises(ValueError, match="bad row"):
            eng.tick()
        assert _issues(clean_db, at(BAD + 1)) == 0
        # within the step after a failure a tick (a poll) makes no attempt at all
        waited = eng.tick()
        assert waited.buckets == 0 and waited.given_up == 0
        clock.now += timedelta(seconds=STEP)
    report = eng.tick()  # the fourth attempt, three steps on: given up
    eng.release()
    assert report.given_up == 1
    assert report.last_bucket == at(STEPS + 2)
    # the given-up bucket issued its forecasts (from the models, nothing learned from
    # it), and every bucket after it was processed with its loads
    assert _issues(clean_db, at(BAD + 1)) == 2
    assert all(_issues(clean_db, at(k + 1)) == 2 for k in range(BAD + 1, STEPS))
    with clean_db.connect() as conn:
        kept = conn.execute(  # its samples are kept
            text("SELECT count(*) FROM sample WHERE ts = :t"), {"t": at(BAD)}
        ).scalar_one()
        checkpoints = conn.execute(  # a checkpoint past it: a restart does not replay it
            text("SELECT count(*) FROM model_checkpoint WHERE last_bucket > :t"),
            {"t": at(BAD)},
        ).scalar_one()
    assert kept == 2 and checkpoints >= 1


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        SAOperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
        SATimeoutError("QueuePool limit of size 2 overflow 10 reached"),
        MemoryError(),
    ],
    ids=["connection", "deadlock", "read-only", "wrapped", "pool", "memory"],
)
def test_a_database_or_process_failure_is_never_a_reason_to_give_up(
    pushed, settings, clean_db, monkeypatch, exc, engines
) -> None:
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), exc))
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=2)
    assert eng.try_lead()
    for _ in range(4):  # past give_up_after, in attempts and in steps: still retried
        with pytest.raises(type(exc)):
            eng.tick()
        clock.now += timedelta(seconds=STEP)
    monkeypatch.undo()  # it has passed: the bucket goes through with its loads
    report = eng.tick()
    eng.release()
    assert report.given_up == 0 and report.last_bucket == at(STEPS + 3)
    assert _issues(clean_db, at(BAD + 1)) == 2


def test_failures_of_another_bucket_start_the_count_again(
    pushed, settings, monkeypatch, engines
) -> None:
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=2)
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), ValueError("one")))
    assert eng.try_lead()
    with pytest.raises(ValueError):
        eng.tick()
    clock.now += timedelta(seconds=3 * STEP)
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD - 5), ValueError("two")))
    with pytest.raises(ValueError):  # an earlier bucket now fails: its first failure
        eng.tick()
    monkeypatch.undo()
    clock.now += timedelta(seconds=STEP)
    report = eng.tick()
    eng.release()
    assert report.given_up == 0 and report.last_bucket == at(STEPS + 3)


def test_failures_counted_under_an_earlier_lead_are_forgotten(
    pushed, settings, monkeypatch, engines
) -> None:
    # another engine may have processed the bucket while this one was not leading:
    # a replay of it must not be given up on what this one saw before
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=2)
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), ValueError("once")))
    assert eng.try_lead()
    for _ in range(2):
        with pytest.raises(ValueError):
            eng.tick()
        clock.now += timedelta(seconds=STEP)
    eng.release()
    assert eng.try_lead()
    with pytest.raises(ValueError):  # counted anew: one failure, not given up
        eng.tick()
    eng.release()


def test_a_restore_that_fails_halfway_is_started_over(
    pushed, settings, monkeypatch, engines
) -> None:
    clock = Clock(STEPS)
    first = engines(settings.database_url, clock)
    assert first.try_lead()
    first.tick()
    first.release()  # a checkpoint
    eng = engines(settings.database_url, clock)
    monkeypatch.setattr(
        loop.live, "reporting_links", lambda *a: (_ for _ in ()).throw(ValueError("mid-restore"))
    )
    assert eng.try_lead()
    with pytest.raises(ValueError, match="mid-restore"):
        eng.tick()
    assert eng._suite is None  # not left half restored: the next tick restores again
    monkeypatch.undo()
    clock.now += timedelta(seconds=STEP)
    report = eng.tick()
    eng.release()
    assert report.buckets == 1 and report.last_bucket == at(STEPS)


def test_a_bucket_given_up_is_empty_again_in_a_replay_and_counted_once(
    pushed, settings, clean_db, monkeypatch, engines
) -> None:
    # two bad buckets between checkpoints: the second one's failure restores the models
    # and replays the first, which must go through as empty again, not fail again
    failing = {at(BAD), at(BAD + 2)}
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(failing, ValueError("bad row")))
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=2, checkpoint_every=1000)
    assert eng.try_lead()
    given_up = 0
    for _ in range(8):
        try:
            given_up += eng.tick().given_up
        except ValueError:
            pass
        clock.now += timedelta(seconds=STEP)
    report = eng.tick()
    eng.release()
    # each bad bucket once, though the tick that gave the first up raised at the second
    # (its report lost): take_given_up, which the service asks after every tick, has both
    assert given_up + report.given_up == 1 and eng.take_given_up() == 2
    assert report.last_bucket == at(STEPS + 7)
    assert _issues(clean_db, at(BAD + 1)) == 2 and _issues(clean_db, at(BAD + 3)) == 2


def test_a_bucket_given_up_stays_given_up_when_the_lead_is_lost_and_regained(
    pushed, settings, monkeypatch, engines
) -> None:
    # the bucket after the given-up one fails too, so no checkpoint passes the first
    # before the lead is lost (a PostgreSQL restart); the restore after the lead is
    # regained replays it, and it must go through empty again, not fail and count again
    failing = {at(STEPS - 1), at(STEPS)}
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(failing, ValueError("bad row")))
    clock = Clock(STEPS)
    eng = engines(settings.database_url, clock, give_up_after=2, checkpoint_every=1000)
    assert eng.try_lead()
    for _ in range(3):  # two failures of the first, then given up, then the second fails
        with pytest.raises(ValueError):
            eng.tick()
        clock.now += timedelta(seconds=STEP)
    assert eng.take_given_up() == 1
    failing.discard(at(STEPS))  # only the given-up bucket still fails
    eng._lock_conn.close()  # the leader's connection is lost
    assert not eng.is_leader and eng.try_lead()
    report = eng.tick()  # restores (no checkpoint: from the start), replays it empty
    assert report.given_up == 0 and eng.take_given_up() == 0
    assert report.last_bucket == at(STEPS + 2)
