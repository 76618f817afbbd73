"""Time to convergence (forecaster.metrics.convergence) on the shapes it must get right:
a link whose load triples at the failure, models that are back quickly or slowly, and
models that are not back."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.metrics import (
    TTC_HOLD_STEPS,
    TTC_MIN_POST_STEPS,
    TTC_WINDOW_STEPS,
    ConvergenceStatus,
    convergence,
    forward_mean,
    step_ape,
    time_to_convergence,
)

PRE, POST, LINKS = 60, 120, 3
NOISE = 0.02  # the models' usual error, 2 % of the load


def loads(seed: int = 0) -> np.ndarray:
    """(PRE + POST, LINKS) loads in bit/s; every link's level triples at the failure."""
    rng = np.random.default_rng(seed)
    t = np.arange(PRE + POST)[:, None]
    y = 1e9 * (1 + np.arange(LINKS)) * (2 + np.sin(2 * np.pi * t / 96 + np.arange(LINKS)))
    y[PRE:] *= 3
    return y * (1 + 0.01 * rng.standard_normal(y.shape))


def model_back_after(y: np.ndarray, steps: int, seed: int = 1) -> np.ndarray:
    """Forecasts off by ~2 % of the load, except for ``steps`` steps after the failure
    where they still forecast the old level."""
    rng = np.random.default_rng(seed)
    f = y * (1 + NOISE * rng.standard_normal(y.shape))
    f[PRE : PRE + steps] = y[PRE : PRE + steps] / 3
    return f


def test_level_triples_error_spikes_two_steps_then_back_converges() -> None:
    y = loads()
    e = step_ape(y, model_back_after(y, 2))
    pre = float(np.mean(e[:PRE]))
    assert e[PRE] > 10 * pre and e[PRE + 1] > 10 * pre  # the spike
    assert np.mean(e[PRE + 2 :]) == pytest.approx(pre, rel=0.3)  # back, in %
    c = convergence(e, PRE)
    assert c.status is ConvergenceStatus.CONVERGED
    assert c.ttc_steps is not None and c.ttc_steps <= 3
    assert time_to_convergence(e, PRE) == c.ttc_steps


def test_persistence_on_a_tripled_link_is_back_after_one_step() -> None:
    y = loads()
    f = np.r_[y[:1], y[:-1]]  # the last value
    c = convergence(step_ape(y, f), PRE)
    assert c.status is ConvergenceStatus.CONVERGED and c.ttc_steps is not None
    assert c.ttc_steps <= 2


def test_ttc_tells_a_model_back_after_one_step_from_one_back_after_eleven() -> None:
    y = loads()
    fast = convergence(step_ape(y, model_back_after(y, 1)), PRE).ttc_steps
    slow = convergence(step_ape(y, model_back_after(y, 11)), PRE).ttc_steps
    assert fast is not None and slow is not None
    assert fast <= 1 and 9 <= slow <= 12


def test_an_error_that_stays_high_has_not_converged() -> None:
    y = loads()
    f = model_back_after(y, 0)
    f[PRE:] = y[PRE:] * (1 + 0.1 * np.random.default_rng(2).standard_normal((POST, LINKS)))
    c = convergence(step_ape(y, f), PRE)
    assert c.status is ConvergenceStatus.NOT_CONVERGED and c.ttc_steps is None
    assert c.post_steps == POST


def test_a_brief_dip_is_not_convergence_but_a_spike_after_the_hold_does_not_undo_it() -> None:
    base = np.full(PRE, 0.02)
    dip = np.r_[base, np.full(10, 0.3), np.full(15, 0.02), np.full(40, 0.3), np.full(80, 0.02)]
    assert convergence(dip, PRE).ttc_steps == 65  # the dip at 10 does not hold
    late = np.r_[base, np.full(5, 0.3), np.full(TTC_HOLD_STEPS + TTC_WINDOW_STEPS, 0.02)]
    late = np.r_[late, np.full(20, 0.5), np.full(30, 0.02)]
    assert convergence(late, PRE).ttc_steps == 5  # not erased by the later spike


def test_slack_lets_a_near_perfect_model_converge() -> None:
    e = np.r_[np.zeros(PRE), 0.5, np.full(POST, 0.004)]
    c = convergence(e, PRE)
    assert c.baseline == 0 and c.status is ConvergenceStatus.CONVERGED and c.ttc_steps == 1


def test_too_little_data_is_pending_or_without_baseline() -> None:
    short = np.r_[np.full(PRE, 0.02), np.full(TTC_MIN_POST_STEPS - 1, 0.02)]
    assert convergence(short, PRE).status is ConvergenceStatus.PENDING
    trailing_gap = np.r_[short, np.full(50, np.nan)]  # rows not there yet
    assert convergence(trailing_gap, PRE).status is ConvergenceStatus.PENDING
    c = convergence(np.r_[np.full(5, 0.02), np.full(POST, 0.02)], 5)
    assert c.status is ConvergenceStatus.NO_BASELINE and np.isnan(c.baseline)


def test_missing_steps_are_gaps_not_errors() -> None:
    e = np.r_[np.full(PRE, 0.02), np.full(3, 0.5), np.full(POST, 0.02)]
    e[PRE + 20 : PRE + 25] = np.nan  # the engine missed five buckets
    e[10:15] = np.nan
    assert convergence(e, PRE).ttc_steps == 3


def test_forward_mean_and_step_ape_ignore_nan() -> None:
    assert np.allclose(forward_mean([1.0, np.nan, 3.0], 2), [1.0, 3.0, 3.0])
    y = np.array([[100.0, np.nan], [0.0, 10.0]])
    f = np.array([[90.0, 5.0], [1.0, 11.0]])
    # link 0's floor: 5 % of its mean load (50) = 2.5; link 1 absent at step 0
    assert np.allclose(step_ape(y, f), [0.1, (1 / 2.5 + 0.1) / 2])


@pytest.mark.parametrize(
    "kw", [{"window": 0}, {"hold": -1}, {"tolerance": 0.0}, {"baseline_steps": 0}]
)
def test_bad_options_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        convergence(np.zeros(10), 5, **kw)
