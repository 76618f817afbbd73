"""The network model linkcast shares: topology, routing, demands, re-routes.

A pure package (numpy, scipy, networkx; nothing else of linkcast's):

:mod:`network.topology`
    Nodes and directed links (capacity in bit/s, optional IGP metric, node
    coordinates), built from what linkcast knows of its links
    (:mod:`network.records` builds what it can of stored records).
:mod:`network.routing`
    The routing matrix ``R`` (directed links x origin-destination pairs) of
    shortest paths by metric, with optional ECMP and a set of failed links.
:mod:`network.demand`
    Demand (traffic-matrix) estimation from link loads: tomogravity.
:mod:`network.cuts`
    Cable cuts and repairs read off the link loads (both directions of a busy link
    at 0 in one step).
:mod:`network.reroute`
    The load every surviving link will carry once failed links are routed
    around, the shift a failure makes from one step of measured loads, and an
    N-1 scan of every single failure.
"""

from network.cuts import CutDetector
from network.demand import DemandEstimate, fit_gravity, gravity, tomogravity
from network.records import TopologyBuild, build_topology
from network.reroute import FailureShift, N1Scan, Reroute, failure_shift, n1_scan, reroute
from network.routing import Metric, Routing, route
from network.topology import Link, Topology, great_circle_km

__all__ = [
    "CutDetector",
    "DemandEstimate",
    "FailureShift",
    "Link",
    "Metric",
    "N1Scan",
    "Reroute",
    "Routing",
    "Topology",
    "TopologyBuild",
    "build_topology",
    "failure_shift",
    "fit_gravity",
    "gravity",
    "great_circle_km",
    "n1_scan",
    "reroute",
    "route",
    "tomogravity",
]
