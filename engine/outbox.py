"""The outbox: notifications are written in the transaction that changed their alert, and
a delivery worker sends them, so none is lost to a crash or an unreachable receiver, and
a receiver that is down never slows the engine's tick (the tick only inserts rows).

- :func:`enqueue` (in the tick's transaction): one row per receiver for each top-level
  alert that started firing or resolved, unless a silence active now matches it. A
  resolve goes, silenced or not, to every receiver that was told (or is still to be
  told) that the alert fires: a receiver that heard "firing" hears "resolved".
- :class:`DeliveryWorker` (a thread of ``linkcast engine`` / ``linkcast up``, in every
  engine process): every ``poll_seconds`` it takes each receiver's due rows (at most
  ``batch`` a receiver, in a transaction of their own; ``FOR UPDATE SKIP LOCKED``, so
  several workers never send one row twice at once) and sends them in order. A row whose
  alert has become silenced meanwhile is dropped (marked delivered, ``last_error =
  'silenced'``), except a resolve of an alert whose firing that receiver was delivered.
  A failed attempt is counted (``attempts``, ``last_error``) and retried after a
  back-off of 1 s doubling to 5 min, never given up; the receiver itself is left alone
  for its own back-off (its other rows are not tried in that pass), so a receiver that
  is down or slow to fail costs one attempt a back-off and never holds up another.
  Every ``resend_seconds`` the worker of the process that leads posts the firing,
  unsilenced, top-level alerts to Alertmanager again (it resolves alerts it stops
  hearing about); followers never re-send, so a stale "firing" cannot land after the
  leader's "resolved". Undelivered rows wait in the table: a restarted worker resumes
  them. Delivery is at least once: a worker killed after a send and before its commit
  sends that row again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.orm import Session

from db import outbox as db_outbox
from db.models import Alert, AlertState, Notification
from db.session import make_engine, make_sessionmaker
from db.silences import silenced_alert_ids
from engine.notify import (
    AlertmanagerReceiver,
    DeliveryError,
    NotifyConfig,
    Receiver,
    is_resolve,
)

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
SILENCED = "silenced"
DELIVERED_RETENTION = timedelta(days=7)


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 s doubling, at most 5 min.

    >>> [backoff(n).total_seconds() for n in (1, 2, 3, 9, 10, 50)]
    [1.0, 2.0, 4.0, 256.0, 300.0, 300.0]
    """
    exponent = min(max(attempts - 1, 0), 30)
    return timedelta(seconds=min(BACKOFF_FIRST_SECONDS * 2**exponent, BACKOFF_MAX_SECONDS))


def enqueue(session: Session, alerts: Iterable[Alert], config: NotifyConfig) -> int:
    """Write the notifications of ``alerts`` (each started firing or resolved in this
    transaction) for every receiver; returns the rows written. A silenced alert and a
    failure's child get none, nor does a resolved one that never fired (no one was told
    of it); but a resolve always goes to the receivers told that the alert fires."""
    receivers = config.receivers()
    alerts = [a for a in alerts if a.state == AlertState.FIRING or a.firing_at is not None]
    if not receivers or not alerts:
        return 0
    session.flush()  # ids, and the children the policy just grouped
    silenced = silenced_alert_ids(session=session, alert_ids=[a.id for a in alerts])
    resolved = [a.id for a in alerts if a.state == AlertState.RESOLVED]
    told = _told_firing(db_outbox.notifications_of(session=session, alert_ids=resolved))
    targets: list[tuple[Alert, list[Receiver]]] = []
    for alert in alerts:
        if alert.parent_id is None and alert.id not in silenced:
            targets.append((alert, receivers))
        elif alert.state == AlertState.RESOLVED:
            heard = [r for r in receivers if (r.name, alert.id) in told]
            if heard:
                targets.append((alert, heard))
    kids = db_outbox.children(
        session=session, parent_ids=[a.id for a, _ in targets if a.parent_id is None]
    )
    for alert, to in targets:
        for receiver in to:
            db_outbox.add_notification(
                session=session,
                receiver=receiver.name,
                alert_id=alert.id,
                payload=receiver.payload(alert, kids.get(alert.id, [])),
            )
    return sum(len(to) for _, to in targets)


def _told_firing(rows: Iterable[Notification], *, delivered: bool = False) -> set[tuple[str, int]]:
    """The (receiver, alert id) pairs of firing rows not dropped as silenced: sent, or
    still to send unless ``delivered``."""
    return {
        (r.receiver, r.alert_id)
        for r in rows
        if r.alert_id is not None
        and r.last_error != SILENCED
        and not is_resolve(r.payload)
        and (r.delivered_at is not None or not delivered)
    }


@dataclass
class PassReport:
    delivered: int = 0
    failed: int = 0
    silenced: int = 0
    resent: int = 0


class DeliveryWorker:
    """Sends the outbox's rows (module docstring). ``start()`` runs it in a thread until
    ``stop()``; ``run_once()`` is one pass, for tests and tools. ``is_leader`` says
    whether this process leads (only then does it re-send firing alerts); without it
    the worker re-sends as if it led (a lone worker, a tool)."""

    def __init__(
        self,
        database_url: str,
        config: NotifyConfig,
        *,
        poll_seconds: float = 1.0,
        batch: int = 100,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._is_leader = is_leader or (lambda: True)
        self._receivers = {r.name: r for r in config.receivers()}
        self._db = make_engine(database_url, pool_size=1)
        self._sessions = make_sessionmaker(self._db)
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(2.0, config.timeout_seconds))
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_resend = 0.0  # monotonic; the first pass re-sends (a restart catches up)
        self._next_cleanup = 0.0
        # A receiver that failed is left alone until then (monotonic), its back-off
        # growing with its consecutive failures.
        self._failures: dict[str, int] = {}
        self._paused_until: dict[str, float] = {}

    # --- the thread -----------------------------------------------------------------------

    def start(self) -> DeliveryWorker:
        try:
            with self._sessions() as session:
                waiting = db_outbox.undelivered_by_receiver(session=session)
        except Exception as exc:  # the passes will retry; this is only a report
            log.warning("outbox: cannot count undelivered notifications: %s", exc)
            waiting = {}
        for receiver, n in waiting.items():
            if receiver in self._receivers:
                log.info("outbox: %d notification(s) for %s to deliver", n, receiver)
            else:
                log.warning(
                    "outbox: %d notification(s) for %s, which is no longer configured: kept,"
                    " not sent",
                    n,
                    receiver,
                )
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()
        self._db.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.run_once()
                if report.delivered or report.failed or report.silenced:
                    log.info(
                        "outbox: %d delivered, %d failed (retried later), %d silenced",
                        report.delivered,
                        report.failed,
                        report.silenced,
                    )
            except Exception:  # a database hiccup: the rows stay, the next pass retries
                log.exception("outbox: delivery pass failed")
            self._stop.wait(self.poll_seconds)

    # --- one pass -------------------------------------------------------------------------

    def run_once(self) -> PassReport:
        report = PassReport()
        if not self._receivers:
            return report
        # Checked only when a re-send is due; a follower stays due, so the pass after it
        # takes the lead re-sends at once.
        if time.monotonic() >= self._next_resend and self._is_leader():
            report.resent = self.resend()
            self._next_resend = time.monotonic() + self.config.resend_seconds
        self.deliver(report)
        if time.monotonic() >= self._next_cleanup:
            with self._sessions.begin() as session:
                db_outbox.delete_delivered_before(
                    session=session, before=datetime.now(UTC) - DELIVERED_RETENTION
                )
            self._next_cleanup = time.monotonic() + 3600
        return report

    def deliver(self, report: PassReport) -> None:
        """Send each receiver's due rows, receiver by receiver, each in a transaction
        that holds their locks; a receiver in its back-off is skipped."""
        for name, receiver in self._receivers.items():
            if time.monotonic() < self._paused_until.get(name, 0.0):
                continue
            self._deliver_to(receiver, report)

    def _deliver_to(self, receiver: Receiver, report: PassReport) -> None:
        with self._sessions.begin() as session:
            rows = db_outbox.claim_due(
                session=session, receivers=[receiver.name], now=datetime.now(UTC), limit=self.batch
            )
            silenced = silenced_alert_ids(
                session=session, alert_ids=[r.alert_id for r in rows if r.alert_id is not None]
            )
            # a silenced alert's resolve still goes where its firing went
            heard = _told_firing(
                db_outbox.notifications_of(
                    session=session,
                    alert_ids=[
                        r.alert_id for r in rows if r.alert_id in silenced and is_resolve(r.payload)
                    ],
                ),
                delivered=True,
            )
            for row in rows:
                told = is_resolve(row.payload) and (row.receiver, row.alert_id) in heard
                if row.alert_id in silenced and not told:
                    row.delivered_at, row.last_error = datetime.now(UTC), SILENCED
                    report.silenced += 1
                    continue
                row.attempts += 1
                try:
                    receiver.send(self._client, row.payload, delivery_id=row.id)
                except DeliveryError as exc:
                    row.last_error = str(exc)
                    row.next_attempt_at = datetime.now(UTC) + backoff(row.attempts)
                    report.failed += 1
                    failures = self._failures[receiver.name] = (
                        self._failures.get(receiver.name, 0) + 1
                    )
                    pause = backoff(failures).total_seconds()
                    self._paused_until[receiver.name] = time.monotonic() + pause
                    log.warning(
                        "outbox: notification %d to %s failed (attempt %d): %s; %s left alone"
                        " for %.0f s",
                        row.id,
                        row.receiver,
                        row.attempts,
                        exc,
                        row.receiver,
                        pause,
                    )
                    return  # its other rows wait: one failed attempt a back-off
                row.delivered_at, row.last_error = datetime.now(UTC), None
                report.delivered += 1
                self._failures.pop(receiver.name, None)
                self._paused_until.pop(receiver.name, None)

    def resend(self) -> int:
        """Post every firing, unsilenced, top-level alert to Alertmanager again."""
        am = next(
            (r for r in self._receivers.values() if isinstance(r, AlertmanagerReceiver)), None
        )
        if am is None:
            return 0
        with self._sessions() as session:
            alerts = db_outbox.firing_unsilenced_roots(session=session)
            kids = db_outbox.children(session=session, parent_ids=[a.id for a in alerts])
            payloads = [am.payload(a, kids[a.id]) for a in alerts]
        if not payloads:
            return 0
        try:
            am.post(self._client, payloads)
        except DeliveryError as exc:
            log.warning("outbox: re-sending %d firing alert(s) failed: %s", len(payloads), exc)
            return 0
        # An alert that resolved after it was read may have had its resolve delivered
        # (by another process) before this post landed: tell it again, after the post.
        with self._sessions() as session:
            ended = db_outbox.not_firing(session=session, alert_ids=[a.id for a in alerts])
            kids = db_outbox.children(session=session, parent_ids=[a.id for a in ended])
            again = [am.payload(a, kids[a.id]) for a in ended]
        if again:
            try:
                am.post(self._client, again)
            except DeliveryError as exc:  # its endsAt lets Alertmanager resolve it
                log.warning("outbox: re-telling %d resolve(s) failed: %s", len(again), exc)
        return len(payloads)
