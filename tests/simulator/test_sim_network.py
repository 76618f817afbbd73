"""SimulatedNetwork: what a live feeder reads."""

import itertools

import numpy as np

from simulator.failures import EventKind, LinkEvent, Scenario
from simulator.network import SimulatedNetwork


def test_iterates_the_simulated_loads(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 20)
    net = SimulatedNetwork(abilene, tr, Scenario((LinkEvent(10, ("WASHng", "NYCMng")),)), 60)
    steps = list(net)
    assert len(steps) == net.n_steps == 20
    loads = net.loads()
    for s in steps:
        assert s.offset_seconds == 60 * s.step
        np.testing.assert_array_equal([s.loads_bps[n] for n in net.link_names], loads[s.step])
    assert [s.step for s in steps if s.events] == [10]
    assert steps[10].loads_bps["NYCMng>WASHng"] == 0.0 < steps[9].loads_bps["NYCMng>WASHng"]


def test_loop_repairs_links_down_at_the_end(abilene, abilene_traffic):
    tr = abilene_traffic.slice(0, 6)
    net = SimulatedNetwork(abilene, tr, Scenario((LinkEvent(3, ("WASHng", "NYCMng")),)))
    steps = list(itertools.islice(net.iter_steps(loop=True), 13))
    assert steps[-1].step == 12 and steps[-1].offset_seconds == 12 * 300
    kinds = {s.step: [e.kind for e in s.events] for s in steps if s.events}
    assert kinds == {
        3: [EventKind.FAIL],
        6: [EventKind.REPAIR],
        9: [EventKind.FAIL],
        12: [EventKind.REPAIR],
    }
    assert steps[6].loads_bps == steps[0].loads_bps
