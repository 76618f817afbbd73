"""Implausible samples are quarantined, not learned (issue 11, point 1).

The filter on its own (numpy), then each case of the issue on a live engine: samples
pushed through the API as a collector would, the engine ticked on a controlled clock,
and what ends up stored (sample quality, alerts, forecast errors).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from engine import EngineConfig, LiveEngine
from engine.quality import ExcursionFilter
from tests.conftest import auth

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def t(k: int) -> datetime:
    return T0 + timedelta(minutes=k)


def diurnal(n: int, rng: np.random.Generator, *, period: int = 96, noise: float = 0.02):
    k = np.arange(n)
    return 1e9 * (2 + np.sin(2 * np.pi * k / period)) * (1 + noise * rng.standard_normal(n))


def run(f: ExcursionFilter, series: dict[int, np.ndarray], start: int = 0):
    """Step ``f`` over per-link series (NaN: no sample); returns, per step, the judgement."""
    n = len(next(iter(series.values())))
    out = []
    for k in range(n):
        means = {i: float(y[k]) for i, y in series.items() if np.isfinite(y[k])}
        out.append(f.step(t(start + k), means))
    return out


def excursion_steps(judged) -> list[int]:
    return sorted(int((e.bucket - T0) / timedelta(minutes=1)) for j in judged for e in j.excursions)


# --- the filter -------------------------------------------------------------------------


def test_clean_series_are_almost_never_held():
    """Daily cycles with noise, at several levels and noise sizes, over 5 seeds: at most
    one bucket in 10,000 is held (and then accepted or, if it reverts, marked)."""
    held = buckets = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        series = {
            0: diurnal(3000, rng),  # a fast "day" of 96 steps, 2 % noise
            1: diurnal(3000, rng, period=288, noise=0.1) * 1e3,
            2: np.abs(3e8 * (1 + 0.3 * rng.standard_normal(3000))),  # flat, very noisy
            3: np.full(3000, 4e8),  # flat, no noise at all
        }
        judged = run(ExcursionFilter(8.0), series)
        held += sum(len(j.held) for j in judged)
        buckets += 3000 * len(series)
    assert held <= buckets / 10_000


@pytest.mark.parametrize("seed", range(3))
def test_one_step_spike_and_zero_that_revert_are_excursions(seed):
    y = diurnal(200, np.random.default_rng(seed))
    y[100] *= 1000  # a counter reset read as a wrap
    y[150] = 0.0  # a missed read
    judged = run(ExcursionFilter(8.0), {1: y})
    assert excursion_steps(judged) == [100, 150]
    assert judged[100].held == [1] and judged[100].accepted == {}
    assert judged[101].accepted == {1: y[101]}  # decided by the next value, accepted itself
    assert [j.held for j in judged].count([1]) == 2  # nothing else held
    exc = judged[101].excursions[0]
    assert abs(y[100] - exc.centre_bps) > exc.limit_bps  # its samples will be marked
    assert abs(y[101] - exc.centre_bps) <= exc.limit_bps


@pytest.mark.parametrize("factor", [6.0, 8.0, 20.0])
def test_a_shift_that_stays_is_accepted_from_its_second_bucket(factor):
    rng = np.random.default_rng(0)
    y = diurnal(300, rng)
    y[150:] *= 3
    judged = run(ExcursionFilter(factor), {1: y})
    assert excursion_steps(judged) == []
    held = [k for k, j in enumerate(judged) if j.held]
    assert held == [150]  # the first bucket waits; the level stays, so from then on
    assert all(judged[k].accepted == {1: y[k]} for k in range(151, 300))


def test_a_drop_to_zero_that_stays_is_a_real_drop():
    y = diurnal(200, np.random.default_rng(1))
    y[120:] = 0.0
    judged = run(ExcursionFilter(8.0), {1: y})
    assert excursion_steps(judged) == []
    assert [k for k, j in enumerate(judged) if j.held] == [120]
    assert all(judged[k].accepted == {1: 0.0} for k in range(121, 200))
    # and when it comes back: held once, then accepted as the next shift
    y2 = np.r_[y, diurnal(50, np.random.default_rng(2))]
    judged = run(ExcursionFilter(8.0), {1: y2})
    assert [k for k, j in enumerate(judged) if j.held] == [120, 200]
    assert excursion_steps(judged) == []


def test_a_zero_then_a_catch_up_spike_are_both_excursions():
    """Without a capacity, a missed read (0) and its catch-up (x5) in a row."""
    y = np.full(120, 4e8) * (1 + 0.02 * np.random.default_rng(0).standard_normal(120))
    y[60], y[61] = 0.0, 2e9
    judged = run(ExcursionFilter(8.0), {1: y})
    assert excursion_steps(judged) == [60, 61]
    assert [k for k, j in enumerate(judged) if j.held] == [60, 61]


def test_a_suspect_waits_across_a_gap_and_gaps_decide_nothing():
    y = diurnal(150, np.random.default_rng(3), period=288)
    y[80] = 0.0
    y[81:91] = np.nan  # no samples for 10 buckets
    y[120:130] = np.nan  # and another gap, without a suspect
    judged = run(ExcursionFilter(8.0), {1: y})
    assert excursion_steps(judged) == [80]
    assert judged[91].accepted == {1: y[91]} and judged[91].excursions
    assert all(judged[k].accepted == {} and not judged[k].held for k in range(120, 130))
    assert [k for k, j in enumerate(judged) if j.held] == [80]


def test_links_are_judged_apart_and_new_links_start_accepted():
    rng = np.random.default_rng(4)
    a, b = diurnal(100, rng), diurnal(100, rng)
    a[50] = 0.0
    b[:40] = np.nan  # b reports from step 40: its first values are taken as they come
    b[40] = 1e12
    judged = run(ExcursionFilter(8.0), {1: a, 2: b})
    assert [(e.link_id, e.bucket) for j in judged for e in j.excursions] == [(1, t(50))]
    assert judged[40].accepted[2] == 1e12 and judged[50].held == [1]


@pytest.mark.parametrize("seed", range(3))
def test_rebuild_from_stored_buckets_restores_the_state(seed):
    """A restart: a filter rebuilt from the last buckets judges what follows as the one
    that ran all along, even with a suspect held at the restart."""
    rng = np.random.default_rng(seed)
    series = {i: diurnal(400, rng) for i in range(4)}
    series[0][299] = 0.0  # held at the restart, reverts after it
    series[1][299] *= 1000
    series[2][299:] *= 3  # a shift under way at the restart
    series[3][250:260] = np.nan
    whole = ExcursionFilter(8.0)
    before = run(whole, {i: y[:300] for i, y in series.items()})
    after = run(whole, {i: y[300:] for i, y in series.items()}, start=300)

    rebuilt = ExcursionFilter(8.0)
    history = [
        (j, {i: float(y[k]) for i, y in series.items() if np.isfinite(y[k])})
        for j, k in ((t(k), k) for k in range(180, 300))
    ]
    rebuilt.rebuild(history)
    again = run(rebuilt, {i: y[300:] for i, y in series.items()}, start=300)
    assert before[-1].held == [0, 1, 2]
    assert [(j.accepted, j.excursions, j.held) for j in again] == [
        (j.accepted, j.excursions, j.held) for j in after
    ]
    assert excursion_steps(after) == [299, 299]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="factor"):
        ExcursionFilter(1.0)
    with pytest.raises(ValueError, match="window"):
        ExcursionFilter(8.0, window=10, min_history=20)


# --- on a live engine ---------------------------------------------------------------------

STEP = 60
PERIOD = 96  # a short "day" keeps the test fast
N_STEPS = 300
CAPACITY = 1e9
GLITCHES = range(100, N_STEPS - 1, 10)  # a 0 then a 2e9, every 10 steps
GAP = range(160, 170)  # no samples at all
SHIFT, DROP = 200, 250  # x3 that stays; to 0 and stays


def at(k: int) -> datetime:
    return T0 + timedelta(seconds=STEP * k)


def network(seed: int) -> dict[str, np.ndarray]:
    """Each link one case of the issue; NaN: no sample."""
    rng = np.random.default_rng(seed)
    flat = lambda: 4e8 * (1 + 0.02 * rng.standard_normal(N_STEPS))  # noqa: E731
    links = {
        "cap>spike": flat(),
        "cap>glitch": flat(),
        "spike>x": diurnal(N_STEPS, rng),
        "shift>x": diurnal(N_STEPS, rng) * 2,
        "drop>x": diurnal(N_STEPS, rng) / 2,
        "gap>x": diurnal(N_STEPS, rng) * 3,
        "calm>x": diurnal(N_STEPS, rng),
    }
    links["cap>spike"][150] = 1e14  # a counter reset after a collector's wrap correction
    for k in GLITCHES:
        links["cap>glitch"][k], links["cap>glitch"][k + 1] = 0.0, 2e9  # missed read, catch-up
    links["spike>x"][150] *= 1000
    links["spike>x"][180] = 0.0
    links["shift>x"][SHIFT:] *= 3
    links["drop>x"][DROP:] = 0.0
    links["gap>x"][list(GAP)] = np.nan
    return links


def push(client, token: str, links: dict[str, np.ndarray], steps: range) -> int:
    """Pushed as a collector would, 5,000 samples a request; returns the quarantined."""
    batch = [
        {"link": name, "ts": at(k).isoformat(), "value": float(y[k])}
        for k in steps
        for name, y in links.items()
        if np.isfinite(y[k])
    ]
    quarantined = 0
    for i in range(0, len(batch), 5000):
        r = client.post(
            "/api/v1/telemetry", json={"samples": batch[i : i + 5000]}, headers=auth(token)
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(batch[i : i + 5000])
        quarantined += r.json()["quarantined"]
    return quarantined


class Clock:
    def __init__(self, step: int) -> None:
        self.now = at(step) + timedelta(seconds=20)

    def __call__(self) -> datetime:
        return self.now


def live_engine(url: str, clock: Clock, seed: int = 0, **kw) -> LiveEngine:
    cfg = EngineConfig(step_seconds=STEP, season_steps=PERIOD, horizon=6, seed=seed, **kw)
    return LiveEngine(url, cfg, clock=clock)


def qualities(db, link: str) -> dict[int, str]:
    """Step -> quality of the link's samples that are not ok."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.ts, s.quality FROM sample s JOIN link l ON l.id = s.link_id"
                " WHERE l.name = :n AND s.quality <> 'ok' ORDER BY s.ts"
            ),
            {"n": link},
        ).all()
    return {int((ts - T0) / timedelta(seconds=STEP)): q for ts, q in rows}


def alerts_on(db, link: str, since: int = PERIOD) -> list[tuple[str, datetime]]:
    """(kind, onset) of the alerts naming ``link`` with onset after the first season (the
    models' warm-up)."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.kind, a.onset FROM alert a LEFT JOIN link l ON l.id = a.link_id"
                " WHERE (l.name = :n OR :n = ANY(a.links)) AND a.onset >= :t ORDER BY a.onset"
            ),
            {"n": link, "t": at(since)},
        ).all()
    return [(k, o) for k, o in rows]


@pytest.mark.parametrize("seed", [0, 1])
def test_each_case_of_the_issue_on_a_live_engine(seed, client, tokens, settings, clean_db):
    """The network pushed (capacities set first), the engine ticked over all of it once,
    then each case checked on its link."""
    links = network(seed)
    h = auth(tokens["admin"])
    for name in ("cap>spike", "cap>glitch"):
        r = client.post("/api/v1/links", json={"name": name, "capacity_bps": CAPACITY}, headers=h)
        assert r.status_code == 201, r.text
    quarantined = push(client, tokens["write"], links, range(N_STEPS))
    eng = live_engine(settings.database_url, Clock(N_STEPS), seed=seed)
    assert eng.try_lead()
    assert eng.tick().buckets == N_STEPS
    eng.release()
    read = auth(tokens["read"])

    def samples(link: str, start: int, end: int) -> list[dict]:
        params = {"start": at(start).isoformat(), "end": at(end).isoformat()}
        r = client.get(f"/api/v1/links/{link}/samples", params=params, headers=read)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    # Over the line rate: stored as sent, marked at ingest, counted in the answer, and fed
    # to nothing: no capacity alert, no drift alert, no error scored against it.
    assert quarantined == 1 + len(GLITCHES)
    assert qualities(clean_db, "cap>spike") == {150: "over_line_rate"}
    assert [(r["value_bps"], r["quality"]) for r in samples("cap>spike", 149, 152)] == [
        (links["cap>spike"][149], "ok"),
        (1e14, "over_line_rate"),
        (links["cap>spike"][151], "ok"),
    ]
    assert alerts_on(clean_db, "cap>spike", since=0) == []
    assert 150 not in error_steps(clean_db, "cap>spike")

    # Glitch pairs every 10 steps: the 0 (a missed read; below the capacity, so judged by
    # the engine) is an excursion, the 2e9 catch-up is over the line rate.
    assert qualities(clean_db, "cap>glitch") == {k: "excursion" for k in GLITCHES} | {
        k + 1: "over_line_rate" for k in GLITCHES
    }
    assert alerts_on(clean_db, "cap>glitch", since=0) == []
    low, high = actual_range(clean_db, "cap>glitch")
    assert 3e8 < low and high < 5e8  # errors scored only against the real load

    # Without a capacity: a spike x1000 and a 0, one step each, are excursions.
    assert qualities(clean_db, "spike>x") == {150: "excursion", 180: "excursion"}
    assert alerts_on(clean_db, "spike>x") == []
    assert {150, 180}.isdisjoint(error_steps(clean_db, "spike>x"))
    (zero,) = samples("spike>x", 180, 181)
    assert zero == {
        "ts": at(180).isoformat().replace("+00:00", "Z"),
        "value_bps": 0.0,
        "quality": "excursion",
    }

    # A x3 shift and a drop to 0 that stay are learned and alert as before; the first
    # bucket of the new level waited for the next, from there on it is learned.
    for link, when in (("shift>x", SHIFT), ("drop>x", DROP)):
        assert qualities(clean_db, link) == {}
        onsets = [o for kind, o in alerts_on(clean_db, link) if kind in ("drift", "failure")]
        assert onsets and at(when - 2) <= onsets[0] <= at(when + 10), (link, onsets)
        steps = error_steps(clean_db, link)
        assert when not in steps and set(range(when + 1, N_STEPS)) <= steps

    # A gap in reporting: no alert, and errors only for the buckets that were observed.
    assert alerts_on(clean_db, "gap>x") == []
    assert qualities(clean_db, "gap>x") == {}
    assert error_steps(clean_db, "gap>x") == set(range(1, N_STEPS)) - set(GAP)
    assert alerts_on(clean_db, "calm>x") == []


def actual_range(db, link: str) -> tuple[float, float]:
    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT min(actual_bps), max(actual_bps) FROM forecast_error"
                " WHERE link_id = (SELECT id FROM link WHERE name = :n)"
            ),
            {"n": link},
        ).one()
    return float(row[0]), float(row[1])


def error_steps(db, link: str) -> set[int]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT e.ts FROM forecast_error e JOIN link l ON l.id = e.link_id"
                " WHERE l.name = :n"
            ),
            {"n": link},
        ).all()
    return {int((r[0] - T0) / timedelta(seconds=STEP)) for r in rows}


def test_a_suspect_held_at_a_restart_is_judged_after_it(client, tokens, settings, clean_db):
    """The filter's state is rebuilt from the stored buckets: a bucket held when the
    engine died is marked once the next one, processed by its successor, reverts."""
    rng = np.random.default_rng(5)
    links = {"spike>x": diurnal(200, rng), "shift>x": diurnal(200, rng)}
    links["spike>x"][149] = 0.0
    links["shift>x"][149:] *= 3
    push(client, tokens["write"], links, range(200))
    clock = Clock(150)  # buckets 0..149: the last one held on both links
    first = live_engine(settings.database_url, clock, checkpoint_every=10_000)
    assert first.try_lead()
    first.tick()
    first.checkpoint()
    first._lock_conn.close()  # dies: nothing more saved
    first._db.dispose()
    assert qualities(clean_db, "spike>x") == {}

    clock.now = at(200) + timedelta(seconds=20)
    second = live_engine(settings.database_url, clock, checkpoint_every=10_000)
    assert second.try_lead()
    assert second.tick().buckets == 50
    second.release()
    assert qualities(clean_db, "spike>x") == {149: "excursion"}
    assert qualities(clean_db, "shift>x") == {}  # it stayed: a shift, learned from 150 on
    assert set(range(150, 200)) <= error_steps(clean_db, "shift>x")
