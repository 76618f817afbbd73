"""Topologies: built-in names, SNDlib XML files, directed link names."""

import math
from pathlib import Path

import pytest

import simulator
from simulator.topology import BUILTIN_TOPOLOGIES, Link, Topology, load_sndlib_xml, load_topology
from simulator.traffic import load_abilene

SHIPPED_XML = Path(simulator.__file__).parent / "data" / "abilene" / "abilene-topology.xml"


def test_sndlib_xml_parses_shipped_abilene():
    topo = load_sndlib_xml(SHIPPED_XML)
    assert len(topo.nodes) == 12
    assert len(topo.links) == 15
    assert topo.has_coordinates
    caps = {frozenset((lk.source, lk.target)): lk.capacity_bps for lk in topo.links}
    assert caps[frozenset(("ATLAM5", "ATLAng"))] == 9920.0e6
    assert caps[frozenset(("ATLAng", "IPLSng"))] == 2480.0e6
    assert all(c is not None and c > 0 for c in caps.values())
    assert topo.positions["NYCMng"] == (-73.9667, 40.7833)
    assert topo.capacities_bps.shape == (30,)


def test_directed_link_names_follow_links(abilene):
    names = abilene.link_names
    assert len(names) == 2 * len(abilene.links) == len(set(names))
    for i, lk in enumerate(abilene.links):
        assert names[2 * i] == f"{lk.source}>{lk.target}"
        assert names[2 * i + 1] == f"{lk.target}>{lk.source}"


@pytest.mark.parametrize(("name", "n_nodes", "n_links"), [("nobel-eu", 28, 41), ("geant", 22, 36)])
def test_builtin_topohub_topologies(name, n_nodes, n_links):
    topo = load_topology(name)
    assert (len(topo.nodes), len(topo.links)) == (n_nodes, n_links)
    assert topo.has_coordinates
    lon, lat = topo.positions[topo.nodes[0]]
    assert -180 <= lon <= 180 and -90 <= lat <= 90


def test_abilene_nodes_match_the_shipped_traffic(abilene):
    nodes = {n for pair in load_abilene().pairs for n in pair}
    assert nodes == set(abilene.nodes)
    assert abilene.links[0].capacity_bps == 9.92e9


def test_unknown_topology_names_valid_ones():
    with pytest.raises(ValueError, match="nobel-eu") as info:
        load_topology("nowhere")
    assert all(name in str(info.value) for name in BUILTIN_TOPOLOGIES)
    with pytest.raises(ValueError, match="topohub"):
        load_topology("sndlib/does-not-exist")


def test_link_lengths_are_great_circle(nobel):
    lengths = nobel.link_lengths_km()
    assert lengths.shape == (41,)
    assert (lengths > 50).all() and (lengths < 3000).all()
    i = nobel.link_index(("Amsterdam", "Brussels"))
    assert math.isclose(lengths[i], 160, rel_tol=0.25)


def test_link_index_either_direction_and_errors(abilene):
    assert abilene.link_index("ATLAng>ATLAM5") == abilene.link_index("ATLAM5>ATLAng")
    with pytest.raises(ValueError, match="no link between"):
        abilene.link_index("ATLAM5>STTLng")
    with pytest.raises(ValueError, match="SRC>DST"):
        abilene.link_index("ATLAM5")


def test_topology_rejects_bad_structure():
    with pytest.raises(ValueError, match="unknown node"):
        Topology("t", ("a", "b"), (Link("a", "c"),))
    with pytest.raises(ValueError, match="parallel"):
        Topology("t", ("a", "b"), (Link("a", "b"), Link("b", "a")))
    with pytest.raises(ValueError, match="self-loop"):
        Topology("t", ("a",), (Link("a", "a"),))
    with pytest.raises(ValueError, match="'>'"):
        Topology("t", ("a>b", "c"), ())


def test_sndlib_xml_errors(tmp_path):
    native = tmp_path / "native.txt"
    native.write_text("?SNDlib native format; type: network\nNODES (\n)\n")
    with pytest.raises(ValueError, match="not an XML file"):
        load_sndlib_xml(native)
    other = tmp_path / "other.xml"
    other.write_text("<root><a/></root>")
    with pytest.raises(ValueError, match="not an SNDlib XML network"):
        load_sndlib_xml(other)


def test_sndlib_xml_merges_parallel_links(tmp_path):
    ns = "http://sndlib.zib.de/network"
    link = (
        "<link id='{i}'><source>a</source><target>b</target>"
        "<preInstalledModule><capacity>{c}</capacity></preInstalledModule></link>"
    )
    xml = (
        f"<network xmlns='{ns}'><networkStructure><nodes coordinatesType='pixel'>"
        "<node id='a'><coordinates><x>1</x><y>2</y></coordinates></node><node id='b'/>"
        f"</nodes><links>{link.format(i=1, c=100)}{link.format(i=2, c=40)}</links>"
        "</networkStructure></network>"
    )
    path = tmp_path / "pp.xml"
    path.write_text(xml)
    topo = load_sndlib_xml(path)
    assert topo.links == (Link("a", "b", 140e6),)
    assert not topo.has_coordinates  # pixel coordinates are not (lon, lat)
