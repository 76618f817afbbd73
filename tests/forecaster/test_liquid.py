"""The liquid model's training windows against what it saw live."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import LiquidForecaster

P, H, W, N = 30, 4, 6, 5


def test_replayed_window_has_the_features_seen_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed window ending ``h`` steps ago is fed what the live path computed then
    (same phase, same lags, same season offsets), up to the per-link scale, which
    the replay takes from today, and the float16 history it reads (5e-4 of the level,
    some 0.01 to 0.03 of a scale)."""
    rng = np.random.default_rng(3)
    model = LiquidForecaster(N, H, units=8, window=W, season_steps=P, adapt_steps=0, seed=0)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    live = model._live_features

    def record(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        x = live(values, observed)
        seen.append((x, model._scale.copy(), np.zeros(0)))
        return x

    monkeypatch.setattr(model, "_live_features", record)
    t = np.arange(4 * P)[:, None]
    ys = 1e9 * (2 + np.sin(2 * np.pi * t / P + np.arange(N))) * (1 + 0.01 * rng.random((4 * P, N)))
    contexts = []
    for y in ys:
        model.observe(y)
        contexts.append((model._ctx.copy(), model._scale.copy()))

    links = np.arange(N)
    for ends in (0, 3):
        x, ctx, target, tmask = model._replay_batch(links, np.full(N, ends))
        step = len(ys) - 1 - H - ends  # the window's last input step
        x_live, s_x, _ = seen[step]
        ctx_live, s_ctx = contexts[step]
        now = model._scale
        last = x.numpy()[:, -1, :]
        np.testing.assert_allclose(last[:, 1:], x_live[:, 1:], atol=1e-6)  # obs, gap, phase
        np.testing.assert_allclose(last[:, 0], x_live[:, 0] * s_x / now, atol=0.03)
        c = ctx.numpy()
        np.testing.assert_allclose(c[:, -1], ctx_live[:, -1])  # season known
        ahead = ctx_live[:, :H] * (s_ctx / now)[:, None]
        np.testing.assert_allclose(c[:, :H], ahead, rtol=0.01, atol=0.03)
        # targets: the changes that followed, in today's scale
        want = (ys[step + 1 : step + 1 + H] - ys[step]).T / now[:, None]
        assert bool(tmask.all())
        np.testing.assert_allclose(target.numpy(), want, rtol=0.01, atol=0.03)


def test_a_checkpoint_from_before_the_constant_rate_takes_it() -> None:
    """A model pickled when the rate decayed by default (and one from before the floor
    existed) loads, forecasts the same, and learns at the full rate from then on."""
    rng = np.random.default_rng(0)
    m = LiquidForecaster(n_links=2, horizon=4, units=8, window=8, season_steps=12, seed=0)
    m.lr_decay_seasons = 1.0  # what every checkpoint of that time held
    for _ in range(60):
        m.observe(1e9 + 1e7 * rng.standard_normal(2))
    assert m._opt.param_groups[0]["lr"] < m.lr  # decayed
    before = m.forecast()
    del m._constant_rate_era, m.lr_floor  # attributes such a checkpoint lacks
    old = LiquidForecaster.from_bytes(m.to_bytes())
    np.testing.assert_array_equal(old.forecast(), before)
    assert old.lr_decay_seasons is None and old.lr_floor == 0.25
    old.observe(1e9 + 1e7 * rng.standard_normal(2))
    assert old._opt.param_groups[0]["lr"] == old.lr
    # a model made now keeps what it was given through a save and load
    kept = LiquidForecaster(n_links=2, horizon=4, season_steps=12, lr_decay_seasons=2.0)
    assert LiquidForecaster.from_bytes(kept.to_bytes()).lr_decay_seasons == 2.0
