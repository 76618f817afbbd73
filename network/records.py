"""A topology from stored link records, keeping whatever can be placed.

:meth:`network.topology.Topology.from_links` refuses a bad record outright, as an
import should. A service showing the network it knows (``GET /api/v1/topology``)
must answer anyway: :func:`build_topology` leaves out the links it cannot place
(no nodes known) or read (a bad metric, capacity or coordinate label), drops
coordinates that contradict each other, and says what it left out and why.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from network.topology import Topology, endpoints

__all__ = ["TopologyBuild", "build_topology"]

_COORDINATES = ("src_lat", "src_lon", "dst_lat", "dst_lon")


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
    """

    topology: Topology
    unplaced: tuple[str, ...]
    problems: tuple[tuple[str | None, str], ...]


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
    """
    good: list[Mapping[str, Any]] = []
    unplaced: list[str] = []
    problems: list[tuple[str | None, str]] = []
    seen: set[str] = set()
    for rec in records:
        link = str(rec.get("name") or "")
        if link in seen:
            problems.append((link, f"a second link named {link!r}"))
            continue
        seen.add(link)
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
    return TopologyBuild(topology, tuple(unplaced), tuple(problems))
