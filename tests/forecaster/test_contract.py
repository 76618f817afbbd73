"""One contract test run over every model, plus shape, NaN and round-trip checks."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import (
    MODEL_NAMES,
    Forecaster,
    HybridForecaster,
    IncrementalForecaster,
    LiquidForecaster,
    PersistenceForecaster,
    SeasonalForecaster,
)

H = 4
SEASON = 16


def _members(n: int, seed: int) -> dict[str, Forecaster]:
    return {
        "liquid": LiquidForecaster(n, H, units=8, window=6, season_steps=SEASON, seed=seed),
        "incremental": IncrementalForecaster(
            n, H, n_lags=6, hidden=16, retrain_every=20, retrain_window=24, epochs=1, seed=seed
        ),
        "persistence": PersistenceForecaster(n, H),
        "seasonal": SeasonalForecaster(n, H, season_steps=SEASON),
    }


def make(name: str, n: int = 5, seed: int = 0) -> Forecaster:
    if name == "hybrid":
        return HybridForecaster(_members(n, seed))
    return _members(n, seed)[name]


def series(n: int, steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    level = 1e9 * (1 + np.arange(n))
    y = level * (1.5 + np.sin(2 * np.pi * t / SEASON + np.arange(n)))
    return y * (1 + 0.02 * rng.standard_normal((steps, n)))


def run(model: Forecaster, ys: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    out = []
    for k, y in enumerate(ys):
        model.observe(y, None if masks is None else masks[k])
        out.append(model.forecast())
    return np.stack(out)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contract(name: str) -> None:
    n, ys = 5, series(5, 50)
    model = make(name, n)
    assert model.name == name
    assert model.n_links == n and model.horizon == H
    # inputs are not mutated
    masks = np.ones_like(ys, dtype=bool)
    masks[10:14, 1] = False
    ys_copy, masks_copy = ys.copy(), masks.copy()
    got = run(model, ys, masks)
    np.testing.assert_array_equal(ys, ys_copy)
    np.testing.assert_array_equal(masks, masks_copy)
    # shapes, dtype, finite
    assert got.shape == (50, n, H) and got.dtype == np.float64
    assert np.isfinite(got).all()
    # forecast() has no side effects
    np.testing.assert_array_equal(model.forecast(), model.forecast())
    # same seed, same output
    np.testing.assert_array_equal(run(make(name, n), ys, masks), got)
    # save / load: identical forecasts now, and after more observations
    clone = type(model).from_bytes(model.to_bytes())
    np.testing.assert_array_equal(clone.forecast(), model.forecast())
    more = series(n, 30, seed=1)
    np.testing.assert_array_equal(run(clone, more), run(model, more))
    # add_links: cold links get finite forecasts, old links keep theirs
    before = model.forecast()
    model.add_links(3)
    after = model.forecast()
    assert after.shape == (n + 3, H) and np.isfinite(after).all()
    # (allclose: a float32 matmul may round differently for another batch size)
    np.testing.assert_allclose(after[:n], before, rtol=1e-5)
    grown = run(model, series(n + 3, 25, seed=2))
    assert np.isfinite(grown).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["constant", "zeros", "gaps"])
def test_no_nan(name: str, kind: str) -> None:
    n, steps = 4, 45
    ys = {
        "constant": np.full((steps, n), 5e9),
        "zeros": np.zeros((steps, n)),
        "gaps": series(n, steps),
    }[kind]
    if kind == "gaps":
        ys[5:12, 0] = np.nan  # a gap
        ys[:, 1] = np.nan  # a link never seen
        ys[20:40, 2] = np.nan  # a long gap
    got = run(make(name, n), ys)
    assert np.isfinite(got).all()
    assert (got >= 0).all()
    if kind == "zeros" and name in ("persistence", "seasonal"):
        assert (got == 0).all()


def test_wrong_shape_is_rejected() -> None:
    model = make("persistence", 3)
    with pytest.raises(ValueError, match="shape"):
        model.observe(np.zeros(4))


def test_from_bytes_checks_the_type() -> None:
    with pytest.raises(TypeError):
        PersistenceForecaster.from_bytes(make("seasonal").to_bytes())


def test_seasonal_uses_one_season_earlier() -> None:
    model = SeasonalForecaster(1, horizon=3, season_steps=5)
    for v in range(1, 11):  # 1..10
        model.observe(np.array([float(v) * 1e9]))
    # t+1..t+3 are one season after the values 6, 7, 8
    np.testing.assert_allclose(model.forecast()[0], [6e9, 7e9, 8e9], rtol=1e-3)


def test_incremental_is_frozen_between_retrains() -> None:
    model = make("incremental")
    assert isinstance(model, IncrementalForecaster)
    model.retrain_every = None
    run(model, series(5, 30))
    assert model.retrain()
    weights = [p.detach().clone() for p in model._net.parameters()]
    run(model, series(5, 30, seed=3))
    for before, after in zip(weights, model._net.parameters(), strict=True):
        assert torch_equal(before, after)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())
