"""The network as linkcast knows it: nodes and directed links (issue 10)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ReaderDep, SessionDep
from api.errors import AUTH, responses
from db.topology import link_records
from network.records import build_topology
from network.routing import link_weights

router = APIRouter(prefix="/topology", tags=["topology"])


class NodePublic(BaseModel):
    name: str
    lon: float | None = Field(description="degrees, from a link's src_lon/dst_lon label")
    lat: float | None = Field(description="degrees, from a link's src_lat/dst_lat label")


class TopologyLinkPublic(BaseModel):
    name: str
    src: str
    dst: str
    capacity_bps: float | None
    metric: int | None = Field(description="IGP metric, from the link's `metric` label")
    reverse: str | None = Field(description="the link back from dst to src, if known")


class EdgeLinkPublic(BaseModel):
    name: str
    node: str = Field(description="the router where its traffic enters or leaves the network")
    direction: Literal["ingress", "egress"] = Field(
        description="ingress: traffic entering the network at `node`; egress: leaving it"
    )


WITHOUT_METRIC = (
    "links with no IGP metric (label `metric`) while others have one: routing by IGP"
    " metrics needs every link's, so until these have one it goes by distance, or hops,"
    " for every link (`metric` says which); empty when every link has one or none has"
)


class TopologyProblemPublic(BaseModel):
    link: str | None = Field(description="the link left out; null: coordinates clashed")
    detail: str


class TopologyPublic(BaseModel):
    nodes: list[NodePublic]
    links: list[TopologyLinkPublic]
    edges: list[EdgeLinkPublic] = Field(
        description="edge (access, peering) links, labelled `edge`: `ingress` or `egress`;"
        " not routed over, their loads summed per router are the demand estimate's node"
        " totals"
    )
    metric: Literal["igp", "distance", "hops"] = Field(
        description="what routing goes by: IGP metrics when every link has one, else "
        "great-circle distance when every node has coordinates, else hop count"
    )
    unplaced: list[str] = Field(
        description="links whose nodes are unknown: set src and dst, or name them A>B"
    )
    problems: list[TopologyProblemPublic] = Field(
        description="links left out because a field or label could not be read, and why"
    )
    without_metric: list[str] = Field(description=WITHOUT_METRIC)


@router.get("", response_model=TopologyPublic, responses=responses(*AUTH))
def get_topology(session: SessionDep, _: ReaderDep) -> TopologyPublic:
    """Nodes and directed links from the registered links: nodes from `src`/`dst` or
    `A>B` names, IGP metric from the `metric` label, node coordinates from the
    `src_lat`, `src_lon`, `dst_lat`, `dst_lon` labels; links labelled `edge` (`ingress`
    at their `dst`, `egress` at their `src`) listed apart as edge links."""
    built = build_topology(link_records(session=session))
    topo = built.topology
    names = topo.link_names
    nodes = []
    for n in topo.nodes:
        lon, lat = topo.positions.get(n, (None, None))
        nodes.append(NodePublic(name=n, lon=lon, lat=lat))
    links = []
    for i, lk in enumerate(topo.links):
        back = topo.reverse(i)
        links.append(
            TopologyLinkPublic(
                name=lk.name,
                src=lk.src,
                dst=lk.dst,
                capacity_bps=lk.capacity_bps,
                metric=lk.metric,
                reverse=None if back is None else names[back],
            )
        )
    return TopologyPublic(
        nodes=nodes,
        links=links,
        edges=[
            EdgeLinkPublic(name=e.name, node=e.node, direction=e.direction) for e in built.edges
        ],
        metric=link_weights(topo)[1],
        unplaced=list(built.unplaced),
        problems=[TopologyProblemPublic(link=k, detail=d) for k, d in built.problems],
        without_metric=list(topo.links_without_metric),
    )
