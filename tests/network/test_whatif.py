"""network.whatif: demands over a horizon, what-if loads, the horizon N-1 scan."""

import numpy as np
import pytest

from network.routing import route
from network.topology import Link, Topology
from network.whatif import estimate_demands, horizon_scan, what_if
from simulator.traffic import sine_traffic


def _node_balance(topo, loads: np.ndarray) -> np.ndarray:
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((loads.shape[0], len(topo.nodes)))
    for li, lk in enumerate(topo.links):
        out[:, index[lk.src]] += loads[:, li]
        out[:, index[lk.dst]] -= loads[:, li]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_estimate_reproduces_every_step_of_the_loads(abilene, seed):
    """One tomogravity and the closed-form step for the others fit a whole horizon of
    loads that real demands produced (12 steps of 5 min, demands drifting)."""
    net = abilene.network
    tr = sine_traffic(abilene, n_steps=12, seed=seed)
    r = route(net, tr.pairs)
    y = r.loads(tr.demands_bps)
    est = estimate_demands(r, y)
    assert est.reference_step == int(np.argmax(y.sum(axis=1)))
    assert est.fit_error < 0.01, est.fit_error
    assert (est.demands_bps >= 0).all()
    np.testing.assert_allclose(est.routed_bps, r.loads(est.demands_bps))
    assert est.measured.all()


def test_a_link_without_forecast_or_down_is_not_fitted(abilene):
    net = abilene.network
    tr = sine_traffic(abilene, n_steps=6, seed=3)
    down = ["WASHng>NYCMng", "NYCMng>WASHng"]
    r = route(net, tr.pairs, failed=down)
    y = r.loads(tr.demands_bps)
    y[:, net.link_index(down[0])] = 5e9  # a stale forecast of a link that is down
    y[2, net.link_index("ATLAng>HSTNng")] = np.nan  # one missing step: no forecast
    est = estimate_demands(r, y)
    unused = [net.link_index(n) for n in (*down, "ATLAng>HSTNng")]
    assert not est.measured[unused].any() and est.measured.sum() == len(net.links) - 3
    assert est.fit_error < 0.01
    assert (est.routed_bps[:, unused[:2]] == 0).all()  # down: carries nothing


@pytest.mark.parametrize("ecmp", [False, True])
def test_what_if_conserves_traffic_and_keeps_untouched_forecasts(abilene, ecmp):
    net = abilene.network
    tr = sine_traffic(abilene, n_steps=5, seed=4)
    r = route(net, tr.pairs, ecmp=ecmp)
    x = tr.demands_bps
    # Forecasts that the demands reproduce but for an offset on every link: the
    # estimate's misfit, which a what-if must not pass on as a change.
    offset = np.random.default_rng(0).uniform(0, 1e6, len(net.links))
    y = r.loads(x) + offset
    failed = ["WASHng>NYCMng", "NYCMng>WASHng", "ATLAM5>ATLAng", "ATLAng>ATLAM5"]
    out = what_if(r, x, y, failed)
    after = route(net, tr.pairs, ecmp=ecmp, failed=failed)
    np.testing.assert_allclose(out.loads_bps, np.where(after.alive, after.loads(x) + offset, 0))
    np.testing.assert_allclose(out.baseline_bps, y)
    untouched = abs(after.matrix - r.matrix).sum(axis=1) == 0  # no demand moves on or off
    assert untouched.any()
    np.testing.assert_array_equal(out.loads_bps[:, untouched], y[:, untouched])
    stranded = np.array(["ATLAM5" in pair for pair in tr.pairs])
    np.testing.assert_allclose(out.unroutable_bps, x[:, stranded].sum(axis=1))
    assert {(s, d) for s, d, _ in out.unroutable_pairs} == {
        p for p, s in zip(tr.pairs, stranded, strict=True) if s
    }
    # Sent minus received at every node: the carried demands', nothing lost or made.
    carried = np.where(stranded, 0.0, x)
    expected = _node_balance(net, r.loads(carried))
    np.testing.assert_allclose(
        _node_balance(net, out.loads_bps - offset * after.alive), expected, atol=1e-3
    )


def test_the_horizon_scan_is_the_what_if_of_every_cable(nobel):
    net = nobel.network
    tr = sine_traffic(nobel, n_steps=6, seed=5)
    r = route(net, tr.pairs)
    y = r.loads(tr.demands_bps)
    cap = np.random.default_rng(5).choice([10e9, 40e9], len(net.links))
    scan = horizon_scan(r, tr.demands_bps, y, capacities_bps=cap)
    assert scan.units == net.duplex_groups()
    assert np.isfinite(scan.worst_utilisation).all()
    for k, unit in enumerate(scan.units):
        out = what_if(r, tr.demands_bps, y, unit)
        util = out.utilisation(cap)
        assert scan.worst_utilisation[k] == pytest.approx(np.nanmax(util))
        t, link = scan.worst_step[k], scan.worst_link[k]
        assert util[t, link] == pytest.approx(np.nanmax(util))
        assert link not in unit
        assert scan.unroutable_bps[k] == pytest.approx(out.unroutable_bps.max())
    order = scan.ranking()
    assert (np.diff(scan.worst_utilisation[order]) <= 0).all()  # nothing stranded here
    assert (scan.unroutable_bps == 0).all()


def test_the_horizon_scan_ranks_a_cut_that_strands_demand_first():
    # a triangle and a stub D hanging off C: cutting C-D strands D's traffic and leaves
    # the triangle's links less loaded than any triangle cut does
    links = [(s, d) for s, d in ["ab", "ba", "bc", "cb", "ca", "ac", "cd", "dc"]]
    topo = Topology(tuple("abcd"), tuple(Link(s, d, capacity_bps=1e9) for s, d in links))
    r = route(topo, metric="hops")
    demands = np.array([[3e8 if {p[0], p[1]} <= set("abc") else 1e7 for p in r.pairs]] * 2)
    y = r.loads(demands)
    scan = horizon_scan(r, demands, y)
    stub = scan.units.index((topo.link_index("c>d"), topo.link_index("d>c")))
    order = scan.ranking().tolist()
    assert order[0] == stub and scan.unroutable_bps[stub] > 0
    others = [k for k in range(len(scan.units)) if k != stub]
    assert scan.worst_utilisation[stub] < min(scan.worst_utilisation[others])
    assert (np.diff(scan.worst_utilisation[order[1:]]) <= 0).all()
