"""The alert policy: what the detectors' events and the forecasts' bounds mean for the
operator's alerts (drift per link, failure over several links, capacity per link).

The lifecycle follows Prometheus' alerting rules and Alertmanager's grouping:

- **pending, then firing.** A drift or capacity alert is raised ``pending`` and fires
  once its condition has held for ``sustain_steps`` grid steps since it was raised (the
  ``for:`` clause of a Prometheus rule). A failure (a re-route seen on several links at
  once) fires at once: it is what an operator must hear about first.
- **resolved with hysteresis.** An alert resolves only after its condition has stayed
  clear for ``clear_steps`` consecutive observed steps (``alert.clear_steps`` counts
  them in the database, so a restart resumes the count, never restarts an alert). A
  capacity condition clears only ``capacity_clear_margin`` below its level, so a load
  hovering at the threshold gives one alert, not a train of them. A drift clears when
  the detector resolves it (its own ``resolve_steps`` hysteresis); a new detection on
  the link before the count ends continues the same episode.
- **a step without data is not evidence.** A link with no accepted sample in a bucket
  (a gap in reporting, a quarantined sample) neither raises, clears nor fires anything.
- **grouped under the failure.** Pending drift alerts on the links a failure re-routed,
  or starting within ``group_steps`` of it, become its children (``parent_id``) and the
  failure names their links: one notification, not a dozen unrelated ones. Only alerts
  without a parent are notified. A re-route sharing no link with an open failure is
  another failure.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from db import live
from db.models import Alert, AlertKind, AlertState, EventKind, ModelName
from engine.config import EngineConfig
from forecaster.suite import StepOutput


@dataclass
class PolicyResult:
    """What one bucket did to the alerts: how many were raised, and the alerts to tell
    receivers about (started firing or resolved, and not a failure's child)."""

    opened: int = 0
    notify: list[Alert] = field(default_factory=list)


class AlertPolicy:
    """Turns each bucket's detector events and forecast bounds into alerts (the module
    docstring gives the lifecycle)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def apply(
        self,
        session: Session,
        out: StepOutput,
        links: list[live.LinkRow],
        bucket: datetime,
        link_ids: list[int],
        observed: np.ndarray,
        known_failures: Mapping[str, datetime] | None = None,
    ) -> PolicyResult:
        """Raise, update, fire and resolve alerts for one closed ``bucket``.

        ``out`` is the suite's output for the bucket (row ``i`` of its arrays is link
        ``link_ids[i]``); ``observed[i]`` says whether link ``i`` had an accepted sample
        in the bucket. ``known_failures`` names the links an operator's failure event
        holds down at the bucket's end, with when each failed: they raise (or widen) the
        failure alert themselves, since the models, told of them, no longer see the
        re-route as drift (engine/failures.py). Alerts are changed in ``session`` (the
        bucket's transaction).
        """
        result = PolicyResult()
        index = {lid: i for i, lid in enumerate(link_ids)}
        names = {r.id: r.name for r in links}
        open_alerts = live.open_alerts(session)
        seen = {lid for lid, i in index.items() if i < len(observed) and observed[i]}
        failures = [a for a in open_alerts if a.kind == AlertKind.FAILURE]
        drifts = {a.link_id: a for a in open_alerts if a.kind == AlertKind.DRIFT}
        capacity = {a.link_id: a for a in open_alerts if a.kind == AlertKind.CAPACITY}

        result.opened += self._drift(session, out, bucket, link_ids, names, seen, drifts)
        seen_names = {names[lid] for lid in seen if lid in names}
        result.opened += self._known_failure(session, bucket, failures, known_failures or {})
        result.opened += self._failure(
            session,
            out,
            bucket,
            link_ids,
            names,
            failures,
            drifts,
            seen_names,
            frozenset(known_failures or ()),
        )
        result.opened += self._capacity(session, out, links, bucket, index, seen, capacity)
        session.flush()  # new alerts get their ids (children point at them)
        self._group(failures, drifts, frozenset(known_failures or ()))
        self._lifecycle(bucket, [*failures, *drifts.values(), *capacity.values()], result)
        return result

    # --- conditions -----------------------------------------------------------------------

    def _when(self, out: StepOutput, bucket: datetime, step: int) -> datetime:
        return bucket - self.config.step * (out.step - step)

    def _drift(
        self,
        session: Session,
        out: StepOutput,
        bucket: datetime,
        link_ids: list[int],
        names: dict[int, str],
        seen: set[int],
        drifts: dict[int | None, Alert],
    ) -> int:
        """Detections raise (or continue) a link's drift episode; the detector's resolve
        starts its clear count, observed steps advance it."""
        cfg = self.config
        opened = 0
        detected: set[int] = set()
        for ev in out.events:
            if not abs(ev.magnitude) >= cfg.min_drift_magnitude:
                continue
            link_id = link_ids[ev.link]
            detected.add(link_id)
            onset = self._when(out, bucket, ev.onset)
            alert = drifts.get(link_id)
            name = names.get(link_id, str(link_id))
            if alert is not None:  # the same episode goes on
                alert.clear_steps, alert.updated_at = 0, bucket
                if abs(ev.magnitude) > abs(alert.magnitude or 0.0):
                    alert.magnitude = _finite(ev.magnitude)
                    # the message says the magnitude the alert holds, not its first
                    alert.message = _drift_message(ev.kind, name, ev.magnitude, alert.onset)
                continue
            alert = _new_alert(
                kind=AlertKind.DRIFT,
                link_id=link_id,
                links=[name],
                onset=onset,
                magnitude=ev.magnitude,
                model=ModelName.HYBRID if ev.kind == "residual" else None,
                message=_drift_message(ev.kind, name, ev.magnitude, onset),
                now=bucket,
            )
            session.add(alert)
            drifts[link_id] = alert
            opened += 1
        for res in out.resolved:
            alert = drifts.get(link_ids[res.link])
            if alert is not None and alert.clear_steps == 0:
                alert.clear_steps = 1
        for link_id, alert in drifts.items():
            clearing = alert.clear_steps > 0 and link_id not in detected
            if clearing and link_id in seen and not _new(alert, bucket):
                alert.clear_steps += 1
        return opened

    def _known_failure(
        self,
        session: Session,
        bucket: datetime,
        failures: list[Alert],
        known: Mapping[str, datetime],
    ) -> int:
        """Links an operator reported failed raise one failure alert (or widen the open
        one sharing a link with them), firing at once like any failure; it stays open until
        they are repaired, then clears as a detected failure does."""
        if not known:
            return 0
        links = sorted(known)
        same = [a for a in failures if set(a.links) & set(links)]
        if same:
            alert = same[0]
            if not set(links) <= set(alert.links):
                alert.links = sorted(set(alert.links) | set(links))
                alert.updated_at = bucket
                alert.message = _reported_message(alert.links, alert.onset, known)
            return 0
        onset = min(known.values())
        message = _reported_message(links, onset, known)
        _open_failure(session, failures, links, onset, None, message, bucket)
        return 1

    def _failure(
        self,
        session: Session,
        out: StepOutput,
        bucket: datetime,
        link_ids: list[int],
        names: dict[int, str],
        failures: list[Alert],
        drifts: dict[int | None, Alert],
        seen_names: set[str],
        held_down: frozenset[str] = frozenset(),
    ) -> int:
        """A re-route on enough links raises a failure alert (or widens the open one that
        shares a link with it: one failure, one alert; a re-route elsewhere is another
        failure); it clears once none of its links still drifts, on observed steps."""
        cfg = self.config
        opened = 0
        reroute = out.reroute
        big: list[tuple[int, float]] = []
        if reroute is not None:
            big = [
                (i, m)
                for i, m in zip(reroute.links, reroute.magnitudes, strict=True)
                if abs(m) >= cfg.min_drift_magnitude
            ]
        if reroute is not None and len(big) >= cfg.min_reroute_links:
            shifted = [names.get(link_ids[i], "?") for i, _ in big]
            onset = self._when(out, bucket, reroute.onset)
            live.add_event(
                session,
                kind=EventKind.REROUTE,
                links=shifted,
                ts=onset,
                source="detector",
                note=f"{len(shifted)} links shifted level together",
            )
            biggest = max((m for _, m in big), key=abs)
            same = [a for a in failures if set(a.links) & set(shifted)]
            if same:  # the failure already open widens: one failure, one alert
                alert = same[0]
                alert.links = sorted(set(alert.links) | set(shifted))
                alert.clear_steps, alert.updated_at = 0, bucket
                alert.magnitude = max(alert.magnitude or 0.0, biggest, key=abs)
                alert.message = _message(alert, held_down)
            else:
                message = _failure_message(shifted, onset, biggest)
                _open_failure(session, failures, shifted, onset, biggest, message, bucket)
                opened += 1
            return opened
        drifting = {a.links[0] for a in drifts.values() if a.clear_steps == 0 and a.links}
        for alert in failures:
            if set(alert.links) & held_down:
                alert.clear_steps = 0  # an operator's failure not yet repaired
                continue
            if not set(alert.links) & seen_names:
                continue  # none of its links reported: no evidence either way
            old_enough = bucket - alert.onset > cfg.step * 3
            if old_enough and not drifting & set(alert.links):
                alert.clear_steps += 1
            else:
                alert.clear_steps = 0
        return opened

    def _capacity(
        self,
        session: Session,
        out: StepOutput,
        links: list[live.LinkRow],
        bucket: datetime,
        index: dict[int, int],
        seen: set[int],
        capacity: dict[int | None, Alert],
    ) -> int:
        """The hybrid's upper bound crossing ``capacity_ratio`` of a link's capacity within
        the horizon raises; it clears ``capacity_clear_margin`` lower."""
        cfg = self.config
        upper = out.upper[ModelName.HYBRID]
        opened = 0
        for r in links:
            if not r.capacity_bps or r.id not in index or r.id not in seen:
                continue  # no capacity, or no data this step: no evidence either way
            i = index[r.id]
            peak = float(np.max(upper[i]))
            if not math.isfinite(peak):
                continue
            ratio = peak / r.capacity_bps
            h = int(np.argmax(upper[i])) + 1
            alert = capacity.get(r.id)
            if alert is not None:
                if ratio > cfg.capacity_ratio - cfg.capacity_clear_margin:
                    alert.clear_steps = 0
                    alert.magnitude, alert.updated_at = ratio, bucket
                    alert.message = _capacity_message(r.name, ratio, h, cfg.capacity_ratio)
                else:
                    alert.clear_steps += 1
            elif ratio > cfg.capacity_ratio:
                alert = _new_alert(
                    kind=AlertKind.CAPACITY,
                    link_id=r.id,
                    links=[r.name],
                    onset=bucket,
                    magnitude=ratio,
                    model=ModelName.HYBRID,
                    message=_capacity_message(r.name, ratio, h, cfg.capacity_ratio),
                    now=bucket,
                )
                session.add(alert)
                capacity[r.id] = alert
                opened += 1
        return opened

    # --- grouping and lifecycle -------------------------------------------------------------

    def _group(
        self,
        failures: list[Alert],
        drifts: dict[int | None, Alert],
        known: frozenset[str] = frozenset(),
    ) -> None:
        """Pending drift alerts on a failure's links, or with an onset within
        ``group_steps`` of the failure's (a link the re-route reached a little later),
        become its children; the failure then names their links too. An alert already
        firing keeps standing alone: its receivers heard it fire and must hear it resolve.
        """
        window = self.config.step * self.config.group_steps
        for alert in drifts.values():
            if alert.parent_id is not None or not alert.links or alert.state != AlertState.PENDING:
                continue
            link = alert.links[0]
            owner = next((f for f in failures if link in f.links), None)
            if owner is None:
                near = [f for f in failures if abs(alert.onset - f.onset) <= window]
                owner = min(near, key=lambda f: abs(alert.onset - f.onset), default=None)
            if owner is None:
                continue
            alert.parent_id = owner.id
            if link not in owner.links:
                owner.links = [*owner.links, link]
                owner.message = _message(owner, known)

    def _lifecycle(self, bucket: datetime, alerts: list[Alert], result: PolicyResult) -> None:
        """Pending alerts whose condition held ``sustain_steps`` fire; alerts clear for
        ``clear_steps`` resolve (a pending one that clears is dropped, never notified)."""
        cfg = self.config
        for alert in alerts:
            if alert.state == AlertState.RESOLVED:
                continue
            if alert.clear_steps >= cfg.clear_steps:
                was_firing = alert.state == AlertState.FIRING
                alert.state, alert.resolved_at, alert.updated_at = (
                    AlertState.RESOLVED,
                    bucket,
                    bucket,
                )
                if was_firing and alert.parent_id is None:
                    result.notify.append(alert)
                continue
            # like a Prometheus rule's `for:`, from when the condition was first seen (the
            # detector's onset lies earlier: counting from it would skip the wait)
            due = alert.created_at <= bucket - cfg.step * cfg.sustain_steps
            immediate = alert.kind == AlertKind.FAILURE
            if alert.state == AlertState.PENDING and alert.clear_steps == 0 and (due or immediate):
                alert.state, alert.firing_at, alert.updated_at = AlertState.FIRING, bucket, bucket
                if alert.parent_id is None:
                    result.notify.append(alert)


def _new(alert: Alert, bucket: datetime) -> bool:
    return alert.created_at == bucket


def _drift_message(kind: str, link: str, magnitude: float, onset: datetime) -> str:
    """A drift alert's message: its kind, link, magnitude (a change in %) and onset.

    >>> _drift_message("residual", "A>B", 22.39, datetime(2026, 1, 1, 9, 5))
    'residual drift on A>B: +2239% since 09:05'
    """
    return f"{kind} drift on {link}: {magnitude:+.0%} since {onset:%H:%M}"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _capacity_message(link: str, ratio: float, step: int, threshold: float) -> str:
    """Kept current while the alert is open: the newest forecast's peak."""
    return (
        f"{link}: forecast upper bound reaches {ratio:.0%} of capacity in {step} step(s)"
        f" (threshold {threshold:.0%})"
    )


def _reported_message(links: list[str], onset: datetime, down: Collection[str]) -> str:
    """A reported failure's message: its links ``down`` now (held down by an open failure
    event on the link or on its reverse), then the others it names (re-routed onto, or
    down and repaired since).

    >>> at = datetime(2026, 1, 1, 11, 22)
    >>> _reported_message(["A>B", "B>A", "C>D"], at, {"A>B", "B>A"})
    'failure reported: 2 links down since 11:22: A>B, B>A; 1 other link affected: C>D'
    >>> _reported_message(["A>B"], at, {"A>B"})
    'failure reported: 1 link down since 11:22: A>B'
    """
    failed = [n for n in links if n in down]
    others = [n for n in links if n not in down]
    message = f"failure reported: {_count(failed, 'link')} down since {onset:%H:%M}"
    if failed:
        message += f": {_shown(failed)}"
    if others:
        message += f"; {_count(others, 'other link')} affected: {_shown(others)}"
    return message


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _shown(links: Sequence[str]) -> str:
    return ", ".join(links[:6]) + (f" and {len(links) - 6} more" if len(links) > 6 else "")


def _message(alert: Alert, known: frozenset[str]) -> str:
    """A failure alert's message after it widened: still a reported failure's (with the
    links that shifted with it) when it names a known failure's link, else a detected
    re-route's."""
    if set(alert.links) & known:
        return _reported_message(alert.links, alert.onset, known)
    return _failure_message(alert.links, alert.onset, alert.magnitude or 0.0)


def _failure_message(links: list[str], onset: datetime, biggest: float) -> str:
    return (
        f"re-route suspected: {len(links)} links shifted at {onset:%H:%M}"
        f" (largest {biggest:+.0%}): {_shown(links)}"
    )


def _open_failure(
    session: Session,
    failures: list[Alert],
    links: list[str],
    onset: datetime,
    magnitude: float | None,
    message: str,
    bucket: datetime,
) -> None:
    """A new failure alert on ``links`` (an operator's or a detected re-route), stored and
    added to the open ``failures`` so that later links in the same tick widen it."""
    alert = _new_alert(
        kind=AlertKind.FAILURE,
        link_id=None,
        links=links,
        onset=onset,
        magnitude=magnitude,
        model=None,
        message=message,
        now=bucket,
    )
    session.add(alert)
    failures.append(alert)


def _new_alert(
    *,
    kind: str,
    link_id: int | None,
    links: list[str],
    onset: datetime,
    magnitude: float | None,
    model: str | None,
    message: str,
    now: datetime,
) -> Alert:
    """A new alert, ``pending`` (the lifecycle fires it)."""
    return Alert(
        kind=kind,
        state=AlertState.PENDING,
        link_id=link_id,
        links=links,
        onset=onset,
        magnitude=_finite(magnitude),
        model=model,
        message=message,
        created_at=now,
        updated_at=now,
        firing_at=None,
        clear_steps=0,
    )
