"""A topology from stored link records, keeping whatever can be placed.

:meth:`network.topology.Topology.from_links` refuses a bad record outright, as an
import should. A service showing the network it knows (``GET /api/v1/topology``)
must answer anyway: :func:`build_topology` leaves out the links it cannot place
(no nodes known) or read (a bad metric, capacity or coordinate label), drops
coordinates that contradict each other, and says what it left out and why.

Edge links
    A link whose label ``edge`` is ``ingress`` or ``egress`` is not a link of the
    backbone: it carries traffic into the network at a router (``ingress``: its
    ``dst``, the router, from its ``src``, a customer, peer or upstream outside the
    model) or out of it (``egress``: from its ``src``, the router); only the router's
    end is needed (the field, or that side of an ``A>B`` name). These are the
    access and peering interfaces whose loads give tomogravity its gravity prior
    (Zhang, Roughan, Duffield and Greenberg, SIGMETRICS 2003: the traffic entering
    and leaving the network at each node): :func:`network.demand.edge_totals` sums
    them per router. They are kept out of the topology (no routing crosses them) and
    listed in :attr:`TopologyBuild.edges`; one at a router that no backbone link
    has is left out with a problem.

Examples
--------
>>> built = build_topology([
...     {"name": "a>b", "labels": {"metric": "5"}},
...     {"name": "b>a", "labels": {"metric": "-1"}},
...     {"name": "eth0"},
... ])
>>> built.topology.link_names, built.unplaced
(('a>b',), ('eth0',))
>>> built.problems
(('b>a', "link 'b>a': metric '-1' is not an integer in 1..16777215"),)

Two edge links of router ``a``, its customers' traffic in and out:

>>> built = build_topology([
...     {"name": "a>b"}, {"name": "b>a"},
...     {"name": "cust>a", "labels": {"edge": "ingress"}},
...     {"name": "a>cust", "labels": {"edge": "egress"}},
... ])
>>> built.topology.link_names, [(e.name, e.node, e.direction) for e in built.edges]
(('a>b', 'b>a'), [('cust>a', 'a', 'ingress'), ('a>cust', 'a', 'egress')])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from network.topology import Topology, endpoints

__all__ = ["EDGE_LABEL", "EdgeLink", "TopologyBuild", "build_topology", "edge_link"]

_COORDINATES = ("src_lat", "src_lon", "dst_lat", "dst_lon")
#: The label that marks an edge (access, peering) link, and its two values.
EDGE_LABEL = "edge"
EdgeDirection = Literal["ingress", "egress"]
_DIRECTIONS: tuple[EdgeDirection, ...] = ("ingress", "egress")


@dataclass(frozen=True)
class EdgeLink:
    """A link between a router and the outside (see "Edge links" in the module doc).

    Attributes
    ----------
    name : str
        The link's name, as its loads are stored.
    node : str
        The router (a node of the topology) where its traffic enters or leaves.
    direction : {"ingress", "egress"}
        ``ingress``: traffic entering the network at ``node``; ``egress``: leaving it.
    """

    name: str
    node: str
    direction: EdgeDirection


@dataclass(frozen=True)
class TopologyBuild:
    """What :func:`build_topology` made of the records.

    Attributes
    ----------
    topology : Topology
        Every link that could be placed and read.
    unplaced : tuple of str
        Names of links whose nodes are unknown (no ``src``/``dst``, no ``A>B`` name).
    problems : tuple of (str or None, str)
        ``(link name, why)`` for each link left out, or ``(None, why)`` when the
        coordinates of some nodes contradict each other (all coordinates are then
        dropped).
    edges : tuple of EdgeLink
        The edge links, in record order, each at a node of ``topology``.
    """

    topology: Topology
    unplaced: tuple[str, ...]
    problems: tuple[tuple[str | None, str], ...]
    edges: tuple[EdgeLink, ...] = ()


def edge_link(rec: Mapping[str, Any]) -> EdgeLink | None:
    """The edge link a link record declares with its label ``edge``, or None when it has
    no such label (a link of the backbone).

    Only the router's end is needed: ``dst`` for ``ingress``, ``src`` for ``egress``,
    else that side of an ``A>B`` name.

    Raises
    ------
    ValueError
        Naming the link: a value other than ``ingress`` or ``egress``, or no router.
    """
    link = str(rec.get("name") or "")
    role = (rec.get("labels") or {}).get(EDGE_LABEL)
    if role is None:
        return None
    edge = _edge(link, rec, role)
    if edge is None:
        end = "dst" if role == "ingress" else "src"
        raise ValueError(
            f"{role} link {link!r}: no router; set its {end} (the router it"
            f" {'enters' if role == 'ingress' else 'leaves'} the network at) or name it 'A>B'"
        )
    if isinstance(edge, str):
        raise ValueError(edge)
    return edge


def _edge(link: str, rec: Mapping[str, Any], role: Any) -> EdgeLink | str | None:
    """The edge link a record labelled ``edge`` declares; why not (a problem); or None
    when its router is not known (unplaced). Only the router's end is needed: ``dst``
    for ``ingress``, ``src`` for ``egress``, else that side of an ``A>B`` name."""
    if role not in _DIRECTIONS:
        return f"link {link!r}: label {EDGE_LABEL} {role!r} is not 'ingress' or 'egress'"
    router = rec.get("dst" if role == "ingress" else "src")
    if not router and (named := endpoints(link)) is not None:
        router = named[1] if role == "ingress" else named[0]
    return EdgeLink(link, str(router), role) if router else None


def build_topology(records: Iterable[Mapping[str, Any]], *, name: str = "") -> TopologyBuild:
    """Build a topology from link records, leaving out what cannot be used.

    Parameters
    ----------
    records : iterable of mapping
        As :meth:`Topology.from_links` takes them (``name``, ``src``, ``dst``,
        ``capacity_bps``, ``metric``, ``labels``).
    name : str
        The topology's label.

    Returns
    -------
    TopologyBuild
        Edge links (label ``edge``) apart from the topology, see the module doc.
    """
    good: list[Mapping[str, Any]] = []
    unplaced: list[str] = []
    problems: list[tuple[str | None, str]] = []
    edges: list[EdgeLink] = []
    seen: set[str] = set()
    for rec in records:
        link = str(rec.get("name") or "")
        if link in seen:
            problems.append((link, f"a second link named {link!r}"))
            continue
        seen.add(link)
        role = (rec.get("labels") or {}).get(EDGE_LABEL)
        if role is not None:
            edge = _edge(link, rec, role)
            if isinstance(edge, EdgeLink):
                edges.append(edge)
            elif edge is None:
                unplaced.append(link)
            else:
                problems.append((link, edge))
            continue
        if endpoints(link, rec.get("src"), rec.get("dst")) is None:
            unplaced.append(link)
            continue
        try:
            Topology.from_links([rec])
        except ValueError as exc:
            problems.append((link, str(exc)))
            continue
        good.append(rec)
    try:
        topology = Topology.from_links(good, name=name)
    except ValueError as exc:  # only coordinates can clash between valid links
        problems.append((None, f"{exc}; every node's coordinates are left out"))
        bare = [
            {**rec, "labels": {k: v for k, v in (rec.get("labels") or {}).items()
                               if k not in _COORDINATES}}
            for rec in good
        ]  # fmt: skip
        topology = Topology.from_links(bare, name=name)
    routers = set(topology.nodes)
    for e in edges:
        if e.node not in routers:
            why = f"no backbone link has its router {e.node!r}"
            problems.append((e.name, f"{e.direction} link {e.name!r}: {why}"))
    placed = tuple(e for e in edges if e.node in routers)
    return TopologyBuild(topology, tuple(unplaced), tuple(problems), placed)
