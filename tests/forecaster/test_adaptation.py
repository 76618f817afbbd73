"""Behaviour under a level shift: a diurnal series whose level triples at step T.

The re-routed traffic that triples the level has the opposite daily phase, so the
shape changes too (a pure rescaling is absorbed by the normalisation alone).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecaster import LiquidForecaster, ModelSuite
from forecaster.metrics import coverage, time_to_convergence

P, N_LINKS, H, T, STEPS = 24, 8, 12, 300, 480
RECOVERY_STEPS = 120  # stated bound: liquid's error back within 1.5x within this many steps


def shifted_series(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)[:, None]
    phase = rng.uniform(0, 2 * np.pi, N_LINKS)
    level = 1e9 * rng.uniform(0.5, 2.0, N_LINKS)
    base = level * (1 + 0.4 * np.sin(2 * np.pi * t / P + phase))
    rerouted = 2 * level * (1 + 0.8 * np.sin(2 * np.pi * t / P + phase + np.pi)) * (t >= T)
    return (base + rerouted) * (1 + 0.01 * rng.standard_normal((STEPS, N_LINKS)))


def ape_per_step(model, ys: np.ndarray, start: int = 0) -> np.ndarray:
    """Mean absolute percentage error (over links and horizons) of forecasts maturing
    at each step; NaN before any forecast matured."""
    issued: list[np.ndarray] = []
    err = np.full(len(ys), np.nan)
    for s in range(start, len(ys)):
        y = ys[s]
        e = [np.abs(issued[-h][:, h - 1] - y) / y for h in range(1, H + 1) if len(issued) >= h]
        if e:
            err[s] = np.mean(e)
        model.observe(y)
        issued = [*issued[-H + 1 :], model.forecast()]
    return err


#: Seeds of the repetitions (series, weights and sampling all change with the seed).
SEEDS = range(10)
#: Steps after the shift from which the error counts as settled.
SETTLED = 100


def _run(seed: int) -> dict[str, np.ndarray]:
    ys = shifted_series(seed)
    model = LiquidForecaster(N_LINKS, H, window=12, season_steps=P, seed=seed)
    pre = ape_per_step(model, ys[:T])
    frozen = LiquidForecaster.from_bytes(model.to_bytes())
    frozen.adapt_steps = 0
    never = LiquidForecaster(N_LINKS, H, window=12, season_steps=P, seed=seed, adapt_steps=0)
    return {
        "liquid": np.r_[pre, ape_per_step(model, ys[T:])],
        "frozen": np.r_[pre, ape_per_step(frozen, ys[T:])],
        "untrained": ape_per_step(never, ys[:T]),
    }


@pytest.fixture(scope="module")
def liquid_runs() -> list[dict[str, np.ndarray]]:
    """One adapting run and its copy frozen at the shift, per seed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic on every machine's core count
    try:
        return [_run(seed) for seed in SEEDS]
    finally:
        torch.set_num_threads(threads)


def test_liquid_recovers_after_the_shift(liquid_runs: list[dict[str, np.ndarray]]) -> None:
    """Measured 45 to 46 steps on seeds 0-4 (stated bound 120)."""
    for seed, run in zip(SEEDS, liquid_runs, strict=True):
        ttc = time_to_convergence(run["liquid"], T, tolerance=1.5, window=20, baseline_steps=100)
        assert ttc is not None and ttc <= RECOVERY_STEPS, (seed, ttc)


def test_online_training_learns_before_the_shift(liquid_runs: list[dict[str, np.ndarray]]) -> None:
    """The same network never trained (its head at initialisation) against the one
    adapted online for ``T`` steps: the last 100 steps before the shift."""
    last = slice(T - 100, T)
    ratios = [
        float(np.nanmean(r["liquid"][last]) / np.nanmean(r["untrained"][last])) for r in liquid_runs
    ]
    assert max(ratios) < 0.7, ratios


def _settled_ratio(run: dict[str, np.ndarray], span: slice) -> float:
    return float(np.nanmean(run["liquid"][span]) / np.nanmean(run["frozen"][span]))


def test_adaptation_beats_the_same_network_frozen_after_a_shift(
    liquid_runs: list[dict[str, np.ndarray]],
) -> None:
    """Adapting through a shift that changes every link's level and daily shape settles
    lower than the same network frozen at the shift, on average and on every seed.

    Issue 9's target, asserted as it is stated, over seeds 0-9: at least 10 % lower on
    average, no seed worse. Measured with the constant learning rate
    (forecaster/liquid.py): 0.72 to 0.96, mean 0.87 (the rate was chosen on seeds 0-2;
    3-9 were run after). The margin for another machine's floating point is what the
    measurement leaves: 0.03 on the mean, 0.04 on the worst seed. Before (a rate
    decaying to a quarter): 0.88 to 1.09, mean 0.98, four seeds worse: it fails. The
    first version, without the gate on windows whose season did not hold, settled 2 to
    4 times above frozen for several seasons: the transition (2nd to 4th season after
    the shift, measured 0.80 to 1.00, mean 0.93) must not be worse on average.
    """
    settled = [_settled_ratio(r, slice(T + SETTLED, None)) for r in liquid_runs]
    assert np.mean(settled) <= 0.90, settled
    assert max(settled) <= 1.0, settled
    transition = [_settled_ratio(r, slice(T + 2 * P, T + 4 * P)) for r in liquid_runs]
    assert np.mean(transition) <= 1.0, transition


@pytest.fixture(scope="module")
def suite_run() -> dict[str, object]:
    ys = shifted_series(seed=1)
    suite = ModelSuite(
        N_LINKS,
        horizon=H,
        season_steps=P,
        retrain_every=48,
        retrain_window=96,
        seed=0,
        liquid_kwargs={"window": 12, "adapt_steps": 1},
        incremental_kwargs={"n_lags": 12, "hidden": 32, "epochs": 2},
    )
    outs, weights = [], {}
    for s, y in enumerate(ys):
        outs.append(suite.step(y))
        if s == T + P - 2:  # the seasonal model still forecasts the old level
            weights["shifted"] = suite._hybrid.weights()
    weights["end"] = suite._hybrid.weights()  # a season later it has caught up
    return {"ys": ys, "outs": outs, "suite": suite, "weights": weights}


def test_hybrid_weights_follow_the_better_member(suite_run: dict[str, object]) -> None:
    outs = suite_run["outs"]
    hybrid = suite_run["suite"]._hybrid
    names = hybrid.combine
    # post-shift error of each member on the 1-step forecasts, from the suite's residuals
    post = slice(T + 10, T + P)
    rmse = {k: np.sqrt(np.nanmean([o.residuals[k][:, 0] ** 2 for o in outs[post]])) for k in names}
    # the seasonal model keeps forecasting the old level for one season: the worst
    assert max(rmse, key=rmse.get) == "seasonal"
    w = suite_run["weights"]["shifted"]
    mean_w = {k: float(w[k][:, 0].mean()) for k in names}
    assert mean_w["seasonal"] < 0.05
    best = min(rmse, key=rmse.get)
    assert mean_w[best] == max(mean_w.values())
    # two seasons after the shift the season-ago values are right again: seasonal
    # wins back weight, and the member with the lowest recent error leads
    end = suite_run["weights"]["end"]
    assert float(end["seasonal"][:, 0].mean()) > 3 * mean_w["seasonal"]
    recent = slice(len(outs) - P, None)
    rmse_end = {
        k: np.sqrt(np.nanmean([o.residuals[k][:, 0] ** 2 for o in outs[recent]])) for k in names
    }
    end_w = {k: float(end[k][:, 0].mean()) for k in names}
    assert max(end_w, key=end_w.get) in sorted(rmse_end, key=rmse_end.get)[:2], (end_w, rmse_end)


def test_intervals_cover_again_after_the_shift(suite_run: dict[str, object]) -> None:
    ys, outs = suite_run["ys"], suite_run["outs"]
    for name in ("liquid", "hybrid", "persistence"):
        # 1-step intervals issued at s cover ys[s + 1]
        lo = np.stack([o.lower[name][:, 0] for o in outs[T + 60 : -1]])
        hi = np.stack([o.upper[name][:, 0] for o in outs[T + 60 : -1]])
        assert coverage(ys[T + 61 :], lo, hi) >= 0.85, name
        # right after the shift they did miss
        lo0 = np.stack([o.lower[name][:, 0] for o in outs[T - 1 : T + 3]])
        hi0 = np.stack([o.upper[name][:, 0] for o in outs[T - 1 : T + 3]])
        assert coverage(ys[T : T + 4], lo0, hi0) < 0.5, name


def test_level_shift_raises_drift_and_reroute(suite_run: dict[str, object]) -> None:
    outs = suite_run["outs"]
    level = [e for o in outs for e in o.events if e.kind == "level" and e.step >= T]
    assert len({e.link for e in level if e.step < T + 10}) >= N_LINKS // 2
    # the 24-step "day" is fast for the ~50-step reference, so onsets are rough here
    assert all(T - P // 2 <= e.onset <= e.step for e in level if e.step < T + 10)
    assert all(e.magnitude > 0.5 for e in level if e.step < T + 10)
    reroutes = [o.reroute for o in outs if o.reroute is not None]
    assert reroutes and reroutes[0].step < T + 10 and len(reroutes[0].links) >= 3
