"""Routing: flow conservation, ECMP splits, failures, unroutable demand."""

import numpy as np
import pytest

from simulator.routing import dropped_bps, link_loads, route
from simulator.topology import Link, Topology


def _incidence(topo: Topology) -> np.ndarray:
    """Node x directed-link matrix: +1 where a link leaves a node, -1 where it enters."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    inc = np.zeros((len(topo.nodes), len(topo.link_names)))
    for li, (s, d) in enumerate(topo.directed_links):
        inc[index[s], li] += 1
        inc[index[d], li] -= 1
    return inc


def _net_demand(topo: Topology, pairs, demands: np.ndarray, routable) -> np.ndarray:
    """Expected net outflow per node: + demand at its source, - at its destination."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((demands.shape[0], len(topo.nodes)))
    for p, (s, d) in enumerate(pairs):
        if routable[p]:
            out[:, index[s]] += demands[:, p]
            out[:, index[d]] -= demands[:, p]
    return out


@pytest.mark.parametrize("ecmp", [False, True])
@pytest.mark.parametrize("metric", ["distance", "hops"])
def test_routing_conserves_every_demand(nobel, nobel_traffic, ecmp, metric):
    routing = route(nobel, nobel_traffic.pairs, ecmp=ecmp, metric=metric)
    assert routing.routable.all()
    # Per pair: one unit leaves the source, one reaches the destination, none is
    # created or lost anywhere else.
    inc = _incidence(nobel)
    unit = _net_demand(
        nobel, nobel_traffic.pairs, np.eye(len(nobel_traffic.pairs)), routing.routable
    )
    np.testing.assert_allclose(inc @ routing.matrix, unit.T, atol=1e-12)
    # The same with the real bit/s of every step.
    demands = nobel_traffic.demands_bps[:50]
    loads = link_loads(demands, routing)
    expected = _net_demand(nobel, nobel_traffic.pairs, demands, routing.routable)
    np.testing.assert_allclose(loads @ inc.T, expected, rtol=1e-9, atol=1e-3)
    assert (loads >= 0).all()


def test_ecmp_splits_equal_cost_paths(nobel, nobel_traffic):
    single = route(nobel, nobel_traffic.pairs, metric="hops")
    split = route(nobel, nobel_traffic.pairs, metric="hops", ecmp=True)
    assert set(np.unique(single.matrix)) == {0.0, 1.0}
    fractions = np.unique(split.matrix)
    assert 0.5 in fractions  # two equal-hop paths exist in nobel-eu
    assert ((fractions >= 0) & (fractions <= 1)).all()


def test_square_ecmp_halves():
    sq = Topology(
        "sq", ("a", "b", "c", "d"), (Link("a", "b"), Link("b", "c"), Link("c", "d"), Link("d", "a"))
    )
    r = route(sq, [("a", "c")], ecmp=True)
    assert dict(zip(sq.link_names, r.matrix[:, 0], strict=True)) == {
        "a>b": 0.5,
        "b>a": 0.0,
        "b>c": 0.5,
        "c>b": 0.0,
        "c>d": 0.0,
        "d>c": 0.5,
        "d>a": 0.0,
        "a>d": 0.5,
    }
    r1 = route(sq, [("a", "c")])
    assert r1.matrix[:, 0].sum() == 2  # one two-hop path, chosen deterministically
    assert np.array_equal(r1.matrix, route(sq, [("a", "c")]).matrix)


def test_distance_metric_prefers_short_path(abilene):
    # Los Angeles to Houston: LOSA-HSTN directly rather than via Kansas City.
    r = route(abilene, [("LOSAng", "HSTNng")], metric="distance")
    used = [abilene.link_names[i] for i in np.flatnonzero(r.matrix[:, 0])]
    assert used == ["LOSAng>HSTNng"]
    assert r.metric == "distance"


def test_failed_link_is_avoided_and_reroutes(abilene, abilene_traffic):
    i = abilene.link_index("LOSAng>HSTNng")
    r = route(abilene, abilene_traffic.pairs, failed={i})
    assert not r.matrix[[2 * i, 2 * i + 1]].any()
    assert r.routable.all()
    inc = _incidence(abilene)
    unit = _net_demand(abilene, abilene_traffic.pairs, np.eye(132), r.routable)
    np.testing.assert_allclose(inc @ r.matrix, unit.T, atol=1e-12)


def test_unroutable_demand_is_reported(abilene, abilene_traffic):
    # ATLAM5 hangs on a single link: cutting it strands every pair that touches it.
    stub = abilene.link_index("ATLAM5>ATLAng")
    r = route(abilene, abilene_traffic.pairs, failed={stub})
    stranded = [p for p, (s, d) in enumerate(abilene_traffic.pairs) if "ATLAM5" in (s, d)]
    assert np.flatnonzero(~r.routable).tolist() == stranded
    demands = abilene_traffic.demands_bps[:10]
    np.testing.assert_allclose(dropped_bps(demands, r), demands[:, stranded].sum(axis=1))
    assert not r.matrix[:, stranded].any()


def test_route_errors(abilene):
    with pytest.raises(ValueError, match="unknown to topology"):
        route(abilene, [("ATLAM5", "Mars")])
    with pytest.raises(ValueError, match="out of range"):
        route(abilene, [("ATLAM5", "ATLAng")], failed={99})
    with pytest.raises(ValueError, match="valid: auto, distance, hops"):
        route(abilene, [("ATLAM5", "ATLAng")], metric="latency")
    bare = Topology("bare", ("a", "b"), (Link("a", "b"),))
    with pytest.raises(ValueError, match="no position"):
        route(bare, [("a", "b")], metric="distance")
    assert route(bare, [("a", "b")]).metric == "hops"
