"""The error aligned at an event (forecaster.aligned) on a link whose load tripled."""

from __future__ import annotations

from datetime import timedelta

from forecaster.aligned import aligned_errors
from forecaster.metrics import ConvergenceStatus
from tests.factories import BACK_AFTER, T0, tripled_error_rows

MODELS = {"persistence", *BACK_AFTER}


def test_every_model_converges_on_a_tripled_link_in_about_its_own_steps() -> None:
    out = aligned_errors(tripled_error_rows(), t0=T0, step_seconds=60, before=60)
    assert out.affected == ["s0>t0", "s1>t1"]
    assert set(out.ttc_steps) == MODELS
    assert all(c.status is ConvergenceStatus.CONVERGED for c in out.convergence.values())
    assert out.ttc_steps["persistence"] is not None and out.ttc_steps["persistence"] <= 2
    for model, steps in BACK_AFTER.items():
        ttc = out.ttc_steps[model]
        assert ttc is not None and steps - 2 <= ttc <= steps, (model, ttc)
    # On the current load the error is back at its pre-failure percentage; on the old
    # scale (the pre-failure mean) it stays about three times higher.
    liquid = [r for r in out.rows if r["model"] == "liquid"]
    before = [r for r in liquid if int(r["offset_steps"]) < 0]
    after = [r for r in liquid if int(r["offset_steps"]) >= 20]

    def mean(rows: list, key: str) -> float:
        return sum(float(r[key]) for r in rows) / len(rows)

    assert 0.5 < mean(after, "ape") / mean(before, "ape") < 1.5
    assert mean(after, "rel_error") / mean(before, "rel_error") > 2


def test_missing_rows_leave_gaps_and_ttc_counts_steps() -> None:
    rows = tripled_error_rows()
    gap = {T0 + timedelta(minutes=m) for m in (-30, -29, 1, 2, 3, 40, 41)}
    out = aligned_errors([r for r in rows if r["ts"] not in gap], t0=T0, step_seconds=60, before=60)
    full = aligned_errors(rows, t0=T0, step_seconds=60, before=60)
    assert out.ttc_steps["incremental"] == full.ttc_steps["incremental"]
    assert {int(r["offset_steps"]) for r in out.rows} == set(range(-60, 120)) - {
        -30,
        -29,
        1,
        2,
        3,
        40,
        41,
    }


def test_too_soon_after_the_event_is_pending() -> None:
    rows = tripled_error_rows(post=10)
    out = aligned_errors(rows, t0=T0, step_seconds=60, before=60)
    assert out.ttc_steps == dict.fromkeys(MODELS)
    assert {c.status for c in out.convergence.values()} == {ConvergenceStatus.PENDING}
