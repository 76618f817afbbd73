"""Demand estimation: tomogravity reproduces the loads, and predicts re-routes on data it
was not tuned on (statistics over seeds, with margins)."""

import numpy as np
import pytest

from network.demand import fit_gravity, gravity, tomogravity
from network.reroute import failure_shift
from network.routing import route
from network.topology import Link, Topology
from simulator.estimation import score_estimation
from simulator.failures import experiment
from simulator.traffic import sine_traffic

DAY = 288


def _gravity_traffic(routing, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Demands that follow a gravity model exactly, and the node totals behind them."""
    n = len(routing.topology.nodes)
    a, b = rng.uniform(0.2, 2.0, n) * 1e9, rng.uniform(0.2, 2.0, n)
    x = a[routing.origin] * b[routing.dest] * (routing.origin != routing.dest)
    out = np.bincount(routing.origin, weights=x, minlength=n)
    inn = np.bincount(routing.dest, weights=x, minlength=n)
    return x, out, inn


def test_tomogravity_reproduces_the_link_loads_with_nonnegative_demands(nobel, nobel_traffic):
    routing = route(nobel.network, nobel_traffic.pairs)
    y = routing.loads(nobel_traffic.demands_bps[[0, 150, 300]])
    est = tomogravity(routing, y)
    assert est.demands_bps.shape == (3, len(routing.pairs)) == est.prior_bps.shape
    assert (est.demands_bps >= 0).all()
    np.testing.assert_allclose(routing.loads(est.demands_bps), y, rtol=1e-4, atol=1.0)
    assert (est.residual < 1e-5).all()
    one = tomogravity(routing, y[1])
    assert one.demands_bps.shape == (len(routing.pairs),) and one.residual.shape == ()
    np.testing.assert_allclose(one.demands_bps, est.demands_bps[1])


def test_gravity_traffic_is_recovered_exactly(nobel):
    routing = route(nobel.network)
    x, out, inn = _gravity_traffic(routing, np.random.default_rng(0))
    y = routing.loads(x)
    # The prior of the true totals is the truth; the refinement keeps it.
    np.testing.assert_allclose(gravity(routing, out, inn), x, rtol=1e-9)
    est = tomogravity(routing, y, out_bps=out, in_bps=inn)
    np.testing.assert_allclose(est.demands_bps, x, rtol=1e-6, atol=1e-3 * x.mean())
    # From the link loads alone, the fitted gravity model finds the same totals.
    fit_out, fit_in = fit_gravity(routing, y)
    np.testing.assert_allclose(fit_out, out, rtol=1e-3)
    np.testing.assert_allclose(fit_in, inn, rtol=1e-3)


def test_zero_loads_give_zero_demands_and_bad_input_is_refused():
    t = Topology(("a", "b"), (Link("a", "b"), Link("b", "a")))
    r = route(t)
    est = tomogravity(r, [0.0, 0.0])
    assert est.demands_bps.tolist() == [0.0, 0.0] and float(est.residual) == 0.0
    with pytest.raises(ValueError, match=r"shape \(3,\); expected \(2,\) or \(T, 2\)"):
        tomogravity(r, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        tomogravity(r, [1.0, -2.0])
    with pytest.raises(ValueError, match="both out_bps and in_bps"):
        tomogravity(r, [1.0, 2.0], out_bps=[1.0, 1.0])
    with pytest.raises(ValueError, match="one per node"):
        gravity(r, np.ones(3), np.ones(3))


def test_reroute_of_estimated_demands_on_nobel_eu_within_15_percent(nobel):
    """Issue 10's target: re-routed loads within 15 % of the truth on the drastically
    shifted links, median over seeds. Totals fitted to the link loads (all linkcast has).
    Measured over seeds 0-9 (bench/demand_estimation.py): median 1.2 %, worst 2.3 %; the
    synthetic traffic is itself gravity-shaped, the kind case (see the Abilene test)."""
    errors, priors = [], []
    for seed in (20, 21, 22):  # seeds no figure was read from before this test was written
        traffic = sine_traffic(nobel, n_steps=3 * DAY, seed=seed)
        result = experiment(nobel, traffic, "drastic", seed=seed)
        score = score_estimation(nobel, traffic, result, samples=6)
        errors.append(score.load_error)
        priors.append(score.prior_load_error)
        assert score.demand_error < 0.3
    assert np.median(errors) <= 0.15
    assert np.mean(errors) < np.mean(priors)  # the least-squares step improves on the prior


def test_reroute_of_estimated_demands_on_real_abilene_traffic(abilene, abilene_traffic):
    """Real matrices (Abilene 2004), two days from day k for seed k, as in
    ``bench/demand_estimation.py --traffic abilene --seeds 0-12``, which measured the
    medians: 9.2 % with measured edge totals (the paper's setting: the target holds),
    22.4 % with totals fitted to the core link loads alone (it does not; Abilene's
    matrices are far from gravity). Asserted with margins, as regression guards."""
    fitted, measured, priors, local = [], [], [], []
    for seed in range(13):
        traffic = abilene_traffic.slice(seed * DAY, seed * DAY + 2 * DAY)
        result = experiment(abilene, traffic, "drastic", seed=seed)
        score = score_estimation(abilene, traffic, result)
        fitted.append(score.load_error)
        priors.append(score.prior_load_error)
        measured.append(score_estimation(abilene, traffic, result, totals="measured").load_error)
        # edge links that also count traffic in and out of the same router (30 % of
        # its other traffic on average): the prior is scaled to the backbone's loads
        # (bench/demand_estimation.py --local-share 0.3: 12.3 %)
        noisy = score_estimation(
            abilene, traffic, result, totals="measured", local_share=0.3, draw=seed
        )
        local.append(noisy.load_error)
    assert np.median(measured) <= 0.15
    assert np.median(local) <= 0.15
    assert np.median(fitted) <= 0.30
    assert np.median(fitted) < np.median(priors)  # the least-squares step improves on the prior


def test_unmeasured_node_totals_are_fitted_and_a_measured_prior_scaled_to_the_loads(
    abilene, abilene_traffic
):
    r = route(abilene.network, abilene_traffic.pairs)
    x = abilene_traffic.demands_bps[500]
    y = r.loads(x)
    n = len(abilene.nodes)
    out = np.bincount(r.origin, weights=x, minlength=n) * 1.25  # edge links count local too
    inn = np.bincount(r.dest, weights=x, minlength=n) * 1.25
    out[[0, 3]] = np.nan  # two routers without edge links (one way each)
    inn[[3, 7]] = np.nan
    est = tomogravity(r, y, out_bps=out, in_bps=inn)
    fo, fi = fit_gravity(r, y)
    g = gravity(r, np.where(np.isnan(out), fo, out), np.where(np.isnan(inn), fi, inn))
    c = float((r.matrix @ g) @ y) / float((r.matrix @ g) @ (r.matrix @ g))
    assert 0.5 < c < 1.0  # the 25 % of local traffic taken back off
    np.testing.assert_allclose(est.prior_bps, c * g, rtol=1e-9)
    np.testing.assert_allclose(r.loads(est.demands_bps), y, rtol=1e-3)
    # fitted totals are not scaled: the fit already reproduces the loads as well as it can
    plain = tomogravity(r, y)
    np.testing.assert_allclose(plain.prior_bps, gravity(r, fo, fi), rtol=1e-9)


def _als_gravity_fit(routing, y, rounds):
    """The reference gravity fit: alternating NNLS for ``rounds`` rounds (slow, linear
    convergence); the residual ``||R x - y||`` of the model it ends at."""
    from scipy import sparse
    from scipy.optimize import nnls

    n = len(routing.topology.nodes)
    moving = (routing.origin != routing.dest) & routing.routable
    s, t = routing.origin, routing.dest

    def by(node, weights):
        shape = (len(routing.pairs), n)
        return sparse.csr_array((weights, (np.arange(len(s)), node)), shape=shape)

    a, b = np.ones(n), np.full(n, 1.0 / n)
    for _ in range(rounds):
        a = nnls((routing.matrix @ by(s, b[t] * moving)).toarray(), y)[0]
        b = nnls((routing.matrix @ by(t, a[s] * moving)).toarray(), y)[0]
    return np.linalg.norm(routing.loads(a[s] * b[t] * moving) - y)


def _fit_residual(routing, y, out, inn):
    return np.linalg.norm(routing.loads(gravity(routing, out, inn)) - y)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_gravity_recovers_gravity_totals_to_round_off(nobel, abilene, seed):
    """The trust-region fit converges where alternating NNLS crawls: an exact gravity
    matrix's totals come back to 1e-6 (on several networks and draws)."""
    for topo in (nobel.network, abilene.network):
        routing = route(topo)
        x, out, inn = _gravity_traffic(routing, np.random.default_rng(seed))
        fit_out, fit_in = fit_gravity(routing, routing.loads(x))
        np.testing.assert_allclose(fit_out, out, rtol=1e-6)
        np.testing.assert_allclose(fit_in, inn, rtol=1e-6)


@pytest.mark.parametrize("step", [300, 1500, 3000])
def test_fit_gravity_fits_real_traffic_at_least_as_well_as_alternating_nnls(
    abilene, abilene_traffic, step
):
    """Real Abilene matrices are not gravity-shaped: the fitted model's residual is no
    worse than 2,000 rounds of alternating NNLS (the method it replaced) reach."""
    routing = route(abilene.network, abilene_traffic.pairs)
    y = routing.loads(abilene_traffic.demands_bps[step])
    out, inn = fit_gravity(routing, y)
    assert (out >= 0).all() and (inn >= 0).all()
    reference = _als_gravity_fit(routing, y, 2000)
    assert _fit_residual(routing, y, out, inn) <= reference * (1 + 1e-6) + 1e-9 * np.abs(y).max()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_refinement_equals_nnls_on_the_stacked_system(nobel, nobel_traffic, seed):
    """tomogravity's refinement (solved on (L, L) systems with an active set, checked by
    the KKT conditions) is the least-squares problem NNLS solves, to round-off: loads
    made inconsistent by noise and priors far from the truth push many demands to 0."""
    from scipy import sparse
    from scipy.optimize import nnls

    from network.demand import _PRIOR_FLOOR, CONSTRAINT_WEIGHT, _refine_by_links

    rng = np.random.default_rng(seed)
    routing = route(nobel.network, nobel_traffic.pairs)
    x = nobel_traffic.demands_bps[100 * seed + 5]
    y = routing.loads(x) * rng.uniform(0.8, 1.2, len(routing.topology.links))
    n = len(routing.topology.nodes)
    out, inn = rng.uniform(0.1, 2.0, n) * x.sum() / n, rng.uniform(0.1, 2.0, n)
    est = tomogravity(routing, y, out_bps=out, in_bps=inn)
    cols = np.flatnonzero(routing.routable & (routing.origin != routing.dest))
    scale = np.abs(y).max()
    g = est.prior_bps[cols] / scale
    w = 1.0 / np.sqrt(np.maximum(g, _PRIOR_FLOOR * g.mean()))
    A = sparse.vstack([CONSTRAINT_WEIGHT * routing.matrix[:, cols], sparse.diags_array(w)])
    b = np.r_[CONSTRAINT_WEIGHT * y / scale, g * w]
    expected = nnls(A.toarray(), b, maxiter=50 * len(cols))[0] * scale
    assert (expected == 0).sum() >= 5  # the bound is active: the active set is exercised
    fast = _refine_by_links(routing.matrix[:, cols], y / scale, g, w)
    assert fast is not None  # solved on the (L, L) systems, not by the fallback to NNLS
    np.testing.assert_allclose(fast * scale, expected, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(est.demands_bps[cols], expected, rtol=0, atol=1e-9 * scale)
    assert (est.demands_bps >= 0).all()


def test_refinement_beyond_the_dense_size_falls_back_to_the_same_answer(
    nobel, nobel_traffic, monkeypatch
):
    """Past ``_DENSE_LINKS`` links the (L, L) systems are not built (they would be dense):
    the estimate comes from the NNLS fallback, and it is the same minimum."""
    import network.demand as demand

    routing = route(nobel.network, nobel_traffic.pairs)
    y = routing.loads(nobel_traffic.demands_bps[7])
    fast = tomogravity(routing, y)
    monkeypatch.setattr(demand, "_DENSE_LINKS", len(routing.topology.links) - 1)
    g = np.ones(len(nobel_traffic.pairs))
    assert demand._refine_by_links(routing.matrix, y / np.abs(y).max(), g, g) is None
    slow = tomogravity(routing, y)
    scale = np.abs(y).max()
    np.testing.assert_allclose(slow.demands_bps, fast.demands_bps, rtol=0, atol=1e-6 * scale)


def test_a_gravity_fit_whose_best_lies_at_infinity_stops_early_and_tomogravity_holds(
    monkeypatch, caplog
):
    """A node that only sends (D) and one that only receives: the best gravity fit has
    factors growing without bound, each round of the solve a little better. It ran to
    its cap of 1,000 evaluations (0.4 s on 4 nodes; seconds of a live tick at a repair,
    with a warning); it stops once a round gains under 0.1 % of the loads, and the
    refinement still gives the demands."""
    import network.demand as demand

    links = [
        Link(s, d, capacity_bps=1e9) for s, d in ["AB", "BA", "BC", "CB", "CA", "AC", "CD", "DC"]
    ]
    routing = route(Topology(tuple("ABCD"), tuple(links)), metric="hops")
    x = np.zeros(len(routing.pairs))
    for pair, v in ((("A", "B"), 0.3e9), (("A", "C"), 0.3e9), (("D", "A"), 0.9e9)):
        x[routing.pairs.index(pair)] = v
    y = routing.loads(x)
    evaluations = []
    solve = demand.least_squares

    def counted(*args, **kwargs):
        fit = solve(*args, **kwargs)
        evaluations.append(fit.nfev)
        return fit

    monkeypatch.setattr(demand, "least_squares", counted)
    with caplog.at_level("WARNING", logger="network.demand"):
        est = tomogravity(routing, y)
    assert 0 < sum(evaluations) <= 200, evaluations
    assert "not converged" not in caplog.text
    np.testing.assert_allclose(est.demands_bps, x, rtol=0, atol=0.005 * x.sum())


def test_fit_gravity_refuses_no_iterations(nobel, nobel_traffic):
    routing = route(nobel.network, nobel_traffic.pairs)
    with pytest.raises(ValueError, match="iterations"):
        fit_gravity(routing, routing.loads(nobel_traffic.demands_bps[0]), iterations=0)


def test_edge_totals_of_zero_everywhere_are_fitted_not_taken(abilene, abilene_traffic):
    """Edge links that all read 0 (a collector writing 0 once it loses its interfaces)
    would give a prior of 0 and hold every demand at 0: those totals are fitted."""
    r = route(abilene.network, abilene_traffic.pairs)
    y = r.loads(abilene_traffic.demands_bps[500])
    zeros = np.zeros(len(abilene.nodes))
    fitted = tomogravity(r, y)
    est = tomogravity(r, y, out_bps=zeros, in_bps=zeros)
    np.testing.assert_allclose(est.demands_bps, fitted.demands_bps, rtol=1e-9, atol=1e-3)
    shift = failure_shift(r, y, [0, 1], totals_bps=(zeros, zeros)).shift_bps
    assert np.abs(shift).max() > 0.01 * y.max()  # a re-route, not none
