"""Notifications out, against real receivers: Debian's Alertmanager started on a free
port, and a small signed-webhook receiver that fails before it accepts. The outbox is
driven directly (alerts written as the policy writes them) and through the live engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db import outbox as db_outbox
from db import silences
from db.models import Alert, Notification
from db.session import make_sessionmaker, session_scope
from engine import outbox
from engine.notify import NotifyConfig
from engine.outbox import SILENCED, DeliveryWorker, enqueue
from tests.alertmanager import Alertmanager, needs_alertmanager, running_alertmanager, wait_for
from tests.conftest import auth, free_port
from tests.engine.test_loop import FAIL, SHIFTED, Clock, engine, push

DASHBOARD = "http://dash.example:8501"
DEADLINE_SECONDS = 120.0  # generous: a loaded 2-core machine

# --- Alertmanager ---------------------------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    with running_alertmanager(tmp_path) as am:
        yield am


def add_alert(session: Session, kind: str, links: list[str], **kw: Any) -> Alert:
    """An alert as the policy leaves it: firing since 10 minutes ago unless told."""
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    alert = Alert(
        kind=kind,
        state=kw.pop("state", "firing"),
        link_id=kw.pop("link_id", None if kind == "failure" else 1),
        links=links,
        onset=t,
        message=kw.pop("message", f"{kind} on {', '.join(links)}"),
        created_at=t,
        updated_at=t,
        firing_at=t,
        **kw,
    )
    session.add(alert)
    session.flush()
    return alert


def rows(db: Engine) -> list[Notification]:
    with make_sessionmaker(db)() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


@needs_alertmanager
def test_alertmanager_hears_firing_grouped_resolved_and_not_silenced(
    alertmanager, client, tokens, clean_db, database_url
):
    # A firing alert is valid at Alertmanager for 4 re-send periods from its send: long
    # enough here that it cannot expire before the assertions, however slow the machine.
    cfg = NotifyConfig(
        alertmanager_url=alertmanager.url, dashboard_url=DASHBOARD, resend_seconds=3600
    )
    sessions = make_sessionmaker(clean_db)
    with session_scope(sessions) as session:
        failure = add_alert(session, "failure", ["A>B", "C>D"], message="re-route: A>B, C>D")
        kids = [
            add_alert(session, "drift", [name], parent_id=failure.id, message=f"drift {name}")
            for name in ("A>B", "C>D")
        ]
        drift = add_alert(session, "drift", ["r1:xe-0/0/1"], link_id=3)
        assert enqueue(session, [failure, drift], cfg) == 2
        ids = {"failure": failure.id, "drift": drift.id, "kids": [k.id for k in kids]}

    worker = DeliveryWorker(database_url, cfg)
    try:
        report = worker.run_once()
        assert report.delivered == 2 and report.failed == 0
        held = wait_for("two alerts at Alertmanager", lambda: len(alertmanager.by_id()) == 2)
        assert held
        got = alertmanager.by_id()
        # one notification for the failure, naming its links and its drift alerts
        f = got[ids["failure"]]
        assert f["labels"] == {
            "alertname": "linkcast_failure",
            "kind": "failure",
            "severity": "critical",
            "alert_id": str(ids["failure"]),
            "source": "linkcast",
        }
        assert f["annotations"]["links"] == "A>B, C>D"
        assert f["annotations"]["summary"] == "re-route: A>B, C>D"
        assert "drift A>B" in f["annotations"]["description"]
        assert "drift C>D" in f["annotations"]["description"]
        assert f["annotations"]["dashboard"] == f"{DASHBOARD}/failures"
        assert f["status"]["state"] == "active"
        # a firing alert stays valid for 4 re-send periods, stamped when sent
        assert datetime.fromisoformat(f["endsAt"]) > datetime.now(UTC)
        d = got[ids["drift"]]
        assert d["labels"]["alertname"] == "linkcast_drift"
        assert (d["labels"]["link"], d["labels"]["severity"]) == ("r1:xe-0/0/1", "warning")
        assert d["annotations"]["dashboard"] == f"{DASHBOARD}/link?link=r1%3Axe-0%2F0%2F1"
        assert d["generatorURL"] == f"{DASHBOARD}/alerts"
        assert not set(ids["kids"]) & set(got)  # children travel inside their failure

        # resolved: sent with endsAt, and Alertmanager no longer holds it as active
        with session_scope(sessions) as session:
            alert = session.get(Alert, ids["drift"])
            assert alert is not None
            alert.state, alert.resolved_at = "resolved", datetime.now(UTC).replace(microsecond=0)
            resolved_at = alert.resolved_at
            assert enqueue(session, [alert], cfg) == 1
        assert worker.run_once().delivered == 1
        last = rows(clean_db)[-1]
        assert last.payload["endsAt"] == resolved_at.isoformat().replace("+00:00", "Z")
        assert last.delivered_at is not None and last.attempts == 1
        wait_for("the resolved alert to leave", lambda: ids["drift"] not in alertmanager.by_id())
        assert ids["failure"] in alertmanager.by_id()

        # silences: none enqueued for a silenced alert; one enqueued before its silence
        # is dropped by the worker; neither is re-sent while silenced
        h = auth(tokens["admin"])
        for name in ("E>F", "G>H"):
            assert client.post("/api/v1/links", json={"name": name}, headers=h).status_code == 201
        body = {"link": "E>F", "kind": "capacity", "duration_seconds": 600, "comment": "work"}
        assert client.post("/api/v1/silences", json=body, headers=h).status_code == 201
        with session_scope(sessions) as session:
            quiet = add_alert(session, "capacity", ["E>F"])
            assert enqueue(session, [quiet], cfg) == 0
            late = add_alert(session, "capacity", ["G>H"])
            assert enqueue(session, [late], cfg) == 1
            ids |= {"quiet": quiet.id, "late": late.id}
        body = {"link": "G>H", "duration_seconds": 600}
        assert client.post("/api/v1/silences", json=body, headers=h).status_code == 201
        assert worker.run_once().silenced == 1
        dropped = rows(clean_db)[-1]
        assert (dropped.alert_id, dropped.last_error) == (ids["late"], SILENCED)
        assert dropped.delivered_at is not None
    finally:
        worker.stop()

    # a new worker re-sends what fires: the failure again (its silence-free state), never
    # the silenced ones; and an alert that fired without a notification is told too
    with session_scope(sessions) as session:
        unsent = add_alert(session, "capacity", ["C>D"], link_id=2)
        ids["unsent"] = unsent.id
    fresh = DeliveryWorker(database_url, cfg)
    try:
        assert fresh.run_once().resent == 2
    finally:
        fresh.stop()
    got = alertmanager.by_id()
    assert set(got) == {ids["failure"], ids["unsent"]}
    assert got[ids["unsent"]]["labels"]["alertname"] == "linkcast_capacity"


@needs_alertmanager
def test_the_engines_failure_reaches_alertmanager_as_one_grouped_alert(
    alertmanager, client, tokens, settings, clean_db
):
    """The live engine on the loop test's network: the tick writes the notifications in
    its transaction (a webhook that is down does not stop it), the worker delivers them,
    and the failure is one alert at Alertmanager naming the shifted links."""
    after = FAIL + 30
    push(client, tokens["write"], range(after))
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    cfg = NotifyConfig(
        alertmanager_url=alertmanager.url,
        webhook_urls=(down,),
        webhook_secret="s3cret",
        dashboard_url=DASHBOARD,
    )
    eng = engine(settings.database_url, Clock(after), notify=cfg)
    assert eng.try_lead()
    report = eng.tick()
    eng.release()
    assert report.buckets == after and report.notifications > 0

    stored = rows(clean_db)
    by_receiver: dict[str, list[int | None]] = {}
    for row in stored:
        by_receiver.setdefault(row.receiver, []).append(row.alert_id)
    assert set(by_receiver) == {"alertmanager", f"webhook:{down}"}
    assert by_receiver["alertmanager"] == by_receiver[f"webhook:{down}"]  # one per receiver

    worker = DeliveryWorker(settings.database_url, cfg)
    try:
        worker.run_once()
    finally:
        worker.stop()
    failures = [a for a in alertmanager.alerts() if a["labels"]["kind"] == "failure"]
    assert len(failures) == 1, failures
    (failure,) = failures
    assert set(failure["annotations"]["links"].split(", ")) >= set(SHIFTED[:2])
    assert failure["labels"]["severity"] == "critical"
    assert "drift" in failure["annotations"]["description"]  # its children, listed
    with make_sessionmaker(clean_db)() as session:
        children = session.scalars(
            select(Alert.id).where(Alert.parent_id == int(failure["labels"]["alert_id"]))
        ).all()
    assert children and not set(children) & {
        int(a["labels"]["alert_id"]) for a in alertmanager.alerts()
    }
    # the webhook that is down: every one of its rows kept; it was tried once, and its
    # other rows wait for its back-off
    waiting = [r for r in rows(clean_db) if r.receiver.startswith("webhook:")]
    assert waiting and all(r.delivered_at is None for r in waiting)
    assert waiting[0].last_error and sum(r.attempts for r in waiting) == 1


# --- webhooks ---------------------------------------------------------------------------


@dataclass
class Hook:
    """A webhook receiver that answers 500 to its first ``fail_first`` requests."""

    fail_first: int
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    url: str = ""
    on_post: Callable[[], None] | None = None  # run before each answer

    def serve(self) -> ThreadingHTTPServer:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.on_post is not None:
                    hook.on_post()
                code = 500 if len(hook.requests) < hook.fail_first else 200
                hook.requests.append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}/linkcast"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def test_webhook_signed_retried_and_kept_across_a_restart(clean_db, database_url):
    hook = Hook(fail_first=2)
    server = hook.serve()
    secret = "s3cret"
    cfg = NotifyConfig(webhook_urls=(hook.url,), webhook_secret=secret, dashboard_url=DASHBOARD)
    sessions = make_sessionmaker(clean_db)
    with session_scope(sessions) as session:
        failure = add_alert(session, "failure", ["A>B", "C>D"])
        add_alert(session, "drift", ["A>B"], parent_id=failure.id, message="drift on A>B")
        assert enqueue(session, [failure], cfg) == 1
        alert_id = failure.id

    try:
        # the first worker: two attempts, both refused; the row waits, counted
        first = DeliveryWorker(database_url, cfg)
        try:
            assert first.run_once().failed == 1
            wait_for("a second attempt", lambda: first.run_once().failed == 1)
        finally:
            first.stop()
        (row,) = rows(clean_db)
        assert row.delivered_at is None and row.attempts == 2
        assert row.last_error and row.last_error.startswith("HTTP 500")
        assert row.next_attempt_at > row.created_at

        # a new worker (a restart), running as the engine runs it: delivered once
        second = DeliveryWorker(database_url, cfg, poll_seconds=0.2).start()
        try:
            wait_for("the delivery", lambda: rows(clean_db)[0].delivered_at is not None)
        finally:
            second.stop()
    finally:
        server.shutdown()
        server.server_close()

    (row,) = rows(clean_db)
    assert (row.attempts, row.last_error) == (3, None)
    assert [code for _, _, code in hook.requests] == [500, 500, 200]
    bodies = {body for _, body, _ in hook.requests}
    assert len(bodies) == 1  # the same notification every time
    for headers, body, _ in hook.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Linkcast-Signature"], expected)
        assert headers["X-Linkcast-Delivery"] == str(row.id)
        assert headers["Content-Type"] == "application/json"
    sent = json.loads(bodies.pop())
    assert sent["status"] == "firing"
    assert sent["alert"]["id"] == alert_id and sent["alert"]["links"] == ["A>B", "C>D"]
    assert sent["alert"]["severity"] == "critical"
    assert [c["message"] for c in sent["children"]] == ["drift on A>B"]


@pytest.fixture
def hooks() -> Iterator[Callable[..., Hook]]:
    """Start webhook receivers (``Hook``); all are shut down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(fail_first: int = 0, **kw: Any) -> Hook:
        hook = Hook(fail_first=fail_first, **kw)
        servers.append(hook.serve())
        return hook

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sent(hook: Hook) -> list[tuple[int, str]]:
    """(alert id, status) of each webhook request, in order."""
    out = []
    for _, body, _ in hook.requests:
        msg = json.loads(body)
        out.append((msg["alert"]["id"], msg["status"]))
    return out


def test_a_receiver_that_is_down_or_failing_never_holds_up_another(
    clean_db, database_url, hooks, monkeypatch
):
    """150 rows wait for a webhook that is down (a closed port) and 5 for one that answers
    500; the newest row, for a live receiver, still leaves in the first pass, and each
    failing receiver is tried once, then left alone for its back-off."""
    # a back-off longer than a stalled machine could take between the two passes (1 s
    # by default: the second pass must start within it)
    monkeypatch.setattr(outbox, "BACKOFF_FIRST_SECONDS", 60.0)
    live, failing = hooks(), hooks(fail_first=10**6)
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    cfg = NotifyConfig(
        webhook_urls=(dead, failing.url, live.url), webhook_secret="s", dashboard_url=DASHBOARD
    )
    receivers = {r.name: r for r in cfg.receivers()}
    sessions = make_sessionmaker(clean_db)
    with session_scope(sessions) as session:
        for n, url in [(150, dead), (5, failing.url), (1, live.url)]:
            receiver = receivers[f"webhook:{url}"]
            for _ in range(n):
                alert = add_alert(session, "capacity", ["A>B"])
                db_outbox.add_notification(
                    session=session,
                    receiver=receiver.name,
                    alert_id=alert.id,
                    payload=receiver.payload(alert, []),
                )
        live_id = alert.id

    worker = DeliveryWorker(database_url, cfg)
    try:
        first = worker.run_once()
        assert (first.delivered, first.failed) == (1, 2)
        assert sent(live) == [(live_id, "firing")]
        assert [code for _, _, code in failing.requests] == [500]
        second = worker.run_once()  # both are in their back-off: neither is tried
        assert (second.delivered, second.failed) == (0, 0)
    finally:
        worker.stop()
    assert len(failing.requests) == 1
    stored = rows(clean_db)
    for url in (dead, failing.url):
        mine = [r for r in stored if r.receiver == f"webhook:{url}"]
        assert all(r.delivered_at is None for r in mine)
        assert sum(r.attempts for r in mine) == 1 and mine[0].last_error


def test_only_the_leader_re_sends_firing_alerts(clean_db, database_url, hooks):
    """Every engine process runs a worker; only the one that leads re-posts the firing
    alerts to Alertmanager, and it re-tells a resolve that raced with its re-send."""
    sessions = make_sessionmaker(clean_db)
    with session_scope(sessions) as session:
        alert_id = add_alert(session, "capacity", ["A>B"]).id
    resolved_at = datetime.now(UTC).replace(microsecond=0)

    def resolve_once() -> None:  # the tick resolves it while the re-send is on its way
        with session_scope(sessions) as session:
            alert = session.get(Alert, alert_id)
            assert alert is not None
            if alert.state == "firing":
                alert.state, alert.resolved_at = "resolved", resolved_at

    am = hooks()  # records what Alertmanager would be told
    cfg = NotifyConfig(alertmanager_url=am.url, dashboard_url=DASHBOARD, resend_seconds=3600)
    leading = False
    worker = DeliveryWorker(database_url, cfg, is_leader=lambda: leading)
    try:
        assert worker.run_once().resent == 0  # a follower
        assert am.requests == []
        leading = True
        am.on_post = resolve_once
        assert worker.run_once().resent == 1  # it took the lead: re-sends at once
    finally:
        worker.stop()
    told = [json.loads(body) for _, body, _ in am.requests]
    assert [[a["labels"]["alert_id"] for a in posted] for posted in told] == [[str(alert_id)]] * 2
    # the re-send (firing, valid for a while), then the resolve again, after it
    assert datetime.fromisoformat(told[0][0]["endsAt"]) > datetime.now(UTC)
    assert told[1][0]["endsAt"] == resolved_at.isoformat().replace("+00:00", "Z")


def test_a_receiver_told_firing_is_told_resolved_even_when_silenced(clean_db, database_url, hooks):
    """Silences hold back firing notifications, never the resolve of an alert whose
    firing the receiver was delivered: a silence that starts while it fires, or after
    its resolve was queued."""
    hook = hooks()
    cfg = NotifyConfig(webhook_urls=(hook.url,), webhook_secret="s", dashboard_url=DASHBOARD)
    sessions = make_sessionmaker(clean_db)
    t = datetime.now(UTC)

    def silence(link: str) -> None:
        with session_scope(sessions) as session:
            silences.create_silence(
                session=session,
                link=link,
                kind=None,
                starts_at=t - timedelta(minutes=1),
                ends_at=t + timedelta(hours=1),
                comment="",
                created_by="test",
            )

    def resolve(alert_id: int) -> int:
        with session_scope(sessions) as session:
            alert = session.get(Alert, alert_id)
            assert alert is not None
            alert.state, alert.resolved_at = "resolved", datetime.now(UTC)
            return enqueue(session, [alert], cfg)

    with session_scope(sessions) as session:
        told = [add_alert(session, "capacity", [name]) for name in ("A>B", "C>D")]
        assert enqueue(session, told, cfg) == 2
        ids = [a.id for a in told]
    worker = DeliveryWorker(database_url, cfg)
    try:
        assert worker.run_once().delivered == 2
        # E>F fires, and is silenced before its firing leaves; then it resolves: its
        # resolve is queued (its firing may yet leave) and dropped once that was not
        with session_scope(sessions) as session:
            untold = add_alert(session, "capacity", ["E>F"])
            assert enqueue(session, [untold], cfg) == 1
            ids.append(untold.id)
        silence("E>F")
        assert resolve(ids[2]) == 1
        # G>H fires and resolves under a silence: nothing at all
        silence("G>H")
        with session_scope(sessions) as session:
            quiet = add_alert(session, "capacity", ["G>H"])
            assert enqueue(session, [quiet], cfg) == 0
            quiet_id = quiet.id
        assert resolve(quiet_id) == 0
        # a silence starts while A>B fires, then it resolves: the resolve is queued
        silence("A>B")
        assert resolve(ids[0]) == 1
        # C>D resolves, then a silence starts before the resolve leaves: not dropped
        assert resolve(ids[1]) == 1
        silence("C>D")
        report = worker.run_once()
        assert (report.delivered, report.silenced) == (2, 1)  # E>F's firing dropped
        report = worker.run_once()
        assert (report.delivered, report.silenced) == (0, 1)  # and then its resolve
    finally:
        worker.stop()
    assert sent(hook) == [
        (ids[0], "firing"),
        (ids[1], "firing"),
        (ids[0], "resolved"),
        (ids[1], "resolved"),
    ]
    assert [(r.alert_id, r.last_error) for r in rows(clean_db) if r.last_error] == [
        (ids[2], SILENCED),
        (ids[2], SILENCED),
    ]


def test_clean_up_keeps_what_a_resolve_depends_on(clean_db):
    """Delivered rows go after a week, but not the firing row of an alert still firing
    (its resolve, silenced or not, looks for it)."""
    cfg = NotifyConfig(webhook_urls=("http://127.0.0.1:9/h",), webhook_secret="s")
    long_ago = datetime.now(UTC) - timedelta(days=30)
    with session_scope(make_sessionmaker(clean_db)) as session:
        firing = add_alert(session, "capacity", ["A>B"])
        over = add_alert(session, "capacity", ["C>D"], state="resolved", resolved_at=long_ago)
        assert enqueue(session, [firing, over], cfg) == 2
        session.flush()
        for row in session.scalars(select(Notification)):
            row.delivered_at = long_ago
        deleted = db_outbox.delete_delivered_before(
            session=session, before=datetime.now(UTC) - timedelta(days=7)
        )
        assert deleted == 1
        ids = firing.id
    assert [r.alert_id for r in rows(clean_db)] == [ids]
