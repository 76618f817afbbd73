"""The outbox: notifications are written in the transaction that changed their alert, and
a delivery worker sends them, so none is lost to a crash or an unreachable receiver, and
a receiver that is down never slows the engine's tick (the tick only inserts rows).

- :func:`enqueue` (in the tick's transaction): one row per receiver for each alert that
  started firing or resolved, unless a silence active now matches it.
- :class:`DeliveryWorker` (a thread of ``linkcast engine`` / ``linkcast up``): every
  ``poll_seconds`` it takes the due rows (``FOR UPDATE SKIP LOCKED``, so several workers
  never send one row twice at once) and sends each; a row whose alert has become silenced
  meanwhile is dropped (marked delivered, ``last_error = 'silenced'``); a failed attempt
  is counted (``attempts``, ``last_error``) and retried after a back-off of 1 s doubling
  to 5 min, never given up. Every ``resend_seconds`` it posts the firing, unsilenced,
  top-level alerts to Alertmanager again (it resolves alerts it stops hearing about).
  Undelivered rows wait in the table: a restarted worker resumes them. Delivery is at
  least once: a worker killed after a send and before its commit sends that row again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.orm import Session

from db import outbox as db_outbox
from db.models import Alert, AlertState
from db.session import make_engine, make_sessionmaker
from db.silences import silenced_alert_ids
from engine.notify import AlertmanagerReceiver, DeliveryError, NotifyConfig

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
    transaction) for every receiver; returns the rows written. A silenced alert gets
    none, nor does a resolved one that never fired (no one was told of it)."""
    receivers = config.receivers()
    alerts = [
        a
        for a in alerts
        if a.parent_id is None and (a.state == AlertState.FIRING or a.firing_at is not None)
    ]
    if not receivers or not alerts:
        return 0
    session.flush()  # ids, and the children the policy just grouped
    silenced = silenced_alert_ids(session=session, alert_ids=[a.id for a in alerts])
    alerts = [a for a in alerts if a.id not in silenced]
    kids = db_outbox.children(session=session, parent_ids=[a.id for a in alerts])
    for alert in alerts:
        for receiver in receivers:
            db_outbox.add_notification(
                session=session,
                receiver=receiver.name,
                alert_id=alert.id,
                payload=receiver.payload(alert, kids[alert.id]),
            )
    return len(alerts) * len(receivers)


@dataclass
class PassReport:
    delivered: int = 0
    failed: int = 0
    silenced: int = 0
    resent: int = 0


class DeliveryWorker:
    """Sends the outbox's rows (module docstring). ``start()`` runs it in a thread until
    ``stop()``; ``run_once()`` is one pass, for tests and tools."""

    def __init__(
        self,
        database_url: str,
        config: NotifyConfig,
        *,
        poll_seconds: float = 1.0,
        batch: int = 100,
    ) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        self.batch = batch
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
        if time.monotonic() >= self._next_resend:
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
        """Send the due rows, in one transaction that holds their locks."""
        with self._sessions.begin() as session:
            now = datetime.now(UTC)
            rows = db_outbox.claim_due(
                session=session, receivers=self._receivers, now=now, limit=self.batch
            )
            silenced = silenced_alert_ids(
                session=session, alert_ids=[r.alert_id for r in rows if r.alert_id is not None]
            )
            down: dict[str, str] = {}  # receivers that did not answer in this pass
            for row in rows:
                if row.alert_id in silenced:
                    row.delivered_at, row.last_error = datetime.now(UTC), SILENCED
                    report.silenced += 1
                    continue
                if row.receiver in down:  # it did not answer just now: not tried again
                    row.last_error = down[row.receiver]
                    row.next_attempt_at = datetime.now(UTC) + backoff(max(row.attempts, 1))
                    continue
                error = None
                try:
                    self._receivers[row.receiver].send(
                        self._client, row.payload, delivery_id=row.id
                    )
                except DeliveryError as exc:
                    error = str(exc)
                    if not error.startswith("HTTP "):  # no answer: spare its other rows
                        down[row.receiver] = error
                row.attempts += 1
                if error is None:
                    row.delivered_at, row.last_error = datetime.now(UTC), None
                    report.delivered += 1
                else:
                    row.last_error = error
                    row.next_attempt_at = datetime.now(UTC) + backoff(row.attempts)
                    report.failed += 1
                    log.warning(
                        "outbox: notification %d to %s failed (attempt %d): %s",
                        row.id,
                        row.receiver,
                        row.attempts,
                        error,
                    )

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
        return len(payloads)
