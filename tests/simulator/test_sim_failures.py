"""Failure scenarios: loads through failures, shift classes, scenario builders."""

import numpy as np
import pytest

from simulator.failures import (
    DRASTIC_THRESHOLD,
    MODERATE_THRESHOLD,
    EventKind,
    LinkEvent,
    Scenario,
    ShiftClass,
    build_scenario,
    edge_loads,
    experiment,
    simulate,
)


def test_failed_link_carries_nothing_after_failure(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 600)
    scenario = Scenario((LinkEvent(300, ("WASHng", "NYCMng")),))
    res = simulate(abilene, tr, scenario)
    i = abilene.link_index("WASHng>NYCMng")
    down = [2 * i, 2 * i + 1]
    assert res.failed_links == tuple(down)
    assert (res.loads_bps[:300, down] > 0).all()
    assert (res.loads_bps[300:, down] == 0).all()
    # Nothing is stranded: NYCM is still reachable.
    assert (res.dropped_bps == 0).all()
    # Before the failure, the loads are those of the intact network.
    intact = simulate(abilene, tr)
    np.testing.assert_array_equal(res.loads_bps[:300], intact.loads_bps[:300])
    assert not np.allclose(res.loads_bps[300:], intact.loads_bps[300:])


def test_repair_restores_the_link(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 300)
    link = ("WASHng", "NYCMng")
    scenario = Scenario((LinkEvent(100, link), LinkEvent(200, link, EventKind.REPAIR)), name="blip")
    res = simulate(abilene, tr, scenario)
    intact = simulate(abilene, tr)
    i = abilene.link_index(link)
    assert (res.loads_bps[100:200, 2 * i] == 0).all()
    np.testing.assert_array_equal(res.loads_bps[200:], intact.loads_bps[200:])
    assert {s.step for s in res.shifts} == {100, 200}
    assert res.failure_steps == (100,)


def test_disconnecting_failure_counts_dropped_demand(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 200)
    res = simulate(abilene, tr, Scenario((LinkEvent(100, ("ATLAM5", "ATLAng")),)))
    stranded = [p for p, pair in enumerate(tr.pairs) if "ATLAM5" in pair]
    assert (res.dropped_bps[:100] == 0).all()
    np.testing.assert_allclose(res.dropped_bps[100:], tr.demands_bps[100:, stranded].sum(axis=1))
    # Every other demand is still carried in full: net outflow of each node over
    # the links equals what it sends minus what it receives among routable pairs.
    index = {n: i for i, n in enumerate(abilene.nodes)}
    outflow = np.zeros((100, len(abilene.nodes)))
    for li, (s, d) in enumerate(abilene.directed_links):
        outflow[:, index[s]] += res.loads_bps[100:, li]
        outflow[:, index[d]] -= res.loads_bps[100:, li]
    expected = np.zeros_like(outflow)
    for p, (s, d) in enumerate(tr.pairs):
        if p not in stranded:
            expected[:, index[s]] += tr.demands_bps[100:, p]
            expected[:, index[d]] -= tr.demands_bps[100:, p]
    np.testing.assert_allclose(outflow, expected, rtol=1e-9, atol=1e-3)


def test_edge_loads_count_what_enters_and_what_arrives(abilene, abilene_traffic):
    """Ingress: every demand from a node; egress: the demands to it that have a path, so
    a failure that strands ATLAM5 takes its egress to 0 and keeps its ingress."""
    tr = abilene_traffic.slice(0, 200)
    scenario = Scenario((LinkEvent(100, ("ATLAM5", "ATLAng")),))
    ingress, egress = edge_loads(abilene, tr, scenario)
    n = len(abilene.nodes)
    assert ingress.shape == egress.shape == (200, n)
    a = abilene.nodes.index("ATLAM5")
    sent = [p for p, (s, _) in enumerate(tr.pairs) if s == "ATLAM5"]
    to = [p for p, (_, d) in enumerate(tr.pairs) if d == "ATLAM5"]
    np.testing.assert_allclose(ingress[:, a], tr.demands_bps[:, sent].sum(axis=1))
    np.testing.assert_allclose(egress[:100, a], tr.demands_bps[:100, to].sum(axis=1))
    assert (egress[:100, a] > 0).all() and (egress[100:, a] == 0).all()
    # before the failure every demand arrives: what enters is what leaves, in all
    np.testing.assert_allclose(ingress[:100].sum(axis=1), egress[:100].sum(axis=1))
    # after it, the gap is the demand left without a path
    res = simulate(abilene, tr, scenario)
    np.testing.assert_allclose(
        ingress[100:].sum(axis=1) - egress[100:].sum(axis=1), res.dropped_bps[100:], rtol=1e-9
    )


def test_same_seed_same_loads_other_seed_other(nobel):
    from simulator.traffic import sine_traffic

    def run(seed):
        tr = sine_traffic(nobel, n_steps=400, seed=seed)
        return experiment(nobel, tr, "mixed", seed=seed)

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a.loads_bps, b.loads_bps)
    assert a.scenario == b.scenario
    assert not np.allclose(a.loads_bps, c.loads_bps)


def _relative_change_from_loads(topo, traffic, res):
    """Independent check: mean load over one day after the failure, with vs without it."""
    f = res.failure_steps[0]
    window = slice(f, min(traffic.n_steps, f + 288))
    intact = simulate(topo, traffic).loads_bps[window].mean(axis=0)
    failed = res.loads_bps[window].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(intact > 0, failed / intact - 1, np.inf)


@pytest.mark.parametrize("kind", ["drastic", "moderate", "mixed"])
@pytest.mark.parametrize("case", ["abilene-replay", "nobel-sine"])
def test_builders_produce_the_promised_class(request, case, kind):
    topo_name, traffic_name = (
        ("abilene", "abilene_traffic") if case == "abilene-replay" else ("nobel", "nobel_traffic")
    )
    topo, tr = request.getfixturevalue(topo_name), request.getfixturevalue(traffic_name)
    res = experiment(topo, tr, kind, seed=11)
    assert res.scenario.name == kind
    assert len(res.failure_steps) == 1 and res.failure_steps[0] == tr.n_steps // 2
    assert (res.dropped_bps == 0).all()
    classes = set(res.affected_links.values())
    targets = res.target_links
    assert targets
    rel = _relative_change_from_loads(topo, tr, res)
    for li in targets:
        assert li not in res.failed_links
        assert abs(rel[li]) >= MODERATE_THRESHOLD
    if kind == "drastic":
        assert all(abs(rel[li]) >= DRASTIC_THRESHOLD for li in targets)
        assert ShiftClass.DRASTIC in classes
    elif kind == "moderate":
        assert all(abs(rel[li]) < DRASTIC_THRESHOLD for li in targets)
        assert classes == {ShiftClass.MODERATE}
    else:
        assert classes == {ShiftClass.DRASTIC, ShiftClass.MODERATE}
        assert set(targets) == set(res.affected_links)
    # Shifts agree with the independent computation.
    for s in res.failure_shifts:
        assert s.relative_change == pytest.approx(rel[s.link_index], rel=1e-6)
    # Reproducible from the seed.
    assert build_scenario(kind, topo, tr, seed=11) == res.scenario


def test_unaffected_links_really_are_unaffected(abilene, abilene_traffic):
    res = experiment(abilene, abilene_traffic, "moderate", seed=0)
    rel = _relative_change_from_loads(abilene, abilene_traffic, res)
    floor = 0.01 * simulate(abilene, abilene_traffic).loads_bps.mean()
    loads = res.loads_bps[res.failure_steps[0] :].mean(axis=0)
    for li in range(len(abilene.link_names)):
        if li in res.failed_links or li in res.affected_links or loads[li] < floor:
            continue
        assert abs(rel[li]) < MODERATE_THRESHOLD


def test_scenario_errors(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 100)
    link = ("WASHng", "NYCMng")
    with pytest.raises(ValueError, match="already down"):
        simulate(abilene, tr, Scenario((LinkEvent(10, link), LinkEvent(20, link))))
    with pytest.raises(ValueError, match="repaired at step 10 but is up"):
        simulate(abilene, tr, Scenario((LinkEvent(10, link, EventKind.REPAIR),)))
    with pytest.raises(ValueError, match="beyond"):
        simulate(abilene, tr, Scenario((LinkEvent(100, link),)))
    with pytest.raises(ValueError, match="no link between"):
        simulate(abilene, tr, Scenario((LinkEvent(10, ("ATLAM5", "STTLng")),)))
    with pytest.raises(ValueError, match="valid: drastic, moderate, mixed"):
        build_scenario("apocalyptic", abilene, tr)
    with pytest.raises(ValueError, match="step"):
        LinkEvent(-1, link)


def test_traffic_must_match_topology(abilene, nobel_traffic):
    with pytest.raises(ValueError, match="lacks"):
        simulate(abilene, nobel_traffic)


def test_stated_thresholds():
    from simulator.failures import classify_shift

    assert classify_shift(0.5) == classify_shift(-0.5) == classify_shift(np.inf) == "drastic"
    assert classify_shift(0.49) == classify_shift(-0.1) == classify_shift(0.1) == "moderate"
    assert classify_shift(0.099) is None and classify_shift(-0.05) is None


def test_builder_says_when_no_failure_qualifies():
    from simulator.topology import Link, Topology
    from simulator.traffic import sine_traffic

    # In a triangle every cut doubles a path's load (drastic) and any two cuts
    # disconnect it: no moderate scenario exists.
    tri = Topology("tri", ("a", "b", "c"), (Link("a", "b"), Link("b", "c"), Link("c", "a")))
    tr = sine_traffic(tri, n_steps=100, seed=0)
    assert experiment(tri, tr, "drastic").target_links
    with pytest.raises(ValueError, match="no single or double link failure on 'tri'"):
        build_scenario("moderate", tri, tr)
