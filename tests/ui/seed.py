"""Seed a live API honestly: a simulated network with a failure pushed over REST, then
the live engine ticked with a fake clock so forecasts, errors, alerts and events are
the engine's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from engine import EngineConfig, LiveEngine
from simulator.feeder import build_network, select_links

STEP_SECONDS = 60
HORIZON = 12
N_STEPS = 120
FAIL_AT = 80
MAX_LINKS = 10
#: A link registered by hand that never reports (what the README's curl example once did
#: to the demo): it must not squeeze the map, nor be the link a page opens on. Its name
#: sorts before every Abilene link's, as the stray did, so "the first name" would pick it.
STRAY = "0lab-a>0lab-b"


@dataclass(frozen=True)
class Seeded:
    links: tuple[str, ...]
    failed: tuple[str, ...]
    failure_ts: datetime
    now: datetime
    quarantined: tuple[str, datetime]  # a sample above its link's line rate (link, ts)
    stray: str = STRAY


def seed(api_url: str, tokens: dict[str, str], database_url: str) -> Seeded:
    """Push ``N_STEPS`` one-minute steps ending now, a failure at ``FAIL_AT``, run the engine."""
    net = build_network(topology="abilene", scenario="drastic", seed=0, fail_at=FAIL_AT)
    names = net.link_names
    chosen = select_links(net, MAX_LINKS)
    loads = net.loads()[:N_STEPS]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = now - timedelta(seconds=STEP_SECONDS * N_STEPS)
    pos = net.topology.positions
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        for name in chosen:
            src, dst = name.split(">")
            peak = float(loads[:, names.index(name)].max())
            body = {
                "name": name,
                "capacity_bps": max(peak, 1e6) * 1.05,  # busy links come near capacity
                "labels": {
                    "src_lon": pos[src][0],
                    "src_lat": pos[src][1],
                    "dst_lon": pos[dst][0],
                    "dst_lat": pos[dst][1],
                },
            }
            http.post("/api/v1/links", json=body).raise_for_status()
        http.post("/api/v1/links", json={"name": STRAY}).raise_for_status()
        samples = [
            {
                "link": name,
                "ts": (t0 + timedelta(seconds=STEP_SECONDS * k)).isoformat(),
                "value": float(loads[k, names.index(name)]),
            }
            for k in range(N_STEPS)
            for name in chosen
        ]
        failure_ts = t0 + timedelta(seconds=STEP_SECONDS * FAIL_AT)
        failed = tuple(n for n in (names[i] for i in net.result.failed_links) if n in chosen)
        # A counter wrap as a collector's correction makes it, on a link that does not fail.
        wrapped = next(n for n in chosen if n not in failed)
        k = N_STEPS - 20
        quarantined = (wrapped, t0 + timedelta(seconds=STEP_SECONDS * k))
        samples[k * len(chosen) + chosen.index(wrapped)]["value"] = 1e14
        r = http.post("/api/v1/telemetry", json={"samples": samples})
        r.raise_for_status()
        assert r.json()["quarantined"] == 1, r.text
        http.post(
            "/api/v1/events",
            json={
                "kind": "maintenance",
                "links": [chosen[-1]],
                "ts": (t0 + timedelta(minutes=40)).isoformat(),
                "end_ts": (t0 + timedelta(minutes=55)).isoformat(),
                "note": "line card swap",
            },
        ).raise_for_status()

    # Not reading cuts off the loads: the engine learns the failure from the loads alone
    # (the blind case the dashboard's re-route and drift bands are drawn from); reading
    # it would store its own failure event and tell the models (tests/engine/test_reroute.py).
    config = EngineConfig(
        step_seconds=STEP_SECONDS, horizon=HORIZON, season_steps=60, read_cuts=False
    )
    clock = [t0 + timedelta(seconds=STEP_SECONDS * (FAIL_AT - 10))]
    engine = LiveEngine(database_url, config, clock=lambda: clock[0])
    try:
        assert engine.try_lead()
        engine.tick()
        engine.retrain()
        clock[0] = now + timedelta(seconds=STEP_SECONDS)  # the last bucket has closed
        engine.tick()
    finally:
        engine.release()
    # The operator reports the failure after the engine has run (as one often does, late):
    # the models learnt it from the loads, so the detector's re-route event and the drift
    # alerts under the failure are there to be drawn. A failure known in time re-routes the
    # forecasts instead (engine/failures.py; tests/engine/test_reroute.py).
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        http.post(
            "/api/v1/events",
            json={"kind": "failure", "links": list(failed), "ts": failure_ts.isoformat()},
        ).raise_for_status()
    return Seeded(
        links=chosen, failed=failed, failure_ts=failure_ts, now=now, quarantined=quarantined
    )
