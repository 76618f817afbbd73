"""Re-route prediction: conservation, the simulator's truth, and the N-1 scan."""

import numpy as np
import pytest

from network.reroute import n1_scan, reroute
from network.routing import route
from network.topology import Link, Topology
from simulator.failures import LinkEvent, Scenario, experiment, simulate
from simulator.traffic import sine_traffic


def _node_balance(topo: Topology, loads: np.ndarray) -> np.ndarray:
    """Net outflow of each node over the links, ``(T, N)``."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((loads.shape[0], len(topo.nodes)))
    for li, lk in enumerate(topo.links):
        out[:, index[lk.src]] += loads[:, li]
        out[:, index[lk.dst]] -= loads[:, li]
    return out


def _sent_minus_received(topo: Topology, pairs, demands: np.ndarray, carried) -> np.ndarray:
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((demands.shape[0], len(topo.nodes)))
    for p, (s, d) in enumerate(pairs):
        if carried[p]:
            out[:, index[s]] += demands[:, p]
            out[:, index[d]] -= demands[:, p]
    return out


@pytest.mark.parametrize("ecmp", [False, True])
def test_reroute_carries_every_routable_demand_and_nothing_on_failed_links(abilene, ecmp):
    net = abilene.network
    tr = sine_traffic(abilene, n_steps=20, seed=2)
    before = route(net, tr.pairs, ecmp=ecmp)
    # One cable inside the mesh, and the only cable of ATLAM5 (it strands its pairs).
    down = ["WASHng>NYCMng", "NYCMng>WASHng", "ATLAM5>ATLAng", "ATLAng>ATLAM5"]
    out = reroute(before, tr.demands_bps, down)
    assert out.failed == tuple(sorted(down, key=net.link_index))
    assert (out.loads_bps[:, [net.link_index(n) for n in down]] == 0).all()
    assert (out.loads_bps >= 0).all()
    stranded = np.array(["ATLAM5" in pair for pair in tr.pairs])
    np.testing.assert_allclose(out.unroutable_bps, tr.demands_bps[:, stranded].sum(axis=1))
    expected = _sent_minus_received(net, tr.pairs, tr.demands_bps, ~stranded)
    np.testing.assert_allclose(_node_balance(net, out.loads_bps), expected, rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(out.before_bps, before.loads(tr.demands_bps))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_demands_give_the_simulators_post_failure_loads(nobel, seed):
    tr = sine_traffic(nobel, n_steps=400, seed=seed)
    res = experiment(nobel, tr, "drastic", seed=seed, step=200)
    f = res.failure_steps[0]
    down = [nobel.link_names[i] for i in res.failed_links]
    predicted = reroute(route(nobel.network, tr.pairs), tr.demands_bps[f:], down)
    np.testing.assert_allclose(predicted.loads_bps, res.loads_bps[f:], rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(predicted.unroutable_bps, res.dropped_bps[f:], atol=1e-3)
    for shift in res.target_shifts:  # the drastic links move as the simulator says
        mean = predicted.loads_bps[:288, shift.link_index].mean()
        assert mean == pytest.approx(res.loads_bps[f : f + 288, shift.link_index].mean(), rel=1e-9)


def test_true_demands_on_real_abilene_traffic_through_a_failure(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 400)
    res = simulate(abilene, tr, Scenario((LinkEvent(200, ("KSCYng", "IPLSng")),)))
    down = [abilene.link_names[i] for i in res.failed_links]
    predicted = reroute(route(abilene.network, tr.pairs), tr.demands_bps[200:], down)
    np.testing.assert_allclose(predicted.loads_bps, res.loads_bps[200:], rtol=1e-9, atol=1e-3)


def _full_scan(routing, demands, units):
    return np.array([reroute(routing, demands, unit).loads_bps for unit in units])


@pytest.mark.parametrize("ecmp", [False, True])
def test_n1_scan_equals_rerouting_each_failure_in_full(abilene, abilene_traffic, ecmp):
    net = abilene.network
    routing = route(net, abilene_traffic.pairs, ecmp=ecmp, metric="hops")
    d = abilene_traffic.demands_bps[1000]
    scan = n1_scan(routing, d)
    assert scan.units == net.duplex_groups() and len(scan.units) == 15
    expected = np.array(
        [route(net, routing.pairs, failed=u, ecmp=ecmp, metric="hops").loads(d) for u in scan.units]
    )
    np.testing.assert_allclose(scan.loads_bps, expected, rtol=1e-9, atol=1e-3)
    util = expected / net.capacities_bps
    for k, unit in enumerate(scan.units):
        util[k, list(unit)] = -1
        assert scan.worst_link[k] == np.argmax(util[k])
        assert scan.worst_utilization[k] == pytest.approx(util[k].max(), rel=1e-9)
    stub = net.duplex_groups().index((0, 1))  # ATLAM5's only cable
    assert scan.unroutable_bps[stub] == pytest.approx(
        d[["ATLAM5" in pair for pair in routing.pairs]].sum(), rel=1e-9
    )
    assert (np.delete(scan.unroutable_bps, stub) == 0).all()
    worst = scan.summary(top=3)
    assert [w["worst_utilization"] for w in worst] == sorted(scan.worst_utilization)[::-1][:3]


def test_n1_scan_units_capacities_and_a_network_already_down(nobel, nobel_traffic):
    net = nobel.network
    d = nobel_traffic.demands_bps[10]
    routing = route(net, nobel_traffic.pairs).fail([0, 1])
    scan = n1_scan(routing, d, units=[[2], ["Amsterdam>Brussels"]])
    assert scan.units == ((2,), (net.link_index("Amsterdam>Brussels"),))
    np.testing.assert_allclose(scan.loads_bps, _full_scan(routing, d, scan.units), rtol=1e-9)
    assert (scan.loads_bps[:, [0, 1]] == 0).all()
    # nobel-eu has no capacities: no utilisation, unless given.
    assert (scan.worst_link == -1).all() and np.isnan(scan.worst_utilization).all()
    given = n1_scan(routing, d, units=[[2]], capacities_bps=np.full(len(net.links), 1e10))
    assert given.worst_link[0] not in (0, 1, 2)
    assert given.utilization[0, 0] != given.utilization[0, 0]  # NaN on the links down


def test_scan_and_reroute_errors():
    t = Topology(("a", "b"), (Link("a", "b"), Link("b", "a")))
    r = route(t)
    with pytest.raises(ValueError, match=r"shape \(3,\); expected \(2,\)"):
        n1_scan(r, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no link named 'a>c'"):
        reroute(r, [1.0, 2.0], ["a>c"])
    with pytest.raises(ValueError, match="capacities_bps has shape"):
        n1_scan(r, [1.0, 2.0], capacities_bps=[1.0])
