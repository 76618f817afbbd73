"""The live engine: runs the forecasting suite against the database, one grid step a tick.

A bucket ``[T, T + step)`` is closed ``late_seconds`` after it ends, or earlier, as soon
as it has ended and every link that reported in the bucket before it has reported in
it (*early close*: most of the push-to-forecast latency used to be that fixed wait; a
link that stopped reporting holds one bucket until the allowance, not more, since it
is not in that bucket for the next one). Its samples are averaged per link (links with
none are *missing*, and the models handle the gap); samples that arrive after their
bucket was closed are stored but not seen by the models (the engine counts them). For
each closed bucket the suite scores the earlier forecasts, adapts, and issues new ones;
forecasts, errors and alerts go to the database in one transaction with the bucket.

Exactly one engine leads: it holds a PostgreSQL advisory lock on a connection of its
own. A follower waits and takes over when the leader's connection goes away. On start
the leader restores the newest checkpoint and replays the buckets after it from the
stored samples; forecasts and errors already stored are kept (ON CONFLICT DO NOTHING),
so a restart neither loses nor duplicates any.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import psycopg
import torch
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, PendingRollbackError
from sqlalchemy.orm import Session, sessionmaker

from db import live
from db.models import ModelName
from db.session import is_connection_problem, make_engine, make_sessionmaker
from engine import outbox
from engine.config import EngineConfig
from engine.failures import CutReader, KnownFailures
from engine.policy import AlertPolicy
from engine.quality import ExcursionFilter
from forecaster.base import IncompatibleState
from forecaster.suite import ModelSuite, StepOutput

log = logging.getLogger(__name__)


class _Failing(NamedTuple):
    """A bucket whose processing raised ``times`` in a row, the last at ``at`` (the
    engine's clock), and why (:func:`_why`)."""

    bucket: datetime
    times: int
    at: datetime
    why: str


@dataclass
class TickReport:
    buckets: int = 0
    forecasts: int = 0
    errors: int = 0
    alerts_opened: int = 0
    notifications: int = 0  # outbox rows written
    replayed: int = 0  # buckets processed again after a crash: models only, alerts kept
    late_samples: int = 0  # arrived for buckets already processed (see _count_late)
    excursions: int = 0  # link buckets judged excursions (their samples marked)
    reroutes: int = 0  # known-failure shifts estimated or cleared (engine/failures.py)
    rescaled: int = 0  # buckets whose forecasts took the failure's shift scaled to their loads
    reissued: int = 0  # forecasts stored again with a failure's shift between buckets
    given_up: int = 0  # buckets processed as if empty after failing give_up_after times
    seconds: float = 0.0
    last_bucket: datetime | None = None
    details: list[str] = field(default_factory=list)


class LiveEngine:
    """Drives a :class:`ModelSuite` from the database. Not thread-safe: one caller."""

    def __init__(
        self,
        database_url: str,
        config: EngineConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.database_url = database_url
        self.config = config or EngineConfig()
        torch.set_num_threads(self.config.torch_threads)  # process-wide; see EngineConfig
        self.clock = clock or (lambda: datetime.now(UTC))
        self._db: Engine = make_engine(database_url, pool_size=2)
        self._sessions: sessionmaker[Session] = make_sessionmaker(self._db)
        self._lock_conn: psycopg.Connection | None = None
        self._suite: ModelSuite | None = None
        self._link_ids: list[int] = []
        self._index: dict[int, int] = {}
        # Links that have reported a sample: only they get forecasts (a link registered
        # and never heard from has nothing to forecast, not a load of 0 bit/s).
        self._reported: set[int] = set()
        self._last_bucket: datetime | None = None
        # After a change of grid step: buckets ending by then were judged on the old grid
        # (their alerts raised and told): replayed into the models only (see _restore).
        self._replay_until: datetime | None = None
        self._ticks_since_checkpoint = 0
        self._seen: dict[datetime, int] = {}  # samples per recently closed bucket
        # The last H issues exactly as stored (float32), to score errors against: issued_at
        # -> model -> (n_links, H). Rebuilt from the forecast table after a restore.
        self._issued: dict[datetime, dict[str, np.ndarray]] = {}
        self.late_samples_total = 0
        self._policy = AlertPolicy(self.config)
        # Holds back one-bucket excursions (engine/quality.py); rebuilt from samples on restore.
        self._quality = ExcursionFilter(self.config.excursion_factor)
        # Operators' failures and repairs: the suite's counterfactual shift (engine/failures.py).
        self._failures = KnownFailures()
        # Cable cuts read off the loads, stored as failure events (engine/failures.py).
        self._cuts = CutReader()
        self._failures_checked = 0.0  # perf_counter of the last look between buckets
        # The newest bucket's loads (suite order, NaN: not measured): what a shift set
        # between buckets is estimated from; re-read from the samples after a restore.
        self._last_y: tuple[datetime, np.ndarray] | None = None
        # The bucket whose processing last raised (not for the database's reasons); kept
        # across restores, cleared with a change of leader (see _failed).
        self._failing: _Failing | None = None
        # Buckets given up on and not yet behind a checkpoint: a replay after a restore
        # (a failed bucket, a lost and regained lead) processes them as empty again.
        self._given_up: set[datetime] = set()
        self._given_up_untold = 0  # given up since take_given_up last asked

    # --- leadership -----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        if self._lock_conn is None:
            return False
        try:
            self._lock_conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            log.error("lost the leader's database connection: stepping down")
            self._lock_conn = None
            self._suite = None  # a new leader may have moved on: restore on return
            self._failing = None  # what it counted was its own (a replay's give-ups stay)
            return False

    @property
    def holds_lock(self) -> bool:
        """Whether this engine believes it leads, without touching the database or its
        state: safe to ask from another thread (the delivery worker's re-sends). The
        tick's own ``is_leader`` check notices a lost lock on its next run."""
        return self._lock_conn is not None

    def try_lead(self) -> bool:
        """Take the leader's advisory lock if free; True if this engine leads."""
        if self.is_leader:
            return True
        url = self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        conn = psycopg.connect(url, autocommit=True, application_name="linkcast-engine")
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (live.ENGINE_LOCK_KEY,)).fetchone()
        if got and got[0]:
            self._lock_conn = conn
            # failures counted under an earlier lead: another leader may have processed
            # those buckets since, and a replay of them must not be given up on that
            # count; buckets it gave up on stay so (empty again if it replays them, as
            # it processed them; a leader that went past them checkpointed past them)
            self._failing = None
            log.info("this engine leads")
            return True
        conn.close()
        return False

    def release(self) -> None:
        """Checkpoint and give up leadership (a clean stop)."""
        if self.is_leader and self._suite is not None:
            self.checkpoint()
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None
        self._failing, self._given_up = None, set()  # a clean stop
        self._db.dispose()

    # --- state ----------------------------------------------------------------------------

    def _restore(self) -> None:
        cfg = self.config
        with self._sessions() as session:
            change = self._discard_other_grid(session)
            cp = live.latest_checkpoint(session, cfg.step_seconds)
            suite = None
            if cp is not None:
                try:
                    suite = ModelSuite.from_bytes(cp.state)
                except IncompatibleState as exc:
                    # an upgrade changed the models: start them anew (the samples are kept)
                    log.warning("checkpoint of %s not restored: %s", cp.last_bucket, exc)
            if cp is not None and suite is not None:
                self._suite = suite
                self._link_ids = list(cp.link_ids)
                self._last_bucket = cp.last_bucket
                log.info("restored checkpoint of %s (%d links)", cp.last_bucket, len(cp.link_ids))
            else:
                self._suite = cfg.make_suite(0)
                self._link_ids, self._last_bucket = [], None
                note = "new engine" if cp is None else "new models (older checkpoint format)"
                if change is not None:
                    note = f"new grid: {cfg.step_seconds} s (was {_steps(change)})"
                for model in ModelName.ALL:
                    live.record_version(session, model=model, kind="start", note=note)
                session.commit()
        self._index = {lid: i for i, lid in enumerate(self._link_ids)}
        self._issued = {}
        self._reported = set()
        self._quality = ExcursionFilter(cfg.excursion_factor)
        self._failures = KnownFailures()
        self._cuts = CutReader()
        self._last_y = None
        if self._last_bucket is not None:
            self._load_issued(self._last_bucket + cfg.step)
            with self._db.connect() as conn:
                self._reported = live.reporting_links(conn, self._last_bucket + cfg.step)
                span = cfg.step * (4 * self._quality.window)
                end = self._last_bucket + cfg.step
                history = live.bucket_history(conn, end - span, end, cfg.step_seconds)
                rows = live.all_links(conn)
                capacity = {r.id: r.capacity_bps for r in rows}
                self._quality.rebuild(history, capacity)
                # the checkpoint holds the shift of the failures open then, last scaled to
                # the loads of its bucket (the reference of the next bucket's scaling)
                names = {r.id: r.name for r in rows}
                shift, down = self._suite.reroute_as_set or (None, None)
                in_suite = [names.get(i, "") for i in self._link_ids]
                last = self._loads(conn, self._last_bucket)
                self._failures.restore(in_suite, shift, down, last)
                if cfg.read_cuts:
                    earlier = self._loads(conn, self._last_bucket - cfg.step)
                    self._cuts.restore(conn, self._failures, in_suite, last, earlier, end, cfg.step)

    def _discard_other_grid(self, session: Session) -> live.GridChange | None:
        """A restart with another LINKCAST_STEP_SECONDS starts cleanly on the new grid.

        Checkpoints, forecasts and errors are tied to the grid: a model state is a series
        of buckets of one width, a forecast's horizon counts steps, and the new grid's
        forecast of a time the old one also issued at would be dropped as a duplicate
        (and its bucket taken for one already processed). So the old grid's checkpoints,
        forecasts and forecast errors are deleted, with a WARNING naming both steps and
        the way back; the models re-learn from the stored samples (the warm-up replays
        up to ``warmup`` buckets), the buckets the old grid had already judged are
        replayed into the models only (their alerts were raised and told then), and
        samples, links, events, silences and alerts stay.

        Not a refusal to start: at 3 a.m. the operator who changed the step (the demo's
        3 s, then the default 60 s; a deliberate new grid) gets forecasts and alerts
        again within the warm-up, not an engine that stays down, with ``linkcast up``'s
        API up and nothing forecast, until someone reads the log and finds the way out.
        The warning says what was dropped; nothing measured is lost.
        """
        cfg = self.config
        since = self.clock() - cfg.step * (cfg.warmup + 2)  # before any bucket replayed
        change = live.grid_change(session, cfg.step_seconds, since)
        if change is None:
            return None
        gone = live.discard_grid_state(session, cfg.step_seconds)
        self._replay_until = change.until
        log.warning(
            "LINKCAST_STEP_SECONDS changed: the engine ran on a %s grid, now %d s. Starting"
            " cleanly on the new grid: %d checkpoint(s), %d forecasts and %d forecast errors"
            " of the old grid deleted; the models re-learn from the stored samples (up to"
            " %d steps back), those up to %s, judged on the old grid already, without"
            " alerting again. Samples, links, events and alerts are kept. To go back, set"
            " LINKCAST_STEP_SECONDS=%d (which starts cleanly again).",
            _steps(change),
            cfg.step_seconds,
            gone.checkpoints,
            gone.forecasts,
            gone.errors,
            cfg.warmup,
            change.until.isoformat(),
            change.steps[-1],
        )
        return change

    def _load_issued(self, newest: datetime) -> None:
        """Read back the last H issues up to ``newest`` (a restart scores against them)."""
        cfg = self.config
        oldest = newest - cfg.step * (cfg.horizon - 1)
        with self._db.connect() as conn:
            rows = live.issued_forecasts(conn, oldest, newest)
        for link_id, model, issued_at, values in rows:
            if link_id not in self._index:
                continue
            by_model = self._issued.setdefault(issued_at, {})
            if model not in by_model:
                by_model[model] = np.full((len(self._link_ids), cfg.horizon), np.nan, np.float32)
            by_model[model][self._index[link_id]] = np.asarray(values, dtype=np.float32)

    def checkpoint(self) -> None:
        if self._suite is None or self._last_bucket is None:
            return
        state = self._suite.to_bytes()
        with self._sessions() as session:
            live.save_checkpoint(
                session,
                last_bucket=self._last_bucket,
                step_seconds=self.config.step_seconds,
                link_ids=self._link_ids,
                state=state,
            )
            session.commit()
        self._ticks_since_checkpoint = 0
        log.info("checkpoint at %s: %.1f KB", self._last_bucket, len(state) / 1024)

    def retrain(self) -> dict[str, bool]:
        """Re-fit the incremental baseline on its latest window (the scheduled job)."""
        if self._suite is None:
            return {}
        t0 = time.perf_counter()
        done = self._suite.retrain()
        took = time.perf_counter() - t0
        with self._sessions() as session:
            for model, fitted in done.items():
                if fitted:
                    live.record_version(
                        session,
                        model=model,
                        kind="retrain",
                        duration_seconds=took,
                        window_steps=self.config.retrain_window,
                    )
            session.commit()
        log.info("retrained %s in %.2f s", sorted(k for k, v in done.items() if v), took)
        return done

    # --- ticks ----------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Process every bucket that has closed since the last one; leader only.

        Cheap when nothing has closed (the service calls it every ``poll_seconds`` to
        catch early closes): no bucket, no late-sample count, no checkpoint counted.
        """
        report = TickReport()
        if not self.is_leader:
            return report
        if self._failing is not None and self.clock() - self._failing.at < self.config.step:
            return report  # a bucket that failed is tried again a step later, not every poll
        t0 = time.perf_counter()
        if self._suite is None:
            try:
                self._restore()
            except BaseException:
                self._suite = None  # half restored: the next tick starts the restore over
                raise
        cfg = self.config
        now = self.clock()
        newest = live.grid_floor(now - cfg.late, cfg.step_seconds) - cfg.step  # closed
        if cfg.early_close:
            newest = self._closed_early(newest, now)
        start = self._first_bucket(newest)
        if start is None or start > newest:
            if time.perf_counter() - self._failures_checked >= cfg.failure_check_seconds:
                self._reissue_on_change(now, report)
            return report
        report.late_samples = self._count_late()
        bucket = start
        while bucket <= newest:
            again = bucket in self._given_up  # a replay: empty again, as before
            give_up = again or self._gives_up(bucket)
            try:
                self._process(bucket, report, empty=give_up)
            except BaseException as exc:
                # The models stepped in memory in a transaction that did not commit: a
                # retry would feed them the bucket twice. Drop them; the next tick
                # restores the checkpoint and replays the stored buckets since.
                self._suite = None
                self._failed(bucket, exc)
                raise
            if give_up and not again:
                assert self._failing is not None
                report.given_up += 1
                self._given_up_untold += 1  # told even if a later bucket of the tick fails
                self._given_up.add(bucket)
                log.error(
                    "bucket %s failed %d times in a row, a step apart (last: %s): processed"
                    " as if no link had reported in it; its samples are kept, not learned"
                    " from",
                    bucket,
                    self._failing.times,
                    self._failing.why,
                )
            if self._failing is not None and self._failing.bucket == bucket:
                self._failing = None
            bucket += cfg.step
        self._reissue_on_change(now, report)
        report.seconds = time.perf_counter() - t0
        report.last_bucket = self._last_bucket
        self._ticks_since_checkpoint += 1
        # Two buckets past one given up on, a checkpoint: a new process then no longer
        # replays it (which would fail and be given up again), and its restore reads the
        # loads of buckets that went through, not of that one.
        last = self._last_bucket
        passed = last is not None and any(b + 2 * cfg.step <= last for b in self._given_up)
        if self._ticks_since_checkpoint >= cfg.checkpoint_every or passed:
            self.checkpoint()
            self._given_up = {b for b in self._given_up if last is None or b > last}
        return report

    def take_given_up(self) -> int:
        """Buckets given up on since the last call (:data:`TickReport.given_up` of the
        ticks, and of ticks that raised after giving one up: their report is lost)."""
        n, self._given_up_untold = self._given_up_untold, 0
        return n

    def _gives_up(self, bucket: datetime) -> bool:
        """Whether ``bucket`` has failed ``give_up_after`` times in a row (attempts a
        step apart: :meth:`tick` waits a step after a failure): the next attempt
        processes it as if no link had reported (:meth:`_process`, ``empty``)."""
        failing = self._failing
        return (
            failing is not None
            and failing.bucket == bucket
            and failing.times >= self.config.give_up_after
        )

    def _failed(self, bucket: datetime, exc: BaseException) -> None:
        """Count a failure of ``bucket``'s processing, unless it says nothing of the
        bucket (:func:`_transient`: the database, the process; the same bucket goes
        through once that has passed)."""
        if _transient(exc):
            return
        failing = self._failing
        times = failing.times + 1 if failing is not None and failing.bucket == bucket else 1
        self._failing = _Failing(bucket, times, self.clock(), _why(exc))
        log.warning(
            "bucket %s failed (%d of %d before it is processed as if empty; next try in a"
            " step): %s",
            bucket,
            times,
            self.config.give_up_after,
            self._failing.why,
        )

    def _closed_early(self, newest: datetime, now: datetime) -> datetime:
        """The newest closed bucket, counting early closes after ``newest`` (the newest
        closed by the late allowance): each bucket after it that has ended by ``now`` and
        is complete (:func:`complete`), in order, up to the first that is not."""
        cfg = self.config
        bucket = newest + cfg.step
        if self._last_bucket is not None and bucket <= self._last_bucket:
            bucket = self._last_bucket + cfg.step  # closed already: nothing to ask
        while bucket + cfg.step <= now:
            with self._db.connect() as conn:
                if not complete(conn, bucket, cfg.step):
                    break
            newest = bucket
            bucket += cfg.step
        return newest

    def _first_bucket(self, newest: datetime) -> datetime | None:
        cfg = self.config
        if self._last_bucket is not None:
            start = self._last_bucket + cfg.step
            oldest = newest - cfg.step * (cfg.max_catchup - 1)
            if start < oldest:
                log.warning("engine was away since %s: skipping to %s", start, oldest)
                start = oldest
            return start
        with self._db.connect() as conn:
            first = live.first_sample_after(conn, newest - cfg.step * cfg.warmup)
        if first is None:
            return None
        return live.grid_floor(first, cfg.step_seconds)

    def _sync_links(self, conn, report: TickReport) -> list[live.LinkRow]:  # noqa: ANN001
        rows = live.all_links(conn)
        new = [r for r in rows if r.id not in self._index]
        if new:
            assert self._suite is not None
            self._suite.add_links(len(new))
            for r in new:
                self._index[r.id] = len(self._link_ids)
                self._link_ids.append(r.id)
            report.details.append(f"{len(new)} new links")
        return rows

    def _process(self, bucket: datetime, report: TickReport, *, empty: bool = False) -> None:
        """Step the models over ``bucket`` and store what follows, in one transaction.
        ``empty``: as if no link had reported in it (its samples are not read; a bucket
        given up on, see :meth:`tick`)."""
        cfg = self.config
        suite = self._suite
        assert suite is not None
        issued_at = bucket + cfg.step
        with self._db.begin() as conn:
            links = self._sync_links(conn, report)
            # quarantined samples left out
            means = {} if empty else live.bucket_means(conn, bucket, issued_at)
            capacity = {r.id: r.capacity_bps for r in links}
            judged = self._quality.step(bucket, means, capacity)  # one-bucket excursions held
            live.mark_excursions(conn, judged.excursions, cfg.step)
            report.excursions += len(judged.excursions)
            means = judged.accepted
            self._seen[bucket] = live.count_samples(conn, bucket, issued_at)
            y = np.full(suite.n_links, np.nan)
            for link_id, value in means.items():
                if link_id in self._index:
                    y[self._index[link_id]] = value
            if cfg.read_cuts:  # a cable cut read off the loads is stored as a failure event
                named = {r.id: r.name for r in links}
                self._cuts.read(
                    conn,
                    self._failures,
                    [named.get(i, "") for i in self._link_ids],
                    y,
                    bucket,
                    cfg.step,
                )
            # the failures in force at the bucket's end, set before the models take it
            down = self._failures.wanted(conn, issued_at)
            if frozenset(down) != self._failures.applied:
                # the forecasts issued at the bucket's start stay as stored (and scored so);
                # estimated from the bucket before, or, when a new failure began after
                # that bucket's start (a cut read off the loads is dated from the bucket
                # after the last its links carried in: its first 0 held back, or a gap),
                # from the last bucket before it: the later ones carry the re-route
                # already and lack the cut links' loads, which say what moved
                measured = self._measured_for(down, bucket - cfg.step)
                self._set_failures(conn, down, measured, report, reissue=False)
            out = suite.step(y, np.isfinite(y))
            under = all(since <= bucket for since in down.values())
            shift = self._failures.scaled(y, cfg.step.total_seconds()) if under else None
            if shift is not None:
                # measured wholly under the failure: the shift follows the traffic
                suite.set_reroute(shift, self._failures.down)
                fc, lo, up = suite.issue()
                out = replace(out, forecasts=fc, lower=lo, upper=up)
                report.rescaled += 1
            self._last_y = (bucket, y)
            self._reported.update(means)
            ids = np.asarray(self._link_ids)
            fresh = live.insert_forecasts(conn, self._forecast_rows(out, ids, issued_at))
            report.forecasts += fresh
            report.errors += live.insert_errors(conn, self._error_rows(ids, y, bucket))
            self._remember(out, issued_at)
            # A bucket whose forecasts are already stored was processed before a crash (its
            # alerts and notifications committed with them): the replay rebuilds the
            # models' state only, and leaves the alerts as they are.
            # Likewise a bucket the old grid judged, after a change of step.
            old_grid = self._replay_until is not None and issued_at <= self._replay_until
            if (fresh == 0 and self._reported) or old_grid:
                report.replayed += 1
            else:
                with Session(bind=conn) as session:
                    policy = self._policy.apply(
                        session, out, links, bucket, self._link_ids, np.isfinite(y), down
                    )
                    report.alerts_opened += policy.opened
                    # in this transaction: the alert's change and its notifications together
                    report.notifications += outbox.enqueue(session, policy.notify, cfg.notify)
                    session.flush()
        self._last_bucket = bucket
        report.buckets += 1

    def _loads(self, conn: Connection, bucket: datetime) -> np.ndarray:
        """``(n_links,)`` the bucket's mean loads in the suite's order, NaN: none."""
        y = np.full(len(self._link_ids), np.nan)
        if self._last_y is not None and self._last_y[0] == bucket:
            last = self._last_y[1]  # links added since have no load in it
            y[: len(last)] = last
            return y
        for link_id, value in live.bucket_means(conn, bucket, bucket + self.config.step).items():
            if link_id in self._index:
                y[self._index[link_id]] = value
        return y

    def _measured_for(self, down: dict[str, datetime], latest: datetime) -> datetime:
        """The bucket to estimate the shift of the failures ``down`` (name -> since) from:
        ``latest`` (the newest measured), or, when a failure new to the suite began
        before ``latest`` ended and at most a horizon of buckets earlier, the last bucket
        wholly before it (a cut read off the loads is dated from the bucket after the
        last one its links carried in). Later buckets carry the re-route already and
        lack the failed links' loads, the ones that say what moved; a failure posted
        longer after it began is estimated from ``latest``, as it stands."""
        cfg = self.config
        began = [down[n] for n in frozenset(down) - self._failures.applied]
        if not began:
            return latest
        before = live.grid_floor(min(began), cfg.step_seconds) - cfg.step
        if before >= latest or before < latest - cfg.horizon * cfg.step:
            return latest
        return before

    def _set_failures(
        self,
        conn: Connection,
        down: dict[str, datetime],
        measured: datetime,
        report: TickReport,
        *,
        reissue: bool,
    ) -> None:
        """Give the suite the shift of the failures ``down`` (name -> since; none: clear
        it), estimated from the loads of the bucket starting at ``measured``; ``reissue``:
        whether the latest forecasts are stored again with it (the suite scores them so)."""
        suite = self._suite
        assert suite is not None
        report.reroutes += 1
        if not down:
            log.info(
                "repaired: %s up again, forecasts without a re-route",
                ", ".join(sorted(self._failures.applied)),
            )
            suite.set_reroute(None, None, reissue=reissue)
            self._failures.clear()
            return
        names = {r.id: r.name for r in live.all_links(conn)}
        est, shift = self._failures.estimate(
            self._loads(conn, measured), down, measured, [names.get(i, "") for i in self._link_ids]
        )
        suite.set_reroute(shift, self._failures.down, reissue=reissue)
        log.info(
            "failure of %s: forecasts re-routed (%.3g bit/s moved, %.3g bit/s unroutable,"
            " fit error %.1f %%, node totals %s)",
            ", ".join(sorted(down)),
            float(np.clip(est.shift_bps, 0, None).sum()),
            est.unroutable_bps,
            100 * est.fit_error,
            self._failures.prior,
        )

    def _reissue_on_change(self, now: datetime, report: TickReport) -> None:
        """Between buckets: a failure or repair posted since the last bucket is applied at
        once, and the forecasts issued at that bucket's end are stored again with it."""
        self._failures_checked = time.perf_counter()
        suite, last = self._suite, self._last_bucket
        if suite is None or last is None:
            return
        issued_at = last + self.config.step
        try:
            with self._db.begin() as conn:
                down = self._failures.wanted(conn, now)
                if frozenset(down) == self._failures.applied:
                    return
                self._set_failures(conn, down, self._measured_for(down, last), report, reissue=True)
                fc, lo, up = suite.issue()
                out = StepOutput(suite.steps - 1, fc, lo, up, {})
                ids = np.asarray(self._link_ids)
                report.reissued += replace_forecasts(
                    conn, issued_at, self._forecast_rows(out, ids, issued_at)
                )
                self._remember(out, issued_at)
        except BaseException:
            self._suite = None  # the shift was set in memory only: restore and replay
            raise

    def _forecast_rows(self, out: StepOutput, ids: np.ndarray, issued_at: datetime):  # noqa: ANN202
        """COPY lines: one per reporting link and model, the H steps as float4 arrays."""
        head = f"\t{issued_at.isoformat()}\t{self.config.step_seconds}\t"
        keep = [i for i, link in enumerate(ids.tolist()) if link in self._reported]
        links = [str(i) for i in ids[keep].tolist()]
        for model in ModelName.ALL:
            arrays = [
                live.real_array_literals(a[keep])
                for a in (out.forecasts[model], out.lower[model], out.upper[model])
            ]
            for link, v, lo, up in zip(links, *arrays, strict=True):
                yield f"{link}\t{model}{head}{v}\t{lo}\t{up}\n"

    def _remember(self, out: StepOutput, issued_at: datetime) -> None:
        self._issued[issued_at] = {m: out.forecasts[m].astype(np.float32) for m in ModelName.ALL}
        horizon_start = issued_at - self.config.step * (self.config.horizon - 1)
        for t in [t for t in self._issued if t < horizon_start]:
            del self._issued[t]

    def _error_rows(self, ids: np.ndarray, y: np.ndarray, bucket: datetime):  # noqa: ANN202
        """COPY lines: error = forecast - actual for h = 1..H, for the observed links.

        The forecast of step h for this bucket was issued at ``bucket - (h-1)*step``; it is
        scored exactly as stored (float32), so error rows and forecast rows agree.
        """
        cfg = self.config
        n, observed = len(ids), np.flatnonzero(np.isfinite(y))
        if not observed.size:
            return
        ts = bucket.isoformat()
        for model in ModelName.ALL:
            errors = np.full((n, cfg.horizon), np.nan)
            for h in range(1, cfg.horizon + 1):
                issue = self._issued.get(bucket - cfg.step * (h - 1), {}).get(model)
                if issue is not None:
                    m = min(len(issue), n)
                    errors[:m, h - 1] = issue[:m, h - 1].astype(np.float64) - y[:m]
            errors = errors[observed]
            known = np.isfinite(errors).any(axis=1)
            arrays = live.real_array_literals(errors[known])  # float4, as the forecasts
            for i, errs in zip(observed[known].tolist(), arrays, strict=True):
                yield f"{ids[i]}\t{model}\t{ts}\t{float(y[i])!r}\t{errs}\n"

    def _count_late(self) -> int:
        """Samples that reached closed buckets after they were processed: stored, counted,
        not seen by the models (they have moved on). Tracked for the last few buckets."""
        if not self._seen:
            return 0
        late = 0
        with self._db.connect() as conn:
            for bucket, seen in list(self._seen.items()):
                now = live.count_samples(conn, bucket, bucket + self.config.step)
                if now > seen:
                    self.late_samples_total += now - seen
                    late += now - seen
                    log.info("%d late sample(s) for %s (not used)", now - seen, bucket)
                    self._seen[bucket] = now
        for bucket in sorted(self._seen)[:-5]:
            del self._seen[bucket]
        return late

    # --- alerts ---------------------------------------------------------------------------

    # --- housekeeping ---------------------------------------------------------------------

    def apply_retention(self, *, forecast_days: float, sample_days: float) -> None:
        now = self.clock()
        with self._db.begin() as conn:
            live.delete_older_than(
                conn,
                forecasts=now - timedelta(days=forecast_days),
                samples=now - timedelta(days=sample_days),
            )


def replace_forecasts(conn: Connection, issued_at: datetime, lines) -> int:  # noqa: ANN001
    """Store the forecasts issued at ``issued_at`` again, in place of those stored: a known
    failure's shift set after they were issued (``_reissue_on_change``)."""
    conn.execute(text("DELETE FROM forecast WHERE issued_at = :t"), {"t": issued_at})
    return live.insert_forecasts(conn, lines)


def complete(conn: Connection, bucket: datetime, step: timedelta) -> bool:
    """Whether every link with a sample in the bucket before ``bucket`` has one in
    ``bucket`` (any quality: a quarantined sample is still a report), so that the
    engine need not wait for more. False when the bucket before has no sample: with
    nothing to expect, the late allowance decides.

    One statement: the previous bucket's rows by the BRIN index on ``ts``, each probed
    in ``bucket`` by the primary key (link_id, ts); it stops at the first link missing,
    which is the usual answer while a bucket still fills.
    """
    return bool(
        conn.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM sample WHERE ts >= :p AND ts < :a)"
                " AND NOT EXISTS (SELECT 1 FROM sample p WHERE p.ts >= :p AND p.ts < :a"
                " AND NOT EXISTS (SELECT 1 FROM sample s WHERE s.link_id = p.link_id"
                " AND s.ts >= :a AND s.ts < :b))"
            ),
            {"p": bucket - step, "a": bucket, "b": bucket + step},
        )
    )


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` says nothing of the bucket being processed: the database's
    (:func:`db.session.is_connection_problem`, what the API answers 503; besides, a
    server read-only, as a standby during a failover or a full disk makes it, a closed
    connection or cursor, a session SQLAlchemy must roll back first), as psycopg raises
    them or SQLAlchemy wraps them; or the process's (out of memory, stopping)."""
    if not isinstance(exc, Exception) or isinstance(exc, MemoryError):
        return True
    if is_connection_problem(exc) or isinstance(exc, PendingRollbackError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return isinstance(exc, psycopg.InterfaceError | psycopg.errors.ReadOnlySqlTransaction)


def _why(exc: BaseException) -> str:
    """The exception's type and the first line of its message (SQLAlchemy appends the
    statement), at most 300 characters."""
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


def _steps(change: live.GridChange) -> str:
    return " and ".join(f"{s} s" for s in change.steps)
