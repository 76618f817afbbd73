"""The simulator's networks: cables between nodes, loaded from topohub or SNDlib XML.

A simulated network is a set of *cables* (undirected links) between nodes; each
carries traffic in both directions, as two directed links named ``SRC>DST`` (the
link names of DESIGN.md). Cable ``i`` owns directed links ``2 * i``
(``source>target``) and ``2 * i + 1`` (``target>source``) of :attr:`Topology.network`,
the :class:`network.topology.Topology` that routing, demand estimation and
re-route prediction work on (the package linkcast's live service shares). A cable
failure takes both its directed links down.

Topologies come from the ``topohub`` package (SNDlib and Topology Zoo networks)
or from an SNDlib XML network file. Positions are ``(lon, lat)`` in degrees.

Examples
--------
>>> topo = load_topology("abilene")
>>> len(topo.nodes), len(topo.links), len(topo.link_names)
(12, 15, 30)
>>> topo.link_names[:2]
('ATLAng>ATLAM5', 'ATLAM5>ATLAng')
>>> topo.links[0].capacity_bps
9920000000.0
>>> sorted(topo.directed({0}))
[0, 1]
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

import network.topology as net

__all__ = [
    "BUILTIN_TOPOLOGIES",
    "Link",
    "Topology",
    "load_sndlib_xml",
    "load_topology",
]

#: Friendly names of the built-in topologies and where each comes from. ``abilene``
#: is read from the SNDlib file shipped in ``simulator/data/abilene`` (its node ids
#: match the shipped traffic matrices, and it has the installed capacities); the
#: others come from ``topohub``. Any other ``topohub`` key (``"sndlib/germany50"``,
#: ``"topozoo/..."``) is accepted as is.
BUILTIN_TOPOLOGIES: dict[str, str] = {
    "nobel-eu": "sndlib/nobel-eu",
    "euro28": "sndlib/nobel-eu",
    "abilene": "data/abilene/abilene-topology.xml",
    "geant": "sndlib/geant",
}


@dataclass(frozen=True)
class Link:
    """A cable (undirected link) between two nodes.

    Parameters
    ----------
    source, target : str
        Node names; the order only fixes which directed link comes first.
    capacity_bps : float or None
        Installed capacity per direction in bit/s, when known.
    """

    source: str
    target: str
    capacity_bps: float | None = None


@dataclass(frozen=True)
class Topology:
    """A simulated network: named nodes, optional positions and cables.

    Parameters
    ----------
    name : str
        A label for reports.
    nodes : tuple of str
        Node names, unique; their order fixes the order of pairs.
    links : tuple of Link
        Cables; no self-loops and at most one cable per node pair
        (parallel cables should be merged into one, capacities summed).
    positions : mapping of str to (lon, lat)
        Geographic positions in degrees; may be empty or partial.

    Raises
    ------
    ValueError
        On duplicate nodes, cables naming unknown nodes, self-loops, parallel
        cables, node names containing ``>`` (the link-name separator), or what
        :class:`network.topology.Topology` refuses (bad capacities, positions).
    """

    name: str
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    positions: Mapping[str, tuple[float, float]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "links", tuple(self.links))
        for node in self.nodes:
            if ">" in node or not node:
                raise ValueError(
                    f"topology {self.name!r}: node name {node!r} is empty or contains '>'"
                )
        seen: set[frozenset[str]] = set()
        for link in self.links:
            key = frozenset((link.source, link.target))
            if link.source != link.target and key in seen:
                raise ValueError(
                    f"topology {self.name!r}: parallel links between {link.source!r} and "
                    f"{link.target!r}; merge them into one link"
                )
            seen.add(key)
        # The directed network checks the rest (unknown nodes, self-loops, positions).
        object.__setattr__(self, "positions", self.network.positions)

    @cached_property
    def network(self) -> net.Topology:
        """The directed network: cable ``i`` is links ``2 * i`` and ``2 * i + 1``."""
        links: list[net.Link] = []
        for lk in self.links:
            links.append(net.Link(lk.source, lk.target, capacity_bps=lk.capacity_bps))
            links.append(net.Link(lk.target, lk.source, capacity_bps=lk.capacity_bps))
        return net.Topology(self.nodes, tuple(links), self.positions, self.name)

    @property
    def directed_links(self) -> tuple[tuple[str, str], ...]:
        """``(src, dst)`` of every directed link: ``2 * i`` and ``2 * i + 1`` for cable ``i``."""
        return tuple((lk.src, lk.dst) for lk in self.network.links)

    @property
    def link_names(self) -> tuple[str, ...]:
        """Directed link names ``SRC>DST``, in :attr:`directed_links` order."""
        return self.network.link_names

    @property
    def capacities_bps(self) -> np.ndarray:
        """Capacity of each directed link in bit/s (NaN where unknown)."""
        return self.network.capacities_bps

    @property
    def has_coordinates(self) -> bool:
        """Whether every node has a position."""
        return self.network.has_coordinates

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every ordered origin-destination pair of distinct nodes, in node order."""
        return self.network.pairs

    def directed(self, cables: Iterable[int]) -> frozenset[int]:
        """Indices of the directed links of the given cables (both directions)."""
        return frozenset(d for i in cables for d in (2 * int(i), 2 * int(i) + 1))

    def link_lengths_km(self) -> np.ndarray:
        """Great-circle length of each cable in km.

        Raises
        ------
        ValueError
            If some node has no position.
        """
        return self.network.link_lengths_km()[::2]

    def link_index(self, link: str | tuple[str, str] | int) -> int:
        """Index of the cable named by ``"A>B"``, ``("A", "B")`` or an index.

        Either direction names the same cable.

        Raises
        ------
        ValueError
            If no cable joins the two nodes.

        Examples
        --------
        >>> topo = load_topology("abilene")
        >>> topo.link_index("ATLAM5>ATLAng") == topo.link_index(("ATLAng", "ATLAM5")) == 0
        True
        """
        if isinstance(link, int | np.integer):
            if not 0 <= int(link) < len(self.links):
                raise ValueError(f"link index {link} out of range 0..{len(self.links) - 1}")
            return int(link)
        if isinstance(link, str):
            parts = link.split(">")
            if len(parts) != 2:
                raise ValueError(f"link name {link!r} is not of the form 'SRC>DST'")
            a, b = parts
        else:
            a, b = link
        for i, lk in enumerate(self.links):
            if {lk.source, lk.target} == {a, b}:
                return i
        raise ValueError(f"topology {self.name!r} has no link between {a!r} and {b!r}")

    def degree(self) -> dict[str, int]:
        """Number of cables at each node."""
        deg = dict.fromkeys(self.nodes, 0)
        for lk in self.links:
            deg[lk.source] += 1
            deg[lk.target] += 1
        return deg


def _data_path(relative: str) -> Path:
    return Path(str(resources.files("simulator").joinpath(relative)))


def load_topology(name: str) -> Topology:
    """Load a built-in topology by friendly name or ``topohub`` key.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_TOPOLOGIES` (``nobel-eu``, ``abilene``, ``geant``,
        ``euro28`` as an alias of ``nobel-eu``), or a ``topohub`` key such as
        ``"sndlib/germany50"``.

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        If the name is neither built in nor a ``topohub`` key; the message
        lists the valid names.

    Examples
    --------
    >>> topo = load_topology("nobel-eu")
    >>> len(topo.nodes), len(topo.links), topo.has_coordinates
    (28, 41, True)
    """
    key = BUILTIN_TOPOLOGIES.get(name.lower(), name)
    if key.endswith(".xml"):
        topo = load_sndlib_xml(_data_path(key))
        return Topology(name.lower(), topo.nodes, topo.links, topo.positions)
    valid = ", ".join(sorted(BUILTIN_TOPOLOGIES))
    if "/" not in key:
        raise ValueError(
            f"unknown topology {name!r}; valid names: {valid}, or a topohub key such as "
            "'sndlib/germany50' (or use an SNDlib XML file)"
        )
    import topohub

    try:
        data = topohub.get(key)
    except Exception as exc:  # topohub raises various errors for unknown keys
        raise ValueError(
            f"unknown topology {name!r} (topohub has no {key!r}); valid names: {valid}, "
            "or a topohub key such as 'sndlib/germany50'"
        ) from exc
    return _from_node_link(name, data)


def _from_node_link(name: str, data: Mapping) -> Topology:
    ids: dict[object, str] = {}
    positions: dict[str, tuple[float, float]] = {}
    for node in data["nodes"]:
        label = str(node.get("name", node["id"]))
        ids[node["id"]] = label
        pos = node.get("pos")
        if pos is not None and len(pos) == 2:
            positions[label] = (float(pos[0]), float(pos[1]))
    links: list[Link] = []
    seen: set[frozenset[str]] = set()
    for edge in data.get("links", data.get("edges", [])):
        a, b = ids[edge["source"]], ids[edge["target"]]
        key = frozenset((a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        links.append(Link(a, b, edge.get("capacity_bps")))
    return Topology(name, tuple(ids.values()), tuple(links), positions)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for c in elem:
        if _local(c.tag) == name:
            return c
    return None


def _text(elem: ET.Element | None, name: str) -> str | None:
    if elem is None:
        return None
    c = _child(elem, name)
    return None if c is None or c.text is None else c.text.strip()


def load_sndlib_xml(path: str | Path) -> Topology:
    """Read an SNDlib XML network file.

    Nodes keep their ``id``; geographical coordinates (``x`` = lon, ``y`` = lat)
    become positions (pixel coordinates are ignored, so routing falls back to hop
    counts). A link's capacity is its ``preInstalledModule`` capacity, in Mbit/s
    in SNDlib, converted to bit/s; parallel links between the same two nodes are
    merged with their capacities summed. Demands in the file are ignored.

    Parameters
    ----------
    path : str or Path
        The ``.xml`` file.

    Returns
    -------
    Topology
        Named after the file's stem.

    Raises
    ------
    ValueError
        If the file is not SNDlib XML (e.g. the native text format), or a link
        or node is malformed.

    Examples
    --------
    >>> topo = load_sndlib_xml(_data_path("data/abilene/abilene-topology.xml"))
    >>> topo.name, len(topo.nodes), len(topo.links)
    ('abilene-topology', 12, 15)
    >>> topo.positions["ATLAM5"]
    (-84.3833, 33.75)
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(
            f"{path}: not an XML file ({exc}); expected an SNDlib XML network"
        ) from exc
    structure = _child(root, "networkStructure")
    nodes_el = None if structure is None else _child(structure, "nodes")
    links_el = None if structure is None else _child(structure, "links")
    if _local(root.tag) != "network" or nodes_el is None or links_el is None:
        raise ValueError(
            f"{path}: not an SNDlib XML network (expected <network><networkStructure> "
            "with <nodes> and <links>)"
        )
    geographical = nodes_el.get("coordinatesType", "geographical") == "geographical"
    nodes: list[str] = []
    positions: dict[str, tuple[float, float]] = {}
    for node in nodes_el:
        if _local(node.tag) != "node":
            continue
        node_id = node.get("id")
        if not node_id:
            raise ValueError(f"{path}: a <node> has no id")
        nodes.append(node_id)
        coords = _child(node, "coordinates")
        x, y = _text(coords, "x"), _text(coords, "y")
        if geographical and x is not None and y is not None:
            try:
                positions[node_id] = (float(x), float(y))
            except ValueError as exc:
                raise ValueError(f"{path}: node {node_id!r} has bad coordinates") from exc
    merged: dict[frozenset[str], Link] = {}
    for link in links_el:
        if _local(link.tag) != "link":
            continue
        link_id = link.get("id", "?")
        src, dst = _text(link, "source"), _text(link, "target")
        if not src or not dst:
            raise ValueError(f"{path}: link {link_id!r} lacks <source> or <target>")
        cap_text = _text(_child(link, "preInstalledModule"), "capacity")
        try:
            cap = None if cap_text is None else float(cap_text) * 1e6
        except ValueError as exc:
            raise ValueError(f"{path}: link {link_id!r} has a bad capacity {cap_text!r}") from exc
        key = frozenset((src, dst))
        if key in merged:
            old = merged[key]
            total = None if old.capacity_bps is None or cap is None else old.capacity_bps + cap
            merged[key] = Link(old.source, old.target, total)
        else:
            merged[key] = Link(src, dst, cap)
    try:
        return Topology(path.stem, tuple(nodes), tuple(merged.values()), positions)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
