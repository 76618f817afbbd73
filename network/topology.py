"""Topology: nodes and directed links, as linkcast knows them.

A *directed link* carries traffic from its source node to its destination node;
a cable is two directed links, one each way. Links are named by the operator
(``ATLAng>HSTNng``, ``r1:xe-0/0/1``); a name of the form ``A>B`` gives its nodes
when ``src`` and ``dst`` are not set. Parallel links (two links from ``A`` to
``B``) are allowed. A link may carry a capacity (bit/s) and an IGP metric; a
node may have coordinates, kept as ``(lon, lat)`` in degrees.

Examples
--------
>>> topo = Topology.from_links([
...     {"name": "a>b", "capacity_bps": 1e9, "labels": {"metric": "10"}},
...     {"name": "b>a", "capacity_bps": 1e9, "labels": {"metric": "10"}},
...     {"name": "r2:xe-0/0/1", "src": "b", "dst": "c"},
... ])
>>> topo.nodes, topo.link_names
(('a', 'b', 'c'), ('a>b', 'b>a', 'r2:xe-0/0/1'))
>>> topo.reverse(0), topo.reverse(2), topo.duplex_groups()
(1, None, ((0, 1), (2,)))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

__all__ = ["EARTH_RADIUS_KM", "MAX_METRIC", "Link", "Topology", "endpoints", "great_circle_km"]

EARTH_RADIUS_KM = 6371.0
#: Largest IGP metric accepted (IS-IS wide metrics stop at 2**24 - 1).
MAX_METRIC = 2**24 - 1


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two ``(lon, lat)`` points in kilometres.

    Parameters
    ----------
    a, b : tuple of float
        Longitude and latitude in degrees.

    Returns
    -------
    float
        Haversine distance on a sphere of radius :data:`EARTH_RADIUS_KM`.

    Examples
    --------
    >>> round(great_circle_km((0.0, 0.0), (0.0, 1.0)), 1)
    111.2
    """
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def endpoints(name: str, src: str | None = None, dst: str | None = None) -> tuple[str, str] | None:
    """The ``(src, dst)`` nodes of a link: given ones, else from an ``A>B`` name.

    Returns None when neither says (a name such as ``r1:xe-0/0/1`` without nodes).

    Examples
    --------
    >>> endpoints("ATLAng>HSTNng"), endpoints("r1:xe-0/0/1", "r1", "r2"), endpoints("eth0")
    (('ATLAng', 'HSTNng'), ('r1', 'r2'), None)
    """
    if src and dst:
        return str(src), str(dst)
    parts = name.split(">")
    if len(parts) == 2 and all(p.strip() for p in parts):
        return parts[0].strip(), parts[1].strip()
    return None


def _check_metric(metric: Any, where: str) -> int | None:
    if metric is None or metric == "":
        return None
    try:
        value = float(metric)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(metric, bool) or not value.is_integer() or not 1 <= value <= MAX_METRIC:
        raise ValueError(f"{where}: metric {metric!r} is not an integer in 1..{MAX_METRIC}")
    return int(value)


@dataclass(frozen=True)
class Link:
    """A directed link.

    Parameters
    ----------
    src, dst : str
        Source and destination nodes (distinct).
    name : str
        The operator's name; ``"src>dst"`` when empty.
    capacity_bps : float or None
        Line rate in bit/s (finite, > 0) when known.
    metric : int or None
        IGP metric (1 .. :data:`MAX_METRIC`) when known; integral floats and
        digit strings are accepted.

    Raises
    ------
    ValueError
        On an empty node, a self-loop, a bad capacity or metric.
    """

    src: str
    dst: str
    name: str = ""
    capacity_bps: float | None = None
    metric: int | None = None

    def __post_init__(self) -> None:
        label = self.name or f"{self.src}>{self.dst}"
        object.__setattr__(self, "name", label)
        if not self.src or not self.dst:
            raise ValueError(f"link {label!r}: empty source or destination node")
        if self.src == self.dst:
            raise ValueError(f"link {label!r}: self-loop at node {self.src!r}")
        cap = self.capacity_bps
        if cap is not None:
            if isinstance(cap, bool) or not math.isfinite(float(cap)) or float(cap) <= 0:
                raise ValueError(f"link {label!r}: capacity_bps {cap!r} is not a number > 0")
            object.__setattr__(self, "capacity_bps", float(cap))
        object.__setattr__(self, "metric", _check_metric(self.metric, f"link {label!r}"))


def _coordinate(value: Any, lo: float, hi: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not lo <= v <= hi:  # NaN fails both comparisons
        raise ValueError(f"{what} {value!r} is not a number in {lo:g}..{hi:g}")
    return v


@dataclass(frozen=True)
class Topology:
    """Nodes, directed links and node coordinates.

    Parameters
    ----------
    nodes : tuple of str
        Unique node names; their order fixes the order of pairs.
    links : tuple of Link
        Directed links between known nodes, with unique names; link ``i`` is row
        ``i`` of every routing matrix.
    positions : mapping of str to (lon, lat)
        Node coordinates in degrees; may be empty or partial.
    name : str
        A label for messages.

    Raises
    ------
    ValueError
        On duplicate nodes or link names, links naming unknown nodes, positions
        of unknown nodes or outside [-180, 180] x [-90, 90].
    """

    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    positions: Mapping[str, tuple[float, float]] = field(default_factory=dict, hash=False)
    name: str = ""
    _by_name: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    _reverse: tuple[int | None, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"topology {self.name!r}" if self.name else "topology"
        nodes, links = tuple(str(n) for n in self.nodes), tuple(self.links)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "links", links)
        if len(set(nodes)) != len(nodes):
            dup = sorted({n for n in nodes if nodes.count(n) > 1})
            raise ValueError(f"{where}: duplicate node names {dup}")
        if any(not n for n in nodes):
            raise ValueError(f"{where}: an empty node name")
        known = set(nodes)
        by_name: dict[str, int] = {}
        for i, lk in enumerate(links):
            if not isinstance(lk, Link):
                raise ValueError(f"{where}: links[{i}] is {type(lk).__name__}, not a Link")
            for end in (lk.src, lk.dst):
                if end not in known:
                    raise ValueError(f"{where}: link {lk.name!r} names unknown node {end!r}")
            if lk.name in by_name:
                raise ValueError(f"{where}: two links are named {lk.name!r}")
            by_name[lk.name] = i
        positions: dict[str, tuple[float, float]] = {}
        for n, p in dict(self.positions).items():
            if n not in known:
                raise ValueError(f"{where}: position for unknown node {n!r}")
            lon = _coordinate(p[0], -180, 180, f"{where}: node {n!r} longitude")
            lat = _coordinate(p[1], -90, 90, f"{where}: node {n!r} latitude")
            positions[n] = (lon, lat)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "_by_name", by_name)
        # Reverse of link i (A to B): the k-th link from B to A, i being the k-th from A to B.
        groups: dict[tuple[str, str], list[int]] = {}
        for i, lk in enumerate(links):
            groups.setdefault((lk.src, lk.dst), []).append(i)
        reverse: list[int | None] = [None] * len(links)
        for (a, b), fwd in groups.items():
            back = groups.get((b, a), [])
            for k, i in enumerate(fwd):
                reverse[i] = back[k] if k < len(back) else None
        object.__setattr__(self, "_reverse", tuple(reverse))

    @classmethod
    def from_links(
        cls, records: Iterable[Mapping[str, Any]], *, name: str = "", skip_unplaced: bool = False
    ) -> Topology:
        """Build a topology from link records as ``POST /links`` takes them.

        Parameters
        ----------
        records : iterable of mapping
            Each with ``name`` and optionally ``src``, ``dst``, ``capacity_bps``,
            ``metric`` and ``labels``. The nodes are ``src`` and ``dst``, else the
            two sides of an ``A>B`` name (:func:`endpoints`). The IGP metric is the
            record's ``metric``, else its label ``metric``. Node coordinates come
            from the labels ``src_lat``, ``src_lon``, ``dst_lat``, ``dst_lon``
            (degrees; label values may be strings).
        name : str
            The topology's label.
        skip_unplaced : bool
            Leave out links whose nodes are unknown instead of raising.

        Returns
        -------
        Topology
            Nodes in order of first appearance, links in record order.

        Raises
        ------
        ValueError
            Naming the link: no nodes (unless skipped), a bad capacity, metric or
            coordinate, a node given two different positions, duplicate names.
        """
        nodes: dict[str, None] = {}
        links: list[Link] = []
        positions: dict[str, tuple[float, float]] = {}
        for rec in records:
            link_name = str(rec.get("name") or "")
            labels = rec.get("labels") or {}
            ends = endpoints(link_name, rec.get("src"), rec.get("dst"))
            if ends is None:
                if skip_unplaced:
                    continue
                raise ValueError(f"link {link_name!r}: no nodes; set src and dst or name it 'A>B'")
            metric = rec.get("metric")
            metric = labels.get("metric") if metric is None else metric
            links.append(Link(ends[0], ends[1], link_name, rec.get("capacity_bps"), metric))
            for end, node in zip(("src", "dst"), ends, strict=True):
                nodes.setdefault(node)
                lat, lon = labels.get(f"{end}_lat"), labels.get(f"{end}_lon")
                if lat is None and lon is None:
                    continue
                where = f"link {link_name!r}: label {end}_"
                pos = (
                    _coordinate(lon, -180, 180, where + "lon"),
                    _coordinate(lat, -90, 90, where + "lat"),
                )
                old = positions.setdefault(node, pos)
                if max(abs(old[0] - pos[0]), abs(old[1] - pos[1])) > 1e-6:
                    raise ValueError(
                        f"link {link_name!r}: node {node!r} at (lon, lat) {pos}, "
                        f"but another link puts it at {old}"
                    )
        return cls(tuple(nodes), tuple(links), positions, name)

    @property
    def link_names(self) -> tuple[str, ...]:
        """Link names, in link order."""
        return tuple(lk.name for lk in self.links)

    def link_index(self, link: str | int) -> int:
        """Index of a link given by name or index.

        Raises
        ------
        ValueError
            If there is no such link.
        """
        if isinstance(link, int | np.integer) and not isinstance(link, bool):
            if not 0 <= int(link) < len(self.links):
                raise ValueError(f"link index {link} out of range 0..{len(self.links) - 1}")
            return int(link)
        try:
            return self._by_name[str(link)]
        except KeyError:
            raise ValueError(f"no link named {link!r} in the topology") from None

    def links_between(self, a: str, b: str) -> tuple[int, ...]:
        """Indices of the links from ``a`` to ``b`` (several when parallel)."""
        return tuple(i for i, lk in enumerate(self.links) if lk.src == a and lk.dst == b)

    def reverse(self, link: str | int) -> int | None:
        """The link back: the k-th from B to A for the k-th from A to B, or None."""
        return self._reverse[self.link_index(link)]

    def with_reverses(self, links: Iterable[str]) -> list[str]:
        """``links`` (names) and the reverse of each of them that is in the topology,
        sorted, each once: what a link down takes down for routing. An IGP drops an
        adjacency both ways when one direction fails (IS-IS and OSPF check that each
        side hears the other), so the link back carries nothing either. Names not in
        the topology are kept as given.

        Examples
        --------
        >>> t = Topology(("a", "b", "c"), (Link("a", "b"), Link("b", "a"), Link("b", "c")))
        >>> t.with_reverses(["a>b", "b>c"]), t.with_reverses(["b>a", "x>y"])
        (['a>b', 'b>a', 'b>c'], ['a>b', 'b>a', 'x>y'])
        """
        out = set(links)
        for name in list(out):
            back = self.reverse(name) if name in self._by_name else None
            if back is not None:
                out.add(self.link_names[back])
        return sorted(out)

    def duplex_groups(self) -> tuple[tuple[int, ...], ...]:
        """Each link with its reverse (a cable), in order of their first link.

        The failure units of an N-1 scan: a cut cable takes both directions down.
        """
        out: list[tuple[int, ...]] = []
        for i, back in enumerate(self._reverse):
            if back is None:
                out.append((i,))
            elif i < back:
                out.append((i, back))
        return tuple(out)

    @property
    def capacities_bps(self) -> np.ndarray:
        """``(L,)`` capacity of each link in bit/s, NaN where unknown."""
        return np.array(
            [math.nan if lk.capacity_bps is None else lk.capacity_bps for lk in self.links],
            dtype=float,
        )

    @property
    def has_metrics(self) -> bool:
        """Whether there are links and every one has an IGP metric."""
        return bool(self.links) and all(lk.metric is not None for lk in self.links)

    @property
    def links_without_metric(self) -> tuple[str, ...]:
        """Links with no IGP metric where some other link has one, by name (empty when
        all or none have one). Routing by IGP metrics needs every link's, so with these
        it goes by distance or hops for all (:func:`network.routing.link_weights`)."""
        lacking = tuple(lk.name for lk in self.links if lk.metric is None)
        return lacking if len(lacking) < len(self.links) else ()

    @property
    def has_coordinates(self) -> bool:
        """Whether every node has a position."""
        return bool(self.nodes) and all(n in self.positions for n in self.nodes)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every ordered origin-destination pair of distinct nodes, in node order."""
        return tuple((s, d) for s in self.nodes for d in self.nodes if s != d)

    def link_lengths_km(self) -> np.ndarray:
        """``(L,)`` great-circle length of each link in km.

        Raises
        ------
        ValueError
            If some node has no position.
        """
        if not self.has_coordinates:
            missing = [n for n in self.nodes if n not in self.positions]
            raise ValueError(f"topology {self.name!r}: no position for nodes {missing[:5]}")
        pos = self.positions
        return np.array(
            [great_circle_km(pos[lk.src], pos[lk.dst]) for lk in self.links], dtype=float
        )

    def to_networkx(self) -> nx.MultiDiGraph:
        """A ``networkx.MultiDiGraph``: nodes with ``pos``, edges keyed by link name.

        Edges carry ``index``, ``capacity_bps`` and ``metric``.
        """
        g = nx.MultiDiGraph(name=self.name)
        for n in self.nodes:
            g.add_node(n, **({"pos": self.positions[n]} if n in self.positions else {}))
        for i, lk in enumerate(self.links):
            g.add_edge(
                lk.src, lk.dst, key=lk.name, index=i, capacity_bps=lk.capacity_bps,
                metric=lk.metric,
            )  # fmt: skip
        return g
