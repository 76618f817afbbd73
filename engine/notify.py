"""Notifications out: what receivers are told about an alert, and how it reaches them.

Two kinds of receiver, each with its name in the outbox (``notification.receiver``):

- **Alertmanager** (``alertmanager``): its v2 API, ``POST {url}/api/v2/alerts`` with a
  JSON list of alerts. Labels (an alert's identity in Alertmanager): ``alertname``
  (``linkcast_<kind>``), ``kind``, ``severity`` (``critical`` for a failure, else
  ``warning``), ``link`` (drift and capacity alerts: the link's name), ``alert_id``
  (linkcast's id) and ``source`` (``linkcast``). A failure alert has no ``link`` label:
  its links widen while the failure spreads, and labels must not change; they are in
  the ``links`` annotation, and its grouped drift alerts in ``description``.
  Annotations: ``summary`` (the message), ``description``, ``links``, ``dashboard``.
  A firing alert is sent with ``endsAt`` = now + 4 x the re-send period, stamped at
  each send (as Prometheus does), so it stays firing while linkcast re-sends it and
  resolves by itself if linkcast goes away; a resolved one carries its ``endsAt``.
- **webhooks** (``webhook:<url>``): ``POST`` of ``{"status": "firing"|"resolved",
  "alert": {...}, "children": [...]}``, signed: ``X-Linkcast-Signature:
  sha256=<hex HMAC-SHA256 of the raw body, keyed with LINKCAST_WEBHOOK_SECRET>``;
  ``X-Linkcast-Delivery`` is the outbox row's id (the same on every retry, so a
  receiver can drop a repeat).

Any answer but 2xx, or no answer, is a failed attempt: the outbox retries it later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from db.models import Alert, AlertKind, AlertState

FIRING, RESOLVED = "firing", "resolved"
ALERTMANAGER = "alertmanager"
WEBHOOK_PREFIX = "webhook:"
SIGNATURE_HEADER = "X-Linkcast-Signature"
DELIVERY_HEADER = "X-Linkcast-Delivery"
SEVERITY = {
    AlertKind.FAILURE: "critical",
    AlertKind.CAPACITY: "warning",
    AlertKind.DRIFT: "warning",
}
#: A firing alert sent to Alertmanager is valid for this many re-send periods.
VALID_RESENDS = 4

Payload = dict[str, Any]


class DeliveryError(RuntimeError):
    """A receiver did not take a notification (no answer, or not 2xx)."""


@dataclass(frozen=True)
class NotifyConfig:
    """Where notifications go (``LINKCAST_ALERTMANAGER_URL``, ``LINKCAST_WEBHOOK_URLS``,
    ``LINKCAST_WEBHOOK_SECRET``), how often Alertmanager hears a firing alert again, and
    the dashboard that notifications link to."""

    alertmanager_url: str | None = None
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    resend_seconds: float = 60.0
    dashboard_url: str = "http://127.0.0.1:8501"
    timeout_seconds: float = 5.0  # per request: a receiver that hangs costs at most this

    def receivers(self) -> list[Receiver]:
        out: list[Receiver] = []
        if self.alertmanager_url:
            out.append(
                AlertmanagerReceiver(self.alertmanager_url, self.dashboard_url, self.resend_seconds)
            )
        for url in self.webhook_urls:
            assert self.webhook_secret, "Settings refuses webhooks without a secret"
            out.append(WebhookReceiver(url, self.webhook_secret, self.dashboard_url))
        return out


class Receiver(Protocol):
    name: str

    def payload(self, alert: Alert, children: list[Alert]) -> Payload:
        """What this receiver is told about ``alert`` as it is now."""
        ...

    def send(self, client: httpx.Client, payload: Payload, *, delivery_id: int) -> None:
        """Deliver one outbox row; raises :class:`DeliveryError` when not taken."""
        ...


def status(alert: Alert) -> str:
    return RESOLVED if alert.state == AlertState.RESOLVED else FIRING


def is_resolve(payload: Payload) -> bool:
    """Whether an outbox row tells its receiver that an alert resolved (Alertmanager's
    carries ``endsAt`` from the start; a firing one is stamped only when sent).

    >>> is_resolve({"status": "resolved"}), is_resolve({"labels": {}, "endsAt": "..."})
    (True, True)
    >>> is_resolve({"status": "firing"}), is_resolve({"labels": {}, "startsAt": "..."})
    (False, False)
    """
    return payload.get("status") == RESOLVED or "endsAt" in payload


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _link(alert: Alert) -> str | None:
    """The link of a one-link alert (drift, capacity); None for a failure."""
    return alert.links[0] if alert.link_id is not None and alert.links else None


def dashboard_link(base: str, alert: Alert) -> str:
    """Where the dashboard shows the alert: its link's page, or the Failures page.

    >>> a = Alert(kind="drift", link_id=3, links=["r1:xe-0/0/1"])
    >>> dashboard_link("http://ui:8501/", a)
    'http://ui:8501/link?link=r1%3Axe-0%2F0%2F1'
    """
    base = base.rstrip("/")
    link = _link(alert)
    if link is None:
        return f"{base}/failures"
    return f"{base}/link?link={quote(link, safe='')}"


def _description(alert: Alert, children: list[Alert]) -> str:
    lines = [alert.message]
    if alert.kind == AlertKind.FAILURE:
        lines.append(f"links: {', '.join(alert.links)}")
    lines += [f"- {c.message} ({c.state})" for c in children]
    return "\n".join(lines)


def _alert_json(alert: Alert, dashboard: str) -> Payload:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "state": alert.state,
        "severity": SEVERITY.get(alert.kind, "warning"),
        "link": _link(alert),
        "links": list(alert.links),
        "model": alert.model,
        "onset": _iso(alert.onset),
        "magnitude": alert.magnitude,
        "message": alert.message,
        "firing_at": _iso(alert.firing_at),
        "resolved_at": _iso(alert.resolved_at),
        "dashboard": dashboard_link(dashboard, alert),
    }


class AlertmanagerReceiver:
    """Alertmanager's v2 API (module docstring: labels, annotations, ``endsAt``)."""

    name = ALERTMANAGER

    def __init__(self, url: str, dashboard_url: str, resend_seconds: float) -> None:
        self.url = url.rstrip("/")
        self.dashboard_url = dashboard_url.rstrip("/")
        self.resend_seconds = resend_seconds

    def payload(self, alert: Alert, children: list[Alert]) -> Payload:
        labels = {
            "alertname": f"linkcast_{alert.kind}",
            "kind": alert.kind,
            "severity": SEVERITY.get(alert.kind, "warning"),
            "alert_id": str(alert.id),
            "source": "linkcast",
        }
        link = _link(alert)
        if link is not None:
            labels["link"] = link
        body: Payload = {
            "labels": labels,
            "annotations": {
                "summary": alert.message,
                "description": _description(alert, children),
                "links": ", ".join(alert.links),
                "dashboard": dashboard_link(self.dashboard_url, alert),
            },
            "startsAt": _iso(alert.firing_at or alert.onset),
            "generatorURL": f"{self.dashboard_url}/alerts",
        }
        if alert.state == AlertState.RESOLVED:
            body["endsAt"] = _iso(alert.resolved_at or alert.updated_at)
        return body

    def stamped(self, payload: Payload, now: datetime) -> Payload:
        """A firing alert as sent now: valid for ``VALID_RESENDS`` re-send periods."""
        if "endsAt" in payload:
            return payload
        starts = datetime.fromisoformat(payload["startsAt"].replace("Z", "+00:00"))
        valid = timedelta(seconds=VALID_RESENDS * self.resend_seconds)
        return {**payload, "endsAt": _iso(max(now, starts) + valid)}

    def post(self, client: httpx.Client, alerts: list[Payload]) -> None:
        now = datetime.now(UTC)
        _post(client, f"{self.url}/api/v2/alerts", [self.stamped(a, now) for a in alerts], {})

    def send(self, client: httpx.Client, payload: Payload, *, delivery_id: int) -> None:
        self.post(client, [payload])


class WebhookReceiver:
    """A generic JSON webhook, signed with HMAC-SHA256 (module docstring)."""

    def __init__(self, url: str, secret: str, dashboard_url: str) -> None:
        self.url = url
        self.name = WEBHOOK_PREFIX + url
        self.secret = secret.encode()
        self.dashboard_url = dashboard_url

    def payload(self, alert: Alert, children: list[Alert]) -> Payload:
        return {
            "status": status(alert),
            "alert": _alert_json(alert, self.dashboard_url),
            "children": [_alert_json(c, self.dashboard_url) for c in children],
        }

    def send(self, client: httpx.Client, payload: Payload, *, delivery_id: int) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            SIGNATURE_HEADER: signature(self.secret, body),
            DELIVERY_HEADER: str(delivery_id),
        }
        _post(client, self.url, body, headers)


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Linkcast-Signature`` value of a body: how a receiver checks one.

    >>> signature(b"s3cret", b'{"status":"firing"}')
    'sha256=...'
    >>> hmac.compare_digest(signature(b"k", b"x"), "sha256=" + hmac.new(b"k", b"x",
    ...     hashlib.sha256).hexdigest())
    True
    """
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _post(client: httpx.Client, url: str, body: Any, headers: dict[str, str]) -> None:
    try:
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json", **headers}
            response = client.post(url, content=body, headers=headers)
        else:
            response = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:500]) from None
    if not response.is_success:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:300]}")
