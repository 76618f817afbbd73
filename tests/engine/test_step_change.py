"""A restart with another LINKCAST_STEP_SECONDS (the demo's grid, then the default one)
starts cleanly on the new grid and says so, instead of reusing the old grid's state:
its forecasts used to swallow the new grid's as duplicates."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import text

from db import live
from engine import EngineConfig, LiveEngine
from tests.engine.test_loop import HORIZON, N_LINKS, PERIOD, Clock, at, push

OLD, NEW = 60, 120  # every 120 s bucket ends where a 60 s one does: the collisions
FIRST_RUN = 60  # 60 s buckets the first engine processes
LAST = 100  # steps (of 60 s) pushed


def engine(url: str, clock: Clock, step: int) -> LiveEngine:
    season = PERIOD * OLD // step
    cfg = EngineConfig(step_seconds=step, season_steps=season, horizon=HORIZON)
    return LiveEngine(url, cfg, clock=clock)


def stored(clean_db, sql: str) -> list[tuple]:
    with clean_db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


@pytest.mark.parametrize("stop", ["clean", "killed before a checkpoint"])
def test_a_new_step_starts_cleanly_and_says_so(client, tokens, settings, clean_db, caplog, stop):
    push(client, tokens["write"], range(LAST))
    clock = Clock(FIRST_RUN)
    first = engine(settings.database_url, clock, OLD)
    assert first.try_lead()
    assert first.tick().buckets == FIRST_RUN
    if stop == "clean":
        first.release()  # checkpoints on the way out
    else:  # the process dies: nothing saved, the forecasts say which grid they are on
        assert first._lock_conn is not None
        first._lock_conn.close()
        first._db.dispose()
    assert stored(clean_db, "SELECT DISTINCT step_seconds FROM forecast") == [(OLD,)]

    clock.now = at(LAST) + timedelta(seconds=20)
    caplog.set_level(logging.INFO, logger="engine.loop")
    second = engine(settings.database_url, clock, NEW)
    assert second.try_lead()
    report = second.tick()
    second.release()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"ran on a {OLD} s grid, now {NEW} s" in warnings[0]
    assert f"set LINKCAST_STEP_SECONDS={OLD}" in warnings[0]  # the way back

    # Every bucket of the new grid has its forecasts, on the new grid: none was taken
    # for a duplicate of the old grid's forecast of the same time.
    # Closed: the newest bucket that has ended, at its late allowance or, as here, early,
    # every link that reported in the bucket before having reported in it (the pushed
    # steps reach into it).
    closed = live.grid_floor(clock.now, NEW) - timedelta(seconds=NEW)
    assert closed > live.grid_floor(clock.now - second.config.late, NEW) - timedelta(seconds=NEW)
    buckets = (closed - at(0)) // timedelta(seconds=NEW) + 1
    assert report.buckets == buckets
    issues = stored(
        clean_db,
        "SELECT step_seconds, count(DISTINCT issued_at), count(*) FROM forecast GROUP BY 1",
    )
    assert issues == [(NEW, buckets, buckets * N_LINKS * 5)]
    # The buckets the old grid had judged (ending by its last forecast, at(FIRST_RUN))
    # went into the models only; the later ones were judged anew.
    assert report.replayed == FIRST_RUN * OLD // NEW
    # Errors scored on the old grid are gone: every one left is of a 120 s bucket.
    error_ts = stored(
        clean_db, "SELECT DISTINCT extract(epoch FROM ts)::bigint FROM forecast_error"
    )
    assert error_ts and all(ts % NEW == 0 for (ts,) in error_ts)
    assert stored(clean_db, "SELECT DISTINCT step_seconds FROM model_checkpoint") == [(NEW,)]
    notes = stored(clean_db, "SELECT note FROM model_version WHERE kind = 'start'")
    assert (f"new grid: {NEW} s (was {OLD} s)",) in notes

    # The next start on the same step restores its checkpoint, without a warning.
    caplog.clear()
    clock.now = at(LAST + 4) + timedelta(seconds=20)
    third = engine(settings.database_url, clock, NEW)
    assert third.try_lead()
    assert third.tick().buckets == 1  # the one after the early close, at its allowance
    third.release()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("restored checkpoint" in r.getMessage() for r in caplog.records)
