"""Routing: flow conservation, shortest paths (networkx as the oracle), ECMP, failures."""

import networkx as nx
import numpy as np
import pytest

from network.routing import route
from network.topology import Link, Topology


def _incidence(topo: Topology) -> np.ndarray:
    """Node x link matrix: +1 where a link leaves a node, -1 where it enters."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    inc = np.zeros((len(topo.nodes), len(topo.links)))
    for li, lk in enumerate(topo.links):
        inc[index[lk.src], li] += 1
        inc[index[lk.dst], li] -= 1
    return inc


def _net_demand(topo: Topology, pairs, demands: np.ndarray, routable) -> np.ndarray:
    """Expected net outflow per node: + demand at its origin, - at its destination."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((demands.shape[0], len(topo.nodes)))
    for p, (s, d) in enumerate(pairs):
        if routable[p]:
            out[:, index[s]] += demands[:, p]
            out[:, index[d]] -= demands[:, p]
    return out


def _ring(n: int = 4, **kw) -> Topology:
    nodes = tuple("abcdefgh"[:n])
    links = []
    for i, a in enumerate(nodes):
        b = nodes[(i + 1) % n]
        links += [Link(a, b, **kw), Link(b, a, **kw)]
    return Topology(nodes, tuple(links))


@pytest.mark.parametrize("ecmp", [False, True])
@pytest.mark.parametrize("metric", ["distance", "hops"])
def test_routing_conserves_every_demand(nobel, nobel_traffic, ecmp, metric):
    net = nobel.network
    routing = route(net, nobel_traffic.pairs, ecmp=ecmp, metric=metric)
    assert routing.routable.all()
    R = routing.matrix.toarray()
    # Per pair: one unit leaves the origin, one reaches the destination, none is
    # created or lost anywhere else.
    inc = _incidence(net)
    unit = _net_demand(net, nobel_traffic.pairs, np.eye(len(nobel_traffic.pairs)), routing.routable)
    np.testing.assert_allclose(inc @ R, unit.T, atol=1e-12)
    # The same with the real bit/s of every step.
    demands = nobel_traffic.demands_bps[:50]
    loads = routing.loads(demands)
    expected = _net_demand(net, nobel_traffic.pairs, demands, routing.routable)
    np.testing.assert_allclose(loads @ inc.T, expected, rtol=1e-9, atol=1e-3)
    assert (loads >= 0).all()


@pytest.mark.parametrize("ecmp", [False, True])
def test_link_load_is_the_sum_of_the_demands_on_it(nobel, nobel_traffic, ecmp):
    routing = route(nobel.network, nobel_traffic.pairs, ecmp=ecmp)
    d = nobel_traffic.demands_bps[100]
    by_hand = dict.fromkeys(nobel.link_names, 0.0)
    for p in range(len(routing.pairs)):
        for name, fraction in routing.path(p).items():
            by_hand[name] += fraction * d[p]
    loads = routing.loads(d)
    np.testing.assert_allclose(loads, [by_hand[n] for n in nobel.link_names], rtol=1e-12)


@pytest.mark.parametrize("ecmp", [False, True])
@pytest.mark.parametrize("metric", ["distance", "hops"])
def test_paths_are_shortest_by_networkx(nobel, ecmp, metric):
    routing = route(nobel.network, ecmp=ecmp, metric=metric)
    g = nx.DiGraph()
    for lk, w in zip(nobel.network.links, routing.weights, strict=True):
        g.add_edge(lk.src, lk.dst, weight=w)
    lengths = dict(nx.all_pairs_dijkstra_path_length(g))
    R = routing.matrix.toarray()
    carried = routing.weights @ R  # mean path length of each pair's demand
    expected = [lengths[s][t] for s, t in routing.pairs]
    np.testing.assert_allclose(carried, expected, rtol=1e-12)


def test_ecmp_splits_equal_cost_paths(nobel):
    single = route(nobel.network, metric="hops").matrix.toarray()
    split = route(nobel.network, metric="hops", ecmp=True).matrix.toarray()
    assert set(np.unique(single)) == {0.0, 1.0}
    fractions = np.unique(split)
    assert 0.5 in fractions  # two equal-hop paths exist in nobel-eu
    assert ((fractions >= 0) & (fractions <= 1)).all()


def test_ring_ecmp_halves_and_single_path_is_deterministic():
    ring = _ring()
    r = route(ring, [("a", "c")], ecmp=True)
    assert r.path(("a", "c")) == {"a>b": 0.5, "b>c": 0.5, "a>d": 0.5, "d>c": 0.5}
    r1 = route(ring, [("a", "c")])
    # Ties go to the predecessor first in node order: b before d.
    assert r1.path(0) == {"a>b": 1.0, "b>c": 1.0}
    assert (r1.matrix != route(ring, [("a", "c")]).matrix).nnz == 0


def test_igp_metric_beats_hops_and_auto_uses_it():
    # a>c directly costs 10, a>b>c costs 2: the metric, not the hop count, decides.
    t = Topology.from_links(
        [{"name": "a>b", "metric": 1}, {"name": "b>c", "labels": {"metric": "1"}}]
        + [{"name": "a>c", "metric": 10}]
    )
    assert route(t).metric == "igp"
    assert route(t, [("a", "c")]).path(0) == {"a>b": 1.0, "b>c": 1.0}
    assert route(t, [("a", "c")], metric="hops").path(0) == {"a>c": 1.0}


def test_parallel_links_least_metric_and_ecmp_over_equal_ones():
    t = Topology(
        ("a", "b"),
        (
            Link("a", "b", "a:xe-0", metric=20),
            Link("a", "b", "a:xe-1", metric=10),
            Link("a", "b", "a:xe-2", metric=10),
        ),
    )
    assert route(t, [("a", "b")]).path(0) == {"a:xe-1": 1.0}
    assert route(t, [("a", "b")], ecmp=True).path(0) == {"a:xe-1": 0.5, "a:xe-2": 0.5}
    assert route(t, [("b", "a")]).routable.tolist() == [False]  # links are one-way


def test_distance_metric_prefers_short_path(abilene):
    # Los Angeles to Houston: LOSA-HSTN directly rather than via Kansas City.
    r = route(abilene.network, [("LOSAng", "HSTNng")], metric="distance")
    assert r.path(0) == {"LOSAng>HSTNng": 1.0}
    assert r.metric == "distance"


def test_failed_links_are_avoided_and_everything_still_arrives(abilene, abilene_traffic):
    net = abilene.network
    down = ["LOSAng>HSTNng", "HSTNng>LOSAng"]
    r = route(net, abilene_traffic.pairs, failed=down)
    assert r.failed == {net.link_index(n) for n in down}
    assert not r.matrix[[net.link_index(n) for n in down]].nnz
    assert r.routable.all()
    unit = _net_demand(net, abilene_traffic.pairs, np.eye(len(r.pairs)), r.routable)
    np.testing.assert_allclose(_incidence(net) @ r.matrix.toarray(), unit.T, atol=1e-12)


def test_unroutable_demand_is_reported(abilene, abilene_traffic):
    # ATLAM5 hangs on a single cable: cutting it strands every pair that touches it.
    r = route(abilene.network, abilene_traffic.pairs, failed=["ATLAM5>ATLAng", "ATLAng>ATLAM5"])
    stranded = [p for p, (s, d) in enumerate(abilene_traffic.pairs) if "ATLAM5" in (s, d)]
    assert np.flatnonzero(~r.routable).tolist() == stranded
    demands = abilene_traffic.demands_bps[:10]
    np.testing.assert_allclose(r.unroutable_bps(demands), demands[:, stranded].sum(axis=1))
    assert not r.matrix[:, stranded].nnz


@pytest.mark.parametrize("ecmp", [False, True])
def test_fail_recomputes_only_what_it_must_and_equals_a_full_route(nobel, ecmp):
    net = nobel.network
    base = route(net, ecmp=ecmp, metric="hops")
    rng = np.random.default_rng(3)
    for size in (1, 1, 2, 3):
        cables = rng.choice(len(nobel.links), size=size, replace=False)
        down = sorted(nobel.directed(cables))
        full = route(net, failed=down, ecmp=ecmp, metric="hops")
        inc = base.fail(down)
        assert inc.failed == full.failed
        assert np.array_equal(inc.routable, full.routable)
        np.testing.assert_allclose(inc.matrix.toarray(), full.matrix.toarray(), atol=1e-12)
        # Pairs that did not cross the failed links keep their column exactly.
        untouched = np.setdiff1d(np.arange(len(base.pairs)), base.affected(down))
        assert len(untouched) > 0
        assert (inc.matrix[:, untouched] != base.matrix[:, untouched]).nnz == 0


def test_route_errors(abilene):
    net = abilene.network
    with pytest.raises(ValueError, match="unknown to the topology"):
        route(net, [("ATLAM5", "Mars")])
    with pytest.raises(ValueError, match="no link named 'Mars>Venus'"):
        route(net, failed=["Mars>Venus"])
    with pytest.raises(ValueError, match="out of range"):
        route(net, failed=[99])
    with pytest.raises(ValueError, match="valid: auto, igp, distance, hops"):
        route(net, metric="latency")
    with pytest.raises(ValueError, match="links without a metric"):
        route(net, metric="igp")
    bare = Topology(("a", "b"), (Link("a", "b"), Link("b", "a")))
    with pytest.raises(ValueError, match="no position"):
        route(bare, metric="distance")
    assert route(bare).metric == "hops"
    assert route(Topology((), ())).metric == "hops"  # no links: no metrics to go by
    with pytest.raises(ValueError, match="demands have 3 pairs"):
        route(bare).loads([1.0, 2.0, 3.0])
