"""The engine's own metrics, recorded after each tick by :func:`record_tick`.

They reach ``GET /metrics`` through the files of prometheus-client's multiprocess mode
(linkcast/metrics.py): the engine is a thread of ``linkcast up``, or a process of its
own (``linkcast engine``) writing under the same ``DATA_DIR/metrics`` on the same host.

- ``linkcast_engine_tick_duration_seconds``: histogram of the ticks that processed at
  least one bucket (restore, bucket means, models, forecasts, errors, alerts and their
  commit); a tick catching up over many buckets is one long observation.
- ``linkcast_engine_buckets_processed_total``: grid buckets processed (replays included).
- ``linkcast_engine_late_samples_total``: samples stored for a bucket after the engine
  had processed it, so never learned from: counted at each tick by comparing a closed
  bucket's stored samples with those it saw (the last 5 buckets of this process's
  life; a sample that replaces one already stored is not late, it adds no row).
- ``linkcast_engine_excursions_total``: link buckets the engine judged one-step
  excursions (their samples marked ``excursion``, engine/quality.py).
- ``linkcast_engine_last_tick_timestamp_seconds``: end of the last tick that processed
  a bucket, Unix seconds (the largest over engine processes).
- ``linkcast_engine_tick_failures_total``: ticks that raised, their bid for the lead
  included (the exception is logged; nothing of the tick is stored, and the next tick
  retries from the same bucket). A tick that fails every time on a bucket it cannot
  store shows here while the API, its database up, still reads as ready.
- ``linkcast_engine_buckets_given_up_total``: buckets whose processing raised
  ``give_up_after`` times in a row, a step apart, for a reason that is not the
  database's, and that were then processed as if no link had reported in them, so that
  the forecasts go on (engine/loop.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from engine.loop import TickReport

TICK_SECONDS = Histogram(
    "linkcast_engine_tick_duration_seconds",
    "Duration of the engine's ticks that processed at least one grid bucket, seconds.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
BUCKETS = Counter(
    "linkcast_engine_buckets_processed", "Grid buckets the engine processed (replays included)."
)
LATE_SAMPLES = Counter(
    "linkcast_engine_late_samples",
    "Samples stored for a bucket after the engine processed it (never learned from).",
)
EXCURSIONS = Counter(
    "linkcast_engine_excursions",
    "Link buckets judged one-step excursions (their samples marked excursion).",
)
LAST_TICK = Gauge(
    "linkcast_engine_last_tick_timestamp_seconds",
    "End of the engine's last tick that processed a bucket, Unix seconds.",
    multiprocess_mode="max",
)


GIVEN_UP = Counter(
    "linkcast_engine_buckets_given_up",
    "Grid buckets processed as if no link had reported, after failing give_up_after times.",
)
TICK_FAILURES = Counter(
    "linkcast_engine_tick_failures",
    "Engine ticks that raised (logged; the next tick retries from the same bucket).",
)


@contextmanager
def failures_counted() -> Iterator[None]:
    """Count an engine job (a tick, with its bid for the lead) that raises in
    ``linkcast_engine_tick_failures_total``, and raise again."""
    try:
        yield
    except Exception:
        TICK_FAILURES.inc()
        raise


def record_given_up(n: int) -> None:
    """Count buckets the engine gave up on (:meth:`engine.loop.LiveEngine.take_given_up`,
    asked after every tick, including one that raised after giving a bucket up)."""
    GIVEN_UP.inc(n)


def record_tick(report: TickReport) -> None:
    """Count one tick's work; its duration only if it processed a bucket."""
    LATE_SAMPLES.inc(report.late_samples)
    EXCURSIONS.inc(report.excursions)
    if report.buckets:
        BUCKETS.inc(report.buckets)
        TICK_SECONDS.observe(report.seconds)
        LAST_TICK.set(time.time())
