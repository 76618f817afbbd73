"""Cuts read off the link loads (``network.cuts``): the simulator's failures, real traffic
without failures, and what must not read as a cut."""

import numpy as np
import pytest

from network.cuts import CutDetector
from network.routing import route
from network.topology import Link, Topology
from simulator.failures import experiment
from simulator.topology import load_topology
from simulator.traffic import load_abilene, sine_traffic

# a square a-b-c-d, both directions of each side, and one one-way diagonal a>c
SQUARE = Topology(
    ("a", "b", "c", "d"),
    tuple(Link(s, d) for s, d in ["ab", "ba", "bc", "cb", "cd", "dc", "da", "ad", "ac"]),
)
LEVEL = np.array([50.0, 40.0, 60.0, 55.0, 45.0, 50.0, 35.0, 30.0, 20.0])


def _steps(detector: CutDetector, rows) -> list[tuple[list[str], list[str]]]:
    return [tuple(sorted(x) for x in detector.update(np.asarray(r, float))) for r in rows]


def test_a_cable_cut_both_ways_reads_as_cut_then_repaired():
    cut = LEVEL.copy()
    cut[[0, 1]] = 0.0  # a>b and b>a
    cut[[2, 3]] += 30.0  # its traffic went elsewhere
    got = _steps(CutDetector(SQUARE), [LEVEL, LEVEL * 1.1, cut, cut, LEVEL])
    assert got == [
        ([], []),
        ([], []),
        (["a>b", "b>a"], []),
        ([], []),
        ([], ["a>b", "b>a"]),
    ]


def test_what_is_not_a_cut():
    one_way = LEVEL.copy()
    one_way[0] = 0.0  # a>b at 0, b>a still carries: a counter, a collector
    most = LEVEL * 0.0  # every link at once: the collector, not cables
    most[8] = 20.0
    halved = LEVEL * 0.5  # a daily trough, however deep, is not 99 % in a step
    assert _steps(CutDetector(SQUARE), [LEVEL, one_way, LEVEL]) == [([], [])] * 3
    det = CutDetector(SQUARE)
    assert _steps(det, [LEVEL, most, LEVEL, halved, halved * 0.1]) == [([], [])] * 5
    # a link carrying under 1 % of the mean link load says nothing when it reads 0
    mean = LEVEL[:8].mean()
    tiny = LEVEL.copy()
    tiny[8] = 0.005 * mean
    no_reverse = tiny.copy()
    no_reverse[8] = 0.0
    assert _steps(CutDetector(SQUARE), [tiny, no_reverse]) == [([], [])] * 2
    assert not CutDetector(SQUARE).down.any()


def test_a_link_without_a_reverse_is_cut_on_its_own_drop():
    det = CutDetector(SQUARE)
    down = LEVEL.copy()
    down[8] = 0.0  # a>c: the topology has no c>a
    assert _steps(det, [LEVEL, down]) == [([], []), (["a>c"], [])]


def test_a_step_not_measured_keeps_what_is_known():
    """A link with no load in a step (NaN) neither falls nor comes back: a cut first seen
    after a step held back reads against the load before the gap (the live engine holds
    a first 0 back for a step, engine/quality.py)."""
    held = LEVEL.copy()
    held[[0, 1]] = np.nan
    zero = LEVEL.copy()
    zero[[0, 1]] = 0.0
    det = CutDetector(SQUARE)
    assert _steps(det, [LEVEL, held, zero, held, zero]) == [
        ([], []),
        ([], []),
        (["a>b", "b>a"], []),
        ([], []),
        ([], []),
    ]
    assert det.down[[0, 1]].all() and det.down.sum() == 2


def test_a_reverse_held_back_defers_the_cut_a_step():
    """One direction reads 0, the other (busy) is not measured: read a step later, when
    both are, against the load they carried before (not the 0 of the first)."""
    first = LEVEL.copy()
    first[0], first[1] = 0.0, np.nan
    both = LEVEL.copy()
    both[[0, 1]] = 0.0
    got = _steps(CutDetector(SQUARE), [LEVEL, first, both])
    assert got == [([], []), ([], []), (["a>b", "b>a"], [])]


def test_a_backup_path_going_quiet_at_a_repair_is_not_a_cut():
    """While a-b is cut its traffic takes a detour over a-d; at the repair it moves back
    and the detour empties in the same step: one repair, no new cut (without the rule,
    a>d and d>a read as cut: two busy links of seven, not "most of the network")."""
    cut = LEVEL.copy()
    cut[[0, 1]] = 0.0
    repaired_detour_empty = LEVEL.copy()
    repaired_detour_empty[[7, 6]] = 0.0  # a>d, d>a: they carried only the detour's traffic
    det = CutDetector(SQUARE)
    got = _steps(det, [LEVEL, cut, repaired_detour_empty])
    assert got == [([], []), (["a>b", "b>a"], []), ([], ["a>b", "b>a"])]
    assert not det.down.any()


def test_a_restart_primes_what_was_down():
    """Primed with the last loads and the links read as cut before a restart, the
    detector reads their repair (and new cuts) as if it had never stopped."""
    cut = LEVEL.copy()
    cut[[0, 1]] = 0.0
    det = CutDetector(SQUARE)
    det.prime(cut, np.isin(np.arange(9), [0, 1]))
    assert _steps(det, [cut, LEVEL]) == [([], []), ([], ["a>b", "b>a"])]
    other = LEVEL.copy()
    other[[2, 3]] = 0.0
    assert _steps(det, [other]) == [(["b>c", "c>b"], [])]


@pytest.mark.parametrize(
    ("loads", "match"),
    [(np.ones(3), r"shape \(3,\); expected \(9,\)"), (-LEVEL, ">= 0"), (LEVEL * np.inf, "finite")],
)
def test_bad_loads_are_refused(loads, match):
    with pytest.raises(ValueError, match=match):
        CutDetector(SQUARE).update(loads)


@pytest.mark.parametrize(("name", "traffic"), [("abilene", "abilene"), ("nobel-eu", "sine")])
def test_every_scenario_failure_reads_at_its_step_and_nothing_else(name, traffic):
    """The simulator's failures (seeds 0-2, each scenario) are cable cuts: each reads as
    cut at its step, exactly its links, and nothing else reads as cut."""
    topo = load_topology(name)
    for seed in range(3):
        tr = load_abilene().slice(0, 1440) if traffic == "abilene" else None
        if tr is None:
            tr = sine_traffic(topo, n_steps=1440, seed=seed)
        for kind in ("drastic", "moderate", "mixed"):
            res = experiment(topo, tr, kind, seed=seed, step=720)
            det = CutDetector(topo.network)
            read = [det.update(y) for y in res.loads_bps]
            failed = {topo.network.link_names[i] for i in res.failed_links}
            assert read[720] == (frozenset(failed), frozenset()), (seed, kind)
            assert all(r == (frozenset(), frozenset()) for t, r in enumerate(read) if t != 720)


def test_fourteen_days_of_real_traffic_read_no_cut():
    """The shipped Abilene traffic (2004, 14 days of 5-minute matrices, gaps and all)
    routed with every link up: no step reads as a cut."""
    topo = load_topology("abilene")
    tr = load_abilene()
    r = route(topo.network, tr.pairs)
    loads = np.stack([r.loads(d) for d in tr.demands_bps])
    assert loads.shape[0] >= 14 * 288 and (loads == 0).any()  # the data has its zeros
    det = CutDetector(topo.network)
    assert not any(any(det.update(y)) for y in loads)
