"""The live engine's settings: the grid, the horizon, the alert policy's thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from engine.notify import NotifyConfig
from forecaster.suite import ModelSuite


@dataclass
class EngineConfig:
    step_seconds: int = 60
    horizon: int = 12
    late_seconds: float | None = None  # default: a quarter of a step
    # Early close: a bucket that has ended closes as soon as every link that reported in
    # the bucket before it has reported in it, not only at the late allowance (the
    # allowance still bounds the wait for a link that stopped reporting). The service
    # checks for that every poll_seconds while a bucket waits (engine/run.py).
    early_close: bool = True
    poll_seconds: float = 0.1
    season_steps: int | None = None  # default: one day of steps
    retrain_window: int = 480
    checkpoint_every: int = 10  # ticks
    max_catchup: int = 1440  # buckets replayed at most after a long stop
    # A bucket whose processing raised this many times in a row, a step apart, for a
    # reason that is not the database's (engine.loop._transient: a connection lost, a
    # read-only server, a deadlock do not count) is then processed as if no link had
    # reported in it, so that one bad bucket cannot stop every forecast (engine/loop.py).
    give_up_after: int = 3
    warmup: int = 1440  # first start: learn from up to this many past buckets
    capacity_ratio: float = 0.9  # capacity alert when an upper bound crosses this
    sustain_steps: int = 3  # a pending alert fires once its condition held this many steps
    clear_steps: int = 5  # an alert resolves once its condition stayed clear this many steps
    capacity_clear_margin: float = 0.05  # a capacity alert clears this far below its level
    line_rate_margin: float = 0.05  # a sample above capacity x (1 + this) is implausible
    excursion_factor: float = 8.0  # robust spreads off the recent median: an excursion
    # Alerting policy on top of the detectors: a drift smaller than this relative change
    # (level or error) is not worth waking anyone; a re-route needs this many such links.
    min_drift_magnitude: float = 0.25
    min_reroute_links: int = 2
    group_steps: int = 10  # a drift starting this close to a failure is part of it
    interval_level: float = 0.9
    # Between buckets, look for failures and repairs posted since at most this often
    # (seconds): one query; a change is applied and the forecasts re-issued at once.
    failure_check_seconds: float = 1.0
    # Read cable cuts off each bucket's loads and store them as failure events
    # (engine/failures.py, CutReader); off: only the failures an operator posts.
    read_cuts: bool = True
    seed: int = 0
    # Threads torch may use in the engine's process (torch.set_num_threads, set when a
    # LiveEngine is made). One: the engine shares its machine with the API workers and
    # PostgreSQL, and torch's default (one thread per core) spins against them. Measured
    # with 4 links, 250 steps at load 5.5 on 2 cores: 1.8 s CPU and 4.5 s wall on one
    # thread, 46 s CPU and 88 s wall on two; the per-tick budget (issue 9: 100,000 links
    # under 1 s) is set on one thread.
    torch_threads: int = 1
    # Where notifications go (engine/notify.py); none by default.
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    @property
    def late(self) -> timedelta:
        late = self.step_seconds / 4 if self.late_seconds is None else self.late_seconds
        return timedelta(seconds=late)

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.step_seconds)

    def make_suite(self, n_links: int) -> ModelSuite:
        season = self.season_steps or max(2, 86_400 // self.step_seconds)
        return ModelSuite(
            n_links,
            horizon=self.horizon,
            level=self.interval_level,
            seed=self.seed,
            season_steps=season,
            retrain_every=None,  # the scheduler's retrain job re-fits it
            retrain_window=self.retrain_window,
        )
