"""A bucket the engine cannot process, time after time, stops every forecast unless the
engine gives up on it: after ``give_up_after`` failures in a row it is processed as if
no link had reported in it. A database that is down is no reason to give up."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError as SAOperationalError

from db import live
from engine import loop
from tests.engine.test_loop import Clock, at, engine, push

STEPS = 30
BAD = 20  # the bucket whose processing raises


def _two_links(step: int) -> dict[str, float]:
    return {"a>b": 1e9 + 1e6 * step, "b>a": 2e9 - 1e6 * step}


@pytest.fixture
def pushed(client, tokens):
    push(client, tokens["write"], range(STEPS), source=_two_links)
    return client


def _failing_at(bucket, exc: Exception):  # noqa: ANN202
    real = live.bucket_means

    def means(conn, start, end):  # noqa: ANN001, ANN202
        if start == bucket:
            raise exc
        return real(conn, start, end)

    return means


def _issues(db, issued_at) -> int:  # noqa: ANN001
    with db.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM forecast WHERE issued_at = :t AND model = 'hybrid'"),
            {"t": issued_at},
        ).scalar_one()


def test_a_bucket_that_always_fails_is_given_up_and_the_forecasts_go_on(
    pushed, settings, clean_db, monkeypatch
) -> None:
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), ValueError("bad row")))
    eng = engine(settings.database_url, Clock(STEPS), give_up_after=3)
    assert eng.try_lead()
    for _ in range(3):  # each tick stops at the bad bucket, stores nothing of it
        with pytest.raises(ValueError, match="bad row"):
            eng.tick()
        assert _issues(clean_db, at(BAD + 1)) == 0
    report = eng.tick()  # the fourth attempt gives up on it
    eng.release()
    assert report.given_up == 1
    assert report.last_bucket == at(STEPS - 1)
    # the given-up bucket issued its forecasts (from the models, nothing learned from
    # it), and every bucket after it was processed with its loads
    assert _issues(clean_db, at(BAD + 1)) == 2
    assert all(_issues(clean_db, at(k + 1)) == 2 for k in range(BAD + 1, STEPS))
    with clean_db.connect() as conn:  # its samples are kept
        kept = conn.execute(
            text("SELECT count(*) FROM sample WHERE ts = :t"), {"t": at(BAD)}
        ).scalar_one()
    assert kept == 2


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        SAOperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
    ],
    ids=["connection", "deadlock", "wrapped"],
)
def test_a_database_failure_is_never_a_reason_to_give_up(
    pushed, settings, clean_db, monkeypatch, exc
) -> None:
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), exc))
    eng = engine(settings.database_url, Clock(STEPS), give_up_after=2)
    assert eng.try_lead()
    for _ in range(4):  # past give_up_after: still retried from the same bucket
        with pytest.raises(type(exc)):
            eng.tick()
    monkeypatch.undo()  # the database is back: the bucket goes through with its loads
    report = eng.tick()
    eng.release()
    assert report.given_up == 0 and report.last_bucket == at(STEPS - 1)
    assert _issues(clean_db, at(BAD + 1)) == 2


def test_failures_of_another_bucket_start_the_count_again(pushed, settings, monkeypatch) -> None:
    eng = engine(settings.database_url, Clock(STEPS), give_up_after=2)
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD), ValueError("one")))
    assert eng.try_lead()
    with pytest.raises(ValueError):
        eng.tick()
    monkeypatch.setattr(loop.live, "bucket_means", _failing_at(at(BAD - 5), ValueError("two")))
    with pytest.raises(ValueError):  # an earlier bucket now fails: its first failure
        eng.tick()
    monkeypatch.undo()
    report = eng.tick()
    eng.release()
    assert report.given_up == 0
