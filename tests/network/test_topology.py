"""Topology: built from link records, validated with clear errors, cables and reverses."""

import math

import networkx as nx
import numpy as np
import pytest

from network.demand import edge_totals
from network.records import build_topology
from network.topology import Link, Topology, endpoints


def test_from_links_reads_names_fields_and_labels():
    topo = Topology.from_links(
        [
            {
                "name": "ATLAng>HSTNng",
                "capacity_bps": 1e10,
                "labels": {"metric": "1176", "src_lat": "33.75", "src_lon": "-84.3833"},
            },
            {"name": "HSTNng>ATLAng", "capacity_bps": 1e10, "metric": 1176},
            {
                "name": "r1:xe-0/0/1",
                "src": "HSTNng",
                "dst": "KSCYng",
                "labels": {"dst_lat": 39.0997, "dst_lon": -94.5786},
            },
        ],
        name="abilene-ish",
    )
    assert topo.nodes == ("ATLAng", "HSTNng", "KSCYng")
    assert topo.link_names == ("ATLAng>HSTNng", "HSTNng>ATLAng", "r1:xe-0/0/1")
    assert [lk.metric for lk in topo.links] == [1176, 1176, None]
    assert topo.links[2].src == "HSTNng" and topo.links[2].dst == "KSCYng"
    assert topo.positions == {"ATLAng": (-84.3833, 33.75), "KSCYng": (-94.5786, 39.0997)}
    assert not topo.has_metrics and not topo.has_coordinates
    assert math.isnan(topo.capacities_bps[2]) and topo.capacities_bps[0] == 1e10


def test_src_and_dst_win_over_the_name():
    topo = Topology.from_links([{"name": "x>y", "src": "a", "dst": "b"}])
    assert (topo.links[0].src, topo.links[0].dst, topo.links[0].name) == ("a", "b", "x>y")


def test_unplaced_links_raise_or_are_skipped():
    records = [{"name": "a>b"}, {"name": "eth0", "labels": {}}]
    with pytest.raises(ValueError, match="link 'eth0': no nodes; set src and dst or name it 'A>B'"):
        Topology.from_links(records)
    assert Topology.from_links(records, skip_unplaced=True).link_names == ("a>b",)
    assert endpoints("a>b>c") is None and endpoints(">b") is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"name": "a>b", "metric": 0}, "metric 0 is not an integer in 1..16777215"),
        ({"name": "a>b", "labels": {"metric": "1.5"}}, "metric '1.5' is not an integer"),
        ({"name": "a>b", "labels": {"metric": "ten"}}, "metric 'ten'"),
        ({"name": "a>b", "metric": True}, "metric True"),
        ({"name": "a>b", "capacity_bps": -1}, "capacity_bps -1 is not a number > 0"),
        ({"name": "a>b", "capacity_bps": math.inf}, "capacity_bps inf"),
        ({"name": "a>a"}, "self-loop at node 'a'"),
        ({"name": "a>b", "labels": {"src_lat": "91", "src_lon": "0"}}, "label src_lat '91'"),
        ({"name": "a>b", "labels": {"dst_lon": "east", "dst_lat": 1}}, "label dst_lon 'east'"),
        ({"name": "a>b", "labels": {"src_lat": "45"}}, "label src_lon None"),
    ],
)
def test_bad_records_say_which_link_and_why(record, message):
    with pytest.raises(ValueError, match="link 'a>.'") as info:
        Topology.from_links([record])
    assert message in str(info.value)


def test_a_node_in_two_places_is_refused():
    with pytest.raises(ValueError, match="node 'b' at .* but another link puts it at"):
        Topology.from_links(
            [
                {"name": "a>b", "labels": {"dst_lat": 1, "dst_lon": 2}},
                {"name": "b>a", "labels": {"src_lat": 1, "src_lon": 3}},
            ]
        )


def test_topology_rejects_bad_structure():
    with pytest.raises(ValueError, match="names unknown node 'c'"):
        Topology(("a", "b"), (Link("a", "c"),))
    with pytest.raises(ValueError, match="two links are named 'a>b'"):
        Topology(("a", "b"), (Link("a", "b"), Link("a", "b")))
    with pytest.raises(ValueError, match="duplicate node names"):
        Topology(("a", "a"), ())
    with pytest.raises(ValueError, match="position for unknown node 'z'"):
        Topology(("a",), (), {"z": (0, 0)})
    with pytest.raises(ValueError, match="longitude 200"):
        Topology(("a",), (), {"a": (200, 0)})
    with pytest.raises(ValueError, match="not a Link"):
        Topology(("a", "b"), (("a", "b"),))
    with pytest.raises(ValueError, match="no link named 'b>a'"):
        Topology(("a", "b"), (Link("a", "b"),)).link_index("b>a")


def test_reverse_pairs_parallel_links_in_order_and_cables_group_them():
    topo = Topology(
        ("a", "b", "c"),
        (
            Link("a", "b", "ab1"),
            Link("a", "b", "ab2"),
            Link("b", "a", "ba1"),
            Link("b", "c"),
            Link("b", "a", "ba2"),
        ),
    )
    assert [topo.reverse(i) for i in range(5)] == [2, 4, 0, None, 1]
    assert topo.duplex_groups() == ((0, 2), (1, 4), (3,))
    assert topo.links_between("a", "b") == (0, 1)


def test_to_networkx_keeps_every_link(nobel):
    g = nobel.network.to_networkx()
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_nodes() == 28 and g.number_of_edges() == 82
    assert g.nodes["Amsterdam"]["pos"] == nobel.positions["Amsterdam"]
    lengths = nobel.network.link_lengths_km()
    assert lengths.shape == (82,) and (lengths[::2] == lengths[1::2]).all()


def test_build_topology_keeps_what_it_can_and_says_what_it_left_out():
    built = build_topology(
        [
            {"name": "a>b", "labels": {"dst_lat": 1, "dst_lon": 2, "metric": 3}},
            {"name": "b>a", "labels": {"src_lat": 1, "src_lon": 2}},
            {"name": "b>c", "capacity_bps": -1},
            {"name": "eth0"},
            {"name": "a>b", "src": "x", "dst": "y"},
        ]
    )
    assert built.topology.link_names == ("a>b", "b>a")
    assert built.topology.positions == {"b": (2.0, 1.0)}
    assert built.unplaced == ("eth0",)
    assert built.problems == (
        ("b>c", "link 'b>c': capacity_bps -1 is not a number > 0"),
        ("a>b", "a second link named 'a>b'"),
    )
    clash = build_topology(
        [
            {"name": "a>b", "labels": {"dst_lat": 1, "dst_lon": 2}},
            {"name": "c>b", "labels": {"dst_lat": 5, "dst_lon": 2}},
        ]
    )
    assert clash.topology.link_names == ("a>b", "c>b") and clash.topology.positions == {}
    assert clash.problems[0][0] is None
    assert (
        "node 'b' at (lon, lat) (2.0, 5.0), but another link puts it at (2.0, 1.0)"
        in (clash.problems[0][1])
    )


def test_edge_links_are_set_apart_with_their_router_and_direction():
    built = build_topology(
        [
            {"name": "a>b"},
            {"name": "b>a"},
            {"name": "r1:xe-0/0/1", "src": "cust", "dst": "a", "labels": {"edge": "ingress"}},
            {"name": "a>peer", "labels": {"edge": "egress", "metric": 5}},
            {"name": "b>up", "labels": {"edge": "both"}},
            {"name": "z>q", "labels": {"edge": "ingress"}},
            {"name": "ifX", "labels": {"edge": "ingress"}},
        ]
    )
    # no routing crosses them, and their outer ends are no nodes
    assert built.topology.link_names == ("a>b", "b>a")
    assert built.topology.nodes == ("a", "b")
    assert [(e.name, e.node, e.direction) for e in built.edges] == [
        ("r1:xe-0/0/1", "a", "ingress"),
        ("a>peer", "a", "egress"),
    ]
    assert built.unplaced == ("ifX",)
    assert built.problems == (
        ("b>up", "link 'b>up': label edge 'both' is not 'ingress' or 'egress'"),
        ("z>q", "ingress link 'z>q': no backbone link has its router 'q'"),
    )


def test_edge_totals_sum_each_routers_edge_links_nan_where_not_measured():
    built = build_topology(
        [
            {"name": "a>b"},
            {"name": "b>a"},
            {"name": "c1>a", "labels": {"edge": "ingress"}},
            {"name": "c2>a", "labels": {"edge": "ingress"}},
            {"name": "b>c3", "labels": {"edge": "egress"}},
            {"name": "a>c1", "labels": {"edge": "egress"}},
        ]
    )
    loads = {"c1>a": 1e9, "c2>a": 2e9, "b>c3": 2.5e9, "a>c1": 0.5e9, "a>b": 7e9}
    out, inn = edge_totals(built.topology, built.edges, loads)
    # b has no ingress edge link: not measured (NaN), so fitted, never taken as 0
    np.testing.assert_array_equal(out, [3e9, np.nan])
    np.testing.assert_array_equal(inn, [0.5e9, 2.5e9])
    # an edge link without a finite load >= 0: its router's total in that direction is
    # not measured (a partial sum would make it look smaller); the others stand
    for bad in (None, float("nan"), -1.0, float("inf")):
        out, inn = edge_totals(built.topology, built.edges, {**loads, "c2>a": bad})
        assert np.isnan(out).all()
        np.testing.assert_array_equal(inn, [0.5e9, 2.5e9])
    assert edge_totals(built.topology, (), loads) is None
    assert edge_totals(built.topology, built.edges, {}) is None
    other = build_topology([{"name": "x>y"}, {"name": "y>x"}]).topology
    with pytest.raises(ValueError, match="not a node of the topology"):
        edge_totals(other, built.edges, loads)


def test_an_edge_link_needs_only_its_routers_end():
    built = build_topology(
        [
            {"name": "a>b"},
            {"name": "b>a"},
            {"name": "a:xe-1/0/0:in", "dst": "a", "labels": {"edge": "ingress"}},
            {"name": "a:xe-1/0/0:out", "src": "a", "labels": {"edge": "egress"}},
            {"name": "b:xe-1/0/0:in", "src": "b", "labels": {"edge": "ingress"}},
        ]
    )
    assert [(e.name, e.node, e.direction) for e in built.edges] == [
        ("a:xe-1/0/0:in", "a", "ingress"),
        ("a:xe-1/0/0:out", "a", "egress"),
    ]
    assert built.unplaced == ("b:xe-1/0/0:in",)  # an ingress link names its router by dst
