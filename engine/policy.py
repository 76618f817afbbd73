"""The alert policy: what the detectors' events and the forecasts' bounds mean for the
operator's alerts (drift per link, failure over several links, capacity per link)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from db import live
from db.models import AlertKind, AlertState, EventKind, ModelName
from engine.config import EngineConfig
from forecaster.suite import StepOutput


class AlertPolicy:
    """Turns each bucket's detector events and forecast bounds into alerts."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def apply(
        self,
        session: Session,
        out: StepOutput,
        links: list[live.LinkRow],
        bucket: datetime,
        link_ids: list[int],
    ) -> int:
        """Open, update and resolve alerts for one closed ``bucket`` from the suite's
        output ``out`` (row ``i`` of its arrays is link ``link_ids[i]``); returns how many
        alerts were opened."""
        cfg = self.config
        index = {lid: i for i, lid in enumerate(link_ids)}
        names = {r.id: r.name for r in links}
        opened = 0

        def when(step: int) -> datetime:
            return bucket - cfg.step * (out.step - step)

        drift_open = {a.link_id: a for a in live.open_alerts(session, AlertKind.DRIFT)}
        for ev in out.events:
            link_id = link_ids[ev.link]
            if link_id in drift_open or not abs(ev.magnitude) >= cfg.min_drift_magnitude:
                continue
            alert = _new_alert(
                kind=AlertKind.DRIFT,
                link_id=link_id,
                links=[names.get(link_id, str(link_id))],
                onset=when(ev.onset),
                magnitude=ev.magnitude,
                model=ModelName.HYBRID if ev.kind == "residual" else None,
                message=(
                    f"{ev.kind} drift on {names.get(link_id)}: "
                    f"{ev.magnitude:+.0%} since {when(ev.onset):%H:%M}"
                ),
                now=bucket,
            )
            session.add(alert)
            drift_open[link_id] = alert
            opened += 1
        for res in out.resolved:
            link_id = link_ids[res.link]
            if link_id in drift_open:
                live.resolve_alert(session, drift_open.pop(link_id), bucket)

        failure_open = live.open_alerts(session, AlertKind.FAILURE)
        reroute = out.reroute
        if reroute is not None:
            big = [
                (i, m)
                for i, m in zip(reroute.links, reroute.magnitudes, strict=True)
                if abs(m) >= cfg.min_drift_magnitude
            ]
            reroute = None if len(big) < cfg.min_reroute_links else reroute
        if reroute is not None:
            shifted = [names.get(link_ids[i], "?") for i, _ in big]
            onset = when(reroute.onset)
            live.add_event(
                session,
                kind=EventKind.REROUTE,
                links=shifted,
                ts=onset,
                source="detector",
                note=f"{len(shifted)} links shifted level together",
            )
            if not failure_open:
                biggest = max((m for _, m in big), key=abs)
                session.add(
                    _new_alert(
                        kind=AlertKind.FAILURE,
                        link_id=None,
                        links=shifted,
                        onset=onset,
                        magnitude=biggest,
                        model=None,
                        message=(
                            f"re-route suspected: {len(shifted)} links shifted at "
                            f"{onset:%H:%M} (largest {biggest:+.0%})"
                        ),
                        now=bucket,
                        state=AlertState.FIRING,
                    )
                )
                opened += 1
        else:
            open_links = {names.get(k) for k in drift_open}
            for alert in failure_open:  # over when none of its links still drifts
                if not open_links & set(alert.links) and bucket - alert.onset > cfg.step * 3:
                    live.resolve_alert(session, alert, bucket)

        opened += self._capacity_alerts(session, out, links, bucket, index)
        live.promote_pending(session, older_than=bucket - cfg.step * cfg.sustain_steps, at=bucket)
        return opened

    def _capacity_alerts(
        self,
        session: Session,
        out: StepOutput,
        links: list[live.LinkRow],
        bucket: datetime,
        index: dict[int, int],
    ) -> int:
        cfg = self.config
        upper = out.upper[ModelName.HYBRID]
        peak = upper.max(axis=1)
        existing = {a.link_id: a for a in live.open_alerts(session, AlertKind.CAPACITY)}
        crossing: dict[int, tuple[float, int]] = {}
        for r in links:
            if r.capacity_bps and r.id in index:
                i = index[r.id]
                # Hysteresis: an open alert stays open until the peak falls 5 points below
                # the threshold, so a forecast hovering at the line does not flap.
                ratio = cfg.capacity_ratio - (0.05 if r.id in existing else 0.0)
                if peak[i] > ratio * r.capacity_bps:
                    crossing[r.id] = (peak[i] / r.capacity_bps, int(np.argmax(upper[i])) + 1)
        opened = 0
        names = {r.id: r.name for r in links}
        for link_id, (ratio, h) in crossing.items():
            alert = existing.get(link_id)
            if alert is None:
                session.add(
                    _new_alert(
                        kind=AlertKind.CAPACITY,
                        link_id=link_id,
                        links=[names[link_id]],
                        onset=bucket,
                        magnitude=ratio,
                        model=ModelName.HYBRID,
                        message=(
                            f"{names[link_id]}: forecast upper bound reaches {ratio:.0%} of"
                            f" capacity in {h} step(s) (threshold {cfg.capacity_ratio:.0%})"
                        ),
                        now=bucket,
                    )
                )
                opened += 1
            else:
                alert.magnitude, alert.updated_at = ratio, bucket
        for link_id, alert in existing.items():
            if link_id not in crossing:
                live.resolve_alert(session, alert, bucket)
        return opened


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
    state: str = AlertState.PENDING,
):  # noqa: ANN202
    from db.models import Alert

    return Alert(
        kind=kind,
        state=state,
        link_id=link_id,
        links=links,
        onset=onset,
        magnitude=None if magnitude is None or not math.isfinite(magnitude) else magnitude,
        model=model,
        message=message,
        created_at=now,
        updated_at=now,
        firing_at=now if state == AlertState.FIRING else None,
    )
