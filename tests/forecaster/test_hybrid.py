"""The hybrid at a failure's jump: the ranking of the members that follow it survives,
and a member that misses it loses its weight at the jump itself, for every horizon."""

from __future__ import annotations

import numpy as np

from forecaster import HybridForecaster, PersistenceForecaster
from forecaster.base import Forecaster, check_observation
from forecaster.buffers import PendingForecasts

H = 3  # horizon: the h-step weights must drop the stale member at the jump too
JUMP = 150  # the level goes from 100 to 200 at this step (noise 1)


class Stale(Forecaster):
    """Keeps forecasting the level it saw first (a model that missed the failure)."""

    name = "stale"

    def __init__(self, n_links: int, horizon: int) -> None:
        self.horizon = horizon
        self._level: np.ndarray | None = None
        self._n = n_links

    @property
    def n_links(self) -> int:
        return self._n

    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        values, _ = check_observation(y, mask, self._n)
        if self._level is None:
            self._level = values.copy()

    def forecast(self) -> np.ndarray:
        level = np.zeros(self._n) if self._level is None else self._level
        return np.repeat(level[:, None], self.horizon, axis=1)

    def add_links(self, n: int) -> None:
        raise NotImplementedError


class Biased(PersistenceForecaster):
    """The last value plus 0.7: follows a jump, but worse than persistence throughout."""

    def forecast(self) -> np.ndarray:
        return super().forecast() + 0.7


def _weights(seed: int, shock: float | None) -> dict[str, np.ndarray]:
    """Each member's weight ``(steps, H)`` after each step, on a level of 100 (noise 1)
    that jumps to 200 at :data:`JUMP`."""
    rng = np.random.default_rng(seed)
    hybrid = HybridForecaster(
        {"stale": Stale(1, H), "persistence": PersistenceForecaster(1, H), "biased": Biased(1, H)},
        shock=shock,
    )
    out: dict[str, list[np.ndarray]] = {k: [] for k in hybrid.combine}
    for t in range(JUMP + 2 * H):
        hybrid.observe(np.array([(100.0 if t < JUMP else 200.0) + rng.normal(0.0, 1.0)]))
        for k, w in hybrid.weights().items():
            out[k].append(w[0].copy())
    return {k: np.array(v) for k, v in out.items()}


def test_a_member_that_misses_the_jump_loses_its_weight_at_the_jump() -> None:
    """Before the jump the stale member is the best (error variance 1 against 2 for the
    last value): it has most of the weight. The forecasts issued right after the jump
    must already give it none, at every horizon: it keeps forecasting the old level.
    (Before the shock re-weighting, the capped jump left its weight as it was for one
    more issue at h = 1 and for h more at h; without any cap the jump pulled the weights
    towards equal.) Means over 5 seeds."""
    runs = [_weights(seed, 4.0) for seed in range(5)]
    stale = np.array([r["stale"] for r in runs])  # (seeds, steps, H)
    assert stale[:, JUMP - 1].mean() > 0.6, stale[:, JUMP - 1]
    assert stale[:, JUMP].max() < 0.01, stale[:, JUMP]
    assert stale[:, JUMP:].max() < 0.01
    # no shock handling at all: the stale member keeps weight at the jump
    off = np.array([_weights(seed, None)["stale"] for seed in range(5)])
    assert off[:, JUMP].mean() > 0.05, off[:, JUMP]


def test_the_ranking_of_the_members_that_follow_the_jump_survives_it() -> None:
    """Persistence leads the biased copy before the jump; both follow the jump, so
    persistence's share of their weight stays where it was, at the jump and for the
    H steps after it (whose h-step errors were issued before the jump, off by the whole
    jump for both, and enter capped). Means over 5 seeds."""
    shares = []
    for seed in range(5):
        w = _weights(seed, 4.0)
        p, b = w["persistence"], w["biased"]
        shares.append(p / (p + b))
    share = np.array(shares)  # (seeds, steps, H)
    before = share[:, JUMP - 1].mean(axis=0)
    assert np.all(before > 0.6), before
    for t in range(JUMP, JUMP + H + 1):
        np.testing.assert_allclose(share[:, t].mean(axis=0), before, atol=0.05)


def test_noise_alone_is_no_shock() -> None:
    """No jump: 300 steps of noise around 100 after the first 50. No step is taken for
    a shock (every member's error 5 times its running RMS at once), in any of 5 seeds:
    the re-weighting at a shock does not fire on noise."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        hybrid = HybridForecaster(
            {"stale": Stale(1, H), "persistence": PersistenceForecaster(1, H)}, shock=4.0
        )
        for t in range(350):
            hybrid.observe(np.array([100.0 + rng.normal(0.0, 1.0)]))
            if t >= 50:
                assert hybrid._since[0] == H, (seed, t)
        hybrid.observe(np.array([200.0]))
        assert hybrid._since[0] == 0  # and the jump is one


def test_latest_is_the_forecast_last_stored() -> None:
    p = PendingForecasts(horizon=3, n_links=2)
    assert np.isnan(p.latest()).all()
    for t in range(4):
        new = np.array([[10.0 * t + 1, 10.0 * t + 2, 10.0 * t + 3], [1.0, 2.0, 3.0]])
        p.roll(new)
    np.testing.assert_allclose(p.latest(), new, rtol=1e-3)


def test_state_from_before_the_shock_reweighting_loads() -> None:
    """A pickled hybrid from before the re-weighting (no per-link shock clock, no
    ``change`` threshold) loads with no shock in reach and the default threshold."""
    hybrid = HybridForecaster({"persistence": PersistenceForecaster(2, H)})
    for t in range(5):
        hybrid.observe(np.array([1.0, 2.0]) + t)
    state = hybrid.__getstate__()
    del state["_since"], state["change"]  # what the class had not before f969068
    old = HybridForecaster.__new__(HybridForecaster)
    old.__setstate__(state)
    np.testing.assert_array_equal(old._since, [H, H])
    assert old.change == HybridForecaster({"p": PersistenceForecaster(2, H)}).change
    old.observe(np.array([6.0, 7.0]))
    np.testing.assert_allclose(old.forecast(), hybrid.forecast() + 1.0)
