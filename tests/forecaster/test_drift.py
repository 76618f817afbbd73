"""Level drift on diurnal series: a daily cycle is not a level shift, a re-route is.

The series is the live engine test's: 8 links ``1e9 (1 + l) (2 + sin(2 pi k / P + l))``
with 2% multiplicative noise; at ``T`` links 0-3 triple and link 7 goes to zero.
Magnitudes are checked as relative changes (``+2.0`` for x3, ``-1.0`` for zero).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from forecaster import DriftMonitor, ModelSuite

P, N_LINKS, T = 96, 8, 300
SHIFTED = {0: 2.0, 1: 2.0, 2: 2.0, 3: 2.0, 7: -1.0}  # link -> true relative change


def diurnal(steps: int, period: int = P, seed: int = 0, shift_at: int | None = None):
    rng = np.random.default_rng(seed)
    k = np.arange(steps)[:, None]
    link = np.arange(N_LINKS)[None, :]
    y = 1e9 * (1 + link) * (2 + np.sin(2 * np.pi * k / period + link))
    y = y * (1 + 0.02 * rng.standard_normal((steps, N_LINKS)))
    if shift_at is not None:
        y[shift_at:, :4] *= 3.0
        y[shift_at:, 7] = 0.0
    return y


def run(mon: DriftMonitor, ys: np.ndarray, start: int = 0, period: int = P):
    """Feed ``ys[start:]`` with the loads one season earlier; (level events, re-routes)."""
    level, reroutes = [], []
    ones, nan = np.ones(N_LINKS, bool), np.full(N_LINKS, np.nan)
    for t in range(start, len(ys)):
        ago = ys[t - period] if t >= period else nan
        events, reroute, _ = mon.update(t, ys[t], ones, nan, seasonal=ago)
        level += [e for e in events if e.kind == "level"]
        reroutes += [reroute] if reroute is not None else []
    return level, reroutes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_daily_cycle_raises_no_level_event(seed: int) -> None:
    level, reroutes = run(DriftMonitor(N_LINKS, season_steps=P), diurnal(4 * P, seed=seed))
    assert [e for e in level if e.step >= P] == []
    assert [r for r in reroutes if r.step >= P] == []


def test_ewma_reference_fires_on_the_daily_cycle() -> None:
    """The non-seasonal reference (``season_steps=None``) is what cried wolf."""
    level, _ = run(DriftMonitor(N_LINKS), diurnal(4 * P))
    assert len([e for e in level if e.step >= P]) >= N_LINKS  # ~2 per link and season


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reroute_is_detected_at_its_onset(seed: int) -> None:
    # 7 seasons: the era boundary (T + P, where the value a season back is post-shift)
    # must not raise anything either
    level, reroutes = run(
        DriftMonitor(N_LINKS, season_steps=P), diurnal(7 * P, seed=seed, shift_at=T)
    )
    after = [e for e in level if e.step >= T]
    assert [e for e in level if P <= e.step < T] == []
    assert {e.link for e in after} == set(SHIFTED)  # unshifted links: nothing
    for e in after:
        assert T <= e.step < T + 10, e
        assert abs(e.onset - T) <= 3, e
        true = SHIFTED[e.link]
        assert abs(e.magnitude - true) <= 0.3 * abs(true), e
    assert len(after) == len(SHIFTED)  # one event per link, none a season later
    late = [r for r in reroutes if r.step >= P]
    assert len(late) == 1
    assert len(set(late[0].links) & set(SHIFTED)) >= 3
    assert set(late[0].links) <= set(SHIFTED)
    assert abs(late[0].onset - T) <= 3


def test_halving_and_repair() -> None:
    ys = diurnal(7 * P, shift_at=T)
    ys[T:, 5] *= 0.5
    back = T + 150
    ys[back:, 7] = diurnal(7 * P)[back:, 7]
    level, _ = run(DriftMonitor(N_LINKS, season_steps=P), ys)
    half = [e for e in level if e.link == 5 and e.step >= P]
    assert len(half) == 1 and half[0].step < T + 10 and abs(half[0].onset - T) <= 3
    assert half[0].magnitude == pytest.approx(-0.5, abs=0.15)
    repaired = [e for e in level if e.link == 7 and e.step > T + 10]
    assert len(repaired) == 1 and abs(repaired[0].onset - back) <= 3
    assert repaired[0].magnitude > 10  # from (almost) nothing


def test_state_round_trips_mid_run() -> None:
    ys = diurnal(5 * P, shift_at=T)
    mon = DriftMonitor(N_LINKS, season_steps=P)
    run(mon, ys[: T - 5])
    copy = pickle.loads(pickle.dumps(mon))
    a = run(mon, ys, start=T - 5)
    b = run(copy, ys, start=T - 5)
    assert a == b and a[0]


def test_old_checkpoint_loads_as_the_ewma_reference() -> None:
    mon = DriftMonitor(N_LINKS)
    state = dict(mon.__dict__)
    for k in ("season_steps", "_eras", "_acc_y", "_acc_r", "_noise", "_warm_from"):
        state.pop(k)
    old = DriftMonitor.__new__(DriftMonitor)
    old.__setstate__(state)
    assert old.season_steps is None
    run(old, diurnal(P + 10))


def test_seasonal_monitor_needs_the_reference() -> None:
    mon = DriftMonitor(2, season_steps=4)
    with pytest.raises(ValueError, match="season"):
        mon.update(0, np.ones(2), np.ones(2, bool), np.full(2, np.nan))


def test_suite_feeds_the_season_ago_loads() -> None:
    period = 16
    suite = ModelSuite(
        N_LINKS,
        horizon=4,
        season_steps=period,
        retrain_every=None,
        retrain_window=32,
        seed=0,
        liquid_kwargs={"window": 8, "adapt_steps": 1},
        incremental_kwargs={"n_lags": 8, "hidden": 8, "epochs": 1},
    )
    ys = diurnal(6 * period, period=period, shift_at=4 * period)
    level = []
    for y in ys:
        level += [e for e in suite.step(y).events if e.kind == "level"]
    assert [e for e in level if period <= e.step < 4 * period] == []
    assert {e.link for e in level if e.step >= 4 * period} == set(SHIFTED)
    assert all(abs(e.onset - 4 * period) <= 3 for e in level if e.step >= 4 * period)
    restored = ModelSuite.from_bytes(suite.to_bytes())
    assert restored._drift.season_steps == period
