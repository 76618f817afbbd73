"""The engine as a service: lead when possible, tick on the grid (and, while leading,
every ``poll_seconds`` in between, so a complete bucket closes early), retrain on a
schedule (APScheduler), keep day partitions ahead and apply retention (db/partitions.py)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from db import partitions
from db.session import make_engine
from engine.config import EngineConfig
from engine.loop import LiveEngine
from engine.metrics import failures_counted, record_given_up, record_tick
from engine.outbox import DeliveryWorker

log = logging.getLogger(__name__)


def run_engine(
    database_url: str,
    config: EngineConfig,
    stop: threading.Event,
    *,
    retrain_seconds: float,
    retention_forecast_days: float = 2.0,
    retention_sample_days: float = 90.0,
    standby_poll_seconds: float = 5.0,
) -> None:
    """Run the engine until ``stop`` is set: lead when possible, tick, retrain, checkpoint."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    engine = LiveEngine(database_url, config)
    # Notifications leave from a thread of their own: a receiver that is down never
    # delays a tick, which only writes outbox rows. Every process delivers outbox rows
    # (each row is claimed by one); only the leader re-sends firing alerts, so a
    # follower's stale "firing" never lands after the leader's "resolved".
    worker = (
        DeliveryWorker(database_url, config.notify, is_leader=lambda: engine.holds_lock)
        if config.notify.receivers()
        else None
    )

    def tick() -> None:
        with failures_counted():  # GET /metrics: a tick (or its bid to lead) that raised
            if engine.try_lead():
                run_tick()

    def poll() -> None:
        # Between the grid's ticks only a leader looks for early closes (engine/loop.py):
        # a follower opens no connection here; it tries to lead on the grid's ticks.
        if engine.holds_lock:
            with failures_counted():
                run_tick()

    def run_tick() -> None:
        try:
            report = engine.tick()
        finally:  # a bucket given up on counts even if a later one of the tick raised
            record_given_up(engine.take_given_up())
        record_tick(report)  # GET /metrics: tick duration, late samples, excursions
        if report.buckets:
            log.info(
                "tick: %d bucket(s) to %s, %d forecasts, %d errors, %d alerts,"
                " %d notifications, %.2f s",
                report.buckets,
                report.last_bucket,
                report.forecasts,
                report.errors,
                report.alerts_opened,
                report.notifications,
                report.seconds,
            )

    def retrain() -> None:
        if engine.is_leader:
            engine.retrain()

    def retention() -> None:
        if engine.is_leader:
            engine.apply_retention(
                forecast_days=retention_forecast_days, sample_days=retention_sample_days
            )

    # Day partitions (db/partitions.py) up to AHEAD_DAYS ahead, at start and hourly, in
    # every engine process (idempotent; when nothing is due it reads the catalogue
    # only). Retention extends them back to its cutoff. The catch-all partitions store
    # a row whatever happens here.
    maintenance_db = make_engine(database_url, pool_size=1)

    def partition_days() -> None:
        now = datetime.now(UTC)
        for table in partitions.TABLES:
            partitions.ensure(
                maintenance_db, table, now, now + partitions.AHEAD_DAYS * partitions.DAY
            )

    # One worker: ticks, retrains and checkpoints never run at the same time.
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
    step = config.step_seconds
    now = time.time()
    first = datetime.fromtimestamp(now - now % step + step, UTC) + config.late
    # Ticks on the grid: each runs `late` after a bucket ends (APScheduler's interval
    # trigger counts from start_date); one more right away catches up after a restart.
    scheduler.add_job(
        tick,
        "interval",
        seconds=step,
        start_date=first,
        id="tick",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=step,
    )
    scheduler.add_job(tick, "date", run_date=datetime.now(UTC), id="catch-up")
    if config.early_close and config.poll_seconds > 0:
        # A tick with nothing closed costs one cheap query at most (none once the bucket
        # that ended is done); skipped polls are not made up (coalesce, short grace).
        scheduler.add_job(
            poll,
            "interval",
            seconds=config.poll_seconds,
            id="poll",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(config.poll_seconds)),
        )
    # Ticks come first on the one worker; a re-fit or a clean-up that has to wait for
    # one still runs (a generous misfire grace), it is not skipped.
    scheduler.add_job(
        retrain,
        "interval",
        seconds=retrain_seconds,
        id="retrain",
        coalesce=True,
        misfire_grace_time=int(retrain_seconds),
    )
    scheduler.add_job(
        retention, "interval", hours=1, id="retention", coalesce=True, misfire_grace_time=3600
    )
    scheduler.add_job(
        partition_days,
        "interval",
        hours=1,
        next_run_time=datetime.now(UTC),
        id="partitions",
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.start()
    if worker is not None:
        worker.start()
    try:
        while not stop.wait(standby_poll_seconds):
            pass
    finally:
        scheduler.shutdown(wait=True)
        engine.release()
        maintenance_db.dispose()
        if worker is not None:
            worker.stop()
