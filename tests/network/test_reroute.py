"""Re-route prediction: conservation, the simulator's truth, and the N-1 scan."""

import numpy as np
import pytest

from network.reroute import failure_shift, n1_scan, reroute, scale_shift
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
    # the cut that strands ATLAM5's demand ranks first, though the links left carry less;
    # then the others by worst utilisation
    worst = scan.summary(top=3)
    assert worst[0]["failed"] == [net.link_names[i] for i in scan.units[stub]]
    assert worst[0]["unroutable_bps"] > 0
    rest = sorted(np.delete(scan.worst_utilization, stub))[::-1][:2]
    assert [w["worst_utilization"] for w in worst[1:]] == rest
    assert worst[0]["worst_utilization"] < rest[-1]  # by utilisation alone it would not lead


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


# --- failure_shift: the shift a failure adds to forecasts of the loads with every link up


def _square() -> Topology:
    """a-b-c-d-a, both directions, every link 10 Gbit/s."""
    ring = ["ab", "ba", "bc", "cb", "cd", "dc", "da", "ad"]
    return Topology(tuple("abcd"), tuple(Link(s, d, capacity_bps=1e10) for s, d in ring))


def test_failure_shift_moves_the_failed_links_traffic_and_conserves_it(nobel, nobel_traffic):
    net = nobel.network
    routing = route(net, nobel_traffic.pairs)
    y = routing.loads(nobel_traffic.demands_bps[40])
    down = list(net.duplex_groups()[3])
    out = failure_shift(routing, y, down)
    assert out.link_names == net.link_names
    assert out.down.tolist() == [i in down for i in range(len(net.links))]
    assert out.fit_error < 1e-3 and out.unroutable_bps == 0.0
    # the failed links carry nothing: their shift takes their whole measured load away
    np.testing.assert_allclose(y[down] + out.shift_bps[down], 0.0, atol=1e-3 * y.max())
    # a re-route moves traffic, it creates none: every node sends and receives as before
    assert np.abs(_node_balance(net, out.shift_bps[None])).max() < 1e-6 * y.max()
    # the shift is the estimated demands routed with and without the failure
    expected = reroute(routing, out.demands_bps, down)
    np.testing.assert_allclose(out.shift_bps, expected.loads_bps - expected.before_bps)
    assert (out.shift_bps[out.shift_bps > 0] <= y[down].sum() * (1 + 1e-9)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_failure_shift_predicts_the_simulators_post_failure_loads(nobel, seed):
    """From one step measured before a drastic failure, the loads after it (the
    measured loads plus the shift) on the drastically shifted links: within 15 % of
    the simulator's, the demand estimation's target (median over links)."""
    tr = sine_traffic(nobel, n_steps=400, seed=seed)
    res = experiment(nobel, tr, "drastic", seed=seed, step=200)
    f = res.failure_steps[0]
    down = [nobel.link_names[i] for i in res.failed_links]
    routing = route(nobel.network, tr.pairs)
    out = failure_shift(routing, res.loads_bps[f - 1], down)
    targets = [s.link_index for s in res.target_shifts]
    predicted = res.loads_bps[f - 1, targets] + out.shift_bps[targets]
    truth = res.loads_bps[f, targets]
    assert np.median(np.abs(predicted - truth) / truth) <= 0.15
    # without the shift, last step's loads are far off: the shift is what gets it right
    assert np.median(np.abs(res.loads_bps[f - 1, targets] - truth) / truth) > 0.3


def test_failure_shift_from_loads_measured_during_the_failure():
    net = _square()
    routing = route(net, metric="hops")
    truth = np.arange(1, len(routing.pairs) + 1) * 1e8
    down = ["a>b", "b>a"]
    during = route(net, metric="hops", failed=down).loads(truth)
    out = failure_shift(routing, during, down, measured_failed=down)
    # the loads with every link up, as the same estimated demands give them
    up = during - out.shift_bps
    np.testing.assert_allclose(up, routing.loads(out.demands_bps), rtol=1e-9, atol=1.0)
    assert up[net.link_index("a>b")] > 0 and out.fit_error < 1e-6
    # a failed link's stale or bogus reading is not used
    stale = during.copy()
    stale[net.link_index("a>b")] = 7e9
    again = failure_shift(routing, stale, down, measured_failed=down)
    np.testing.assert_allclose(again.shift_bps, out.shift_bps, rtol=1e-9, atol=1.0)


def test_failure_shift_without_some_measurements(nobel, nobel_traffic):
    net = nobel.network
    routing = route(net, nobel_traffic.pairs)
    y = routing.loads(nobel_traffic.demands_bps[100])
    down = list(net.duplex_groups()[5])
    full = failure_shift(routing, y, down)
    gaps = y.copy()
    lost = [0, 7, 20]
    gaps[lost] = np.nan
    out = failure_shift(routing, gaps, down)
    assert np.isfinite(out.shift_bps).all()
    # the links measured are still reproduced by the estimate
    assert out.fit_error < 1e-3
    # and the shift stays near the one from every measurement
    moved = np.abs(full.shift_bps) > 0.05 * np.abs(full.shift_bps).max()
    rel = np.abs(out.shift_bps - full.shift_bps)[moved] / np.abs(full.shift_bps[moved])
    assert np.median(rel) < 0.25


def test_failure_shift_stranded_demand_and_links_of_other_names():
    # a>b>c line plus a spur c>d: failing c>d strands every pair into d
    net = Topology.from_links([{"name": n} for n in ("a>b", "b>a", "b>c", "c>b", "c>d", "d>c")])
    routing = route(net, metric="hops")
    truth = np.full(len(routing.pairs), 1e8)
    y = routing.loads(truth)
    out = failure_shift(routing, y, ["c>d"])
    into_d = [p for p, (_, d) in enumerate(routing.pairs) if d == "d"]
    assert out.unroutable_bps == pytest.approx(out.demands_bps[into_d].sum(), rel=1e-9)
    assert out.unroutable_bps == pytest.approx(3e8, rel=1e-3)
    shift, down = out.for_links(["eth0", "c>d", "a>b"])
    assert shift[0] == 0.0 and not down[0]  # unplaced: no shift, not down
    assert down.tolist() == [False, True, False]
    assert shift[1] == pytest.approx(-y[net.link_index("c>d")], rel=1e-6)
    assert shift[2] == pytest.approx(-1e8, rel=1e-3)  # a's traffic to d is gone from a>b


def test_failure_shift_errors():
    net = _square()
    r = route(net)
    y = np.ones(len(net.links))
    with pytest.raises(ValueError, match=r"loads_bps has shape \(3,\); expected \(8,\)"):
        failure_shift(r, [1.0, 2.0, 3.0], ["a>b"])
    with pytest.raises(ValueError, match="no link named 'a>c'"):
        failure_shift(r, y, ["a>c"])
    with pytest.raises(ValueError, match="loads_bps must be >= 0 and finite"):
        failure_shift(r, -y, ["a>b"])
    with pytest.raises(ValueError, match="loads_bps must be >= 0 and finite"):
        failure_shift(r, np.r_[np.inf, y[1:]], ["a>b"])


def test_failure_shift_warm_start_from_the_previous_estimates_totals(nobel, nobel_traffic):
    net = nobel.network
    routing = route(net, nobel_traffic.pairs)
    down = list(net.duplex_groups()[3])
    first = failure_shift(routing, routing.loads(nobel_traffic.demands_bps[40]), down)
    out_bps, in_bps = first.totals_bps
    moving = routing.origin != routing.dest
    assert out_bps.sum() == pytest.approx(first.demands_bps[moving].sum(), rel=1e-9)
    assert in_bps.sum() == pytest.approx(out_bps.sum(), rel=1e-9)
    during = routing.fail(down).loads(nobel_traffic.demands_bps[41])
    warm = failure_shift(routing, during, down, measured_failed=down, totals_bps=first.totals_bps)
    true = during - routing.loads(nobel_traffic.demands_bps[41])
    assert warm.fit_error < 1e-3
    moved = np.abs(true) > 0.05 * np.abs(true).max()
    assert np.median(np.abs(warm.shift_bps - true)[moved] / np.abs(true[moved])) < 0.1


def _random_net(seed: int, n_nodes: int, n_cables: int, metric_range: int) -> Topology:
    """A connected random network: a random spanning tree plus random cables (some
    parallel), integer metrics drawn from ``1..metric_range`` (1: hops, many ECMP ties),
    random capacities."""
    rng = np.random.default_rng(seed)
    nodes = tuple(f"n{i}" for i in range(n_nodes))
    ends = [(int(rng.integers(i)), i) for i in range(1, n_nodes)]
    while len(ends) < n_cables:
        ends.append(tuple(int(x) for x in rng.choice(n_nodes, 2, replace=False)))
    links = []
    for j, (a, b) in enumerate(ends):
        metric = int(rng.integers(1, metric_range + 1))
        cap = float(rng.choice([1e9, 1e10, 4e10]))
        for s, d in ((a, b), (b, a)):
            name = f"{nodes[s]}>{nodes[d]}#{j}"
            links.append(Link(nodes[s], nodes[d], name, capacity_bps=cap, metric=metric))
    return Topology(nodes, tuple(links), name=f"random-{seed}")


@pytest.mark.parametrize("ecmp", [False, True])
@pytest.mark.parametrize(
    ("seed", "n_nodes", "n_cables", "metric_range"),
    [(0, 12, 20, 1), (1, 25, 45, 1), (2, 25, 45, 3), (3, 40, 70, 20), (4, 30, 40, 2)],
)
def test_n1_scan_on_random_networks_equals_full_reroutes(
    seed, n_nodes, n_cables, metric_range, ecmp
):
    """The scan's shortcuts (only the pairs that crossed the cable move; under ECMP
    their loads by dependency accumulation, network.paths.ecmp_loads) give what a
    full routing with the cable down gives: loads, worst utilisation and its link
    (a different link only on an exact tie), and the stranded demand. Hop-count
    metrics make many equal-cost paths; tree cables strand demand."""
    net = _random_net(seed, n_nodes, n_cables, metric_range)
    rng = np.random.default_rng(100 + seed)
    routing = route(net, ecmp=ecmp, metric="igp")
    d = rng.lognormal(20.0, 1.5, len(routing.pairs)) * (rng.random(len(routing.pairs)) > 0.1)
    scan = n1_scan(routing, d)
    assert len(scan.units) == n_cables
    for k, unit in enumerate(scan.units):
        full = route(net, routing.pairs, failed=unit, ecmp=ecmp, metric="igp")
        expected = full.loads(d)
        np.testing.assert_allclose(scan.loads_bps[k], expected, rtol=1e-9, atol=1e-6)
        assert scan.unroutable_bps[k] == pytest.approx(full.unroutable_bps(d), rel=1e-9, abs=1e-6)
        util = expected / net.capacities_bps
        util[list(unit)] = -1
        assert scan.worst_utilization[k] == pytest.approx(util.max(), rel=1e-9)
        assert util[scan.worst_link[k]] == pytest.approx(util.max(), rel=1e-9)
    assert (scan.unroutable_bps > 0).any()  # some tree cable cut strands demand


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ecmp_loads_equal_the_routing_matrix_entries(seed):
    """network.paths.ecmp_loads against columns(ecmp=True) weighted by the demands,
    with local, zero-demand, repeated and unreachable pairs and links down."""
    from network.paths import columns, ecmp_loads

    net = _random_net(seed, 30, 50, 1 + seed)
    routing = route(net, ecmp=True, metric="igp")
    rng = np.random.default_rng(seed)
    alive = rng.random(len(net.links)) > 0.15
    alive[[i for i, lk in enumerate(net.links) if "n0" in (lk.src, lk.dst)]] = False  # cut off
    origin = rng.integers(0, len(net.nodes), 600)
    dest = rng.integers(0, len(net.nodes), 600)
    d = rng.lognormal(0.0, 2.0, 600) * (rng.random(600) > 0.1)
    rows, cols, vals, ok = columns(routing.graph, alive, origin, dest, ecmp=True)
    loads, routable = ecmp_loads(routing.graph, alive, origin, dest, d)
    assert (routable == ok).all() and not ok.all()
    expected = np.bincount(rows, weights=vals * d[cols], minlength=len(net.links))
    np.testing.assert_allclose(loads, expected, rtol=1e-12, atol=1e-12 * expected.max())
    assert (loads[~alive] == 0).all()


def test_the_shift_follows_the_traffic_not_one_steps_noise():
    """scale_shift: the shift follows the ratio of the total load to the estimate's,
    smoothed with an hour's time constant: one 5-minute burst moves it by a twelfth of
    the burst, a lasting change is followed within a few hours, exactly at one step a
    grid of an hour or more."""
    shift = np.array([1e8, -1e8, 0.0])
    reference = np.array([1e9, 1e9, 0.0])
    down = np.array([False, False, True])
    burst = np.array([2e9, 2e9, 0.0])  # total doubled for one step
    one, ratio = scale_shift(shift, reference, down, burst, step_seconds=300)
    assert ratio == pytest.approx(1 + 1 / 12)
    np.testing.assert_allclose(one, shift * (1 + 1 / 12))
    ratio, lasting = 1.0, np.array([1.5e9, 1.5e9, 123.0])  # a failed link's load is ignored
    for _ in range(12):
        _, ratio = scale_shift(shift, reference, down, lasting, ratio=ratio, step_seconds=300)
    assert ratio == pytest.approx(1.5 - 0.5 * (11 / 12) ** 12)  # one time constant
    for _ in range(12 * 5):
        _, ratio = scale_shift(shift, reference, down, lasting, ratio=ratio, step_seconds=300)
    assert ratio == pytest.approx(1.5, rel=1e-2)
    assert scale_shift(shift, reference, down, burst, step_seconds=3600)[1] == 2.0
    unknown = np.array([np.nan, np.nan, 0.0])  # nothing measured in both: unchanged
    assert scale_shift(shift, reference, down, unknown, ratio=1.3, step_seconds=300)[1] == 1.3
