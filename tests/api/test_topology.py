"""GET /api/v1/topology: the network built from the registered links (issue 10)."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import auth


def test_topology_from_names_fields_and_labels(client, tokens, clean_db):
    admin = auth(tokens["admin"])
    for body in (
        {
            "name": "ATLAng>HSTNng",
            "capacity_bps": 1e10,
            "labels": {"metric": "1176", "src_lat": "33.75", "src_lon": "-84.3833"},
        },
        {"name": "HSTNng>ATLAng", "capacity_bps": 1e10, "labels": {"metric": 1176}},
        {"name": "r1:xe-0/0/1", "src": "HSTNng", "dst": "KSCYng", "labels": {"metric": "2"}},
        # edge links: a customer's traffic into ATLAng, a peer's out of HSTNng
        {"name": "cust1>ATLAng", "labels": {"edge": "ingress"}},
        {"name": "HSTNng:peer", "src": "HSTNng", "dst": "ix", "labels": {"edge": "egress"}},
    ):
        assert client.post("/api/v1/links", json=body, headers=admin).status_code == 201
    # A metric no router takes is refused now; a row stored before it was is left out.
    bad = {"name": "KSCYng>ATLAng", "labels": {"metric": "0"}}
    r = client.post("/api/v1/links", json=bad, headers=admin)
    assert r.status_code == 422 and "metric '0'" in r.json()["detail"], r.text
    with clean_db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO link (name, src, dst, labels)"
                """ VALUES ('KSCYng>ATLAng', 'KSCYng', 'ATLAng', '{"metric": "0"}')"""
            )
        )
    # A link pushed under a name with no nodes is registered, but cannot be placed.
    push = {"samples": [{"link": "eth0", "ts": "2026-01-01T00:00:00Z", "value": 1.0}]}
    assert client.post("/api/v1/telemetry", json=push, headers=auth(tokens["write"])).is_success

    r = client.get("/api/v1/topology", headers=auth(tokens["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nodes"] == [
        {"name": "ATLAng", "lon": -84.3833, "lat": 33.75},
        {"name": "HSTNng", "lon": None, "lat": None},
        {"name": "KSCYng", "lon": None, "lat": None},
    ]
    assert body["links"] == [
        {
            "name": "ATLAng>HSTNng",
            "src": "ATLAng",
            "dst": "HSTNng",
            "capacity_bps": 1e10,
            "metric": 1176,
            "reverse": "HSTNng>ATLAng",
        },
        {
            "name": "HSTNng>ATLAng",
            "src": "HSTNng",
            "dst": "ATLAng",
            "capacity_bps": 1e10,
            "metric": 1176,
            "reverse": "ATLAng>HSTNng",
        },
        {
            "name": "r1:xe-0/0/1",
            "src": "HSTNng",
            "dst": "KSCYng",
            "capacity_bps": None,
            "metric": 2,
            "reverse": None,
        },
    ]
    assert body["edges"] == [
        {"name": "HSTNng:peer", "node": "HSTNng", "direction": "egress"},
        {"name": "cust1>ATLAng", "node": "ATLAng", "direction": "ingress"},
    ]
    assert body["metric"] == "igp"  # every link left in has a metric
    assert body["without_metric"] == []
    assert body["unplaced"] == ["eth0"]
    assert body["problems"] == [
        {
            "link": "KSCYng>ATLAng",
            "detail": "link 'KSCYng>ATLAng': metric '0' is not an integer in 1..16777215",
        },
    ]


def test_empty_topology_and_auth(client, tokens):
    r = client.get("/api/v1/topology", headers=auth(tokens["read"]))
    assert r.json() == {
        "nodes": [],
        "links": [],
        "edges": [],
        "metric": "hops",
        "unplaced": [],
        "problems": [],
        "without_metric": [],
    }
    assert client.get("/api/v1/topology").status_code == 401


def test_one_link_without_a_metric_is_named_as_what_turns_routing_to_hops(client, tokens):
    """IGP metrics are used only when every link has one: a link added without one
    turns routing to hops for all, and /topology names it (it said only 'hops')."""
    admin, read = auth(tokens["admin"]), auth(tokens["read"])
    for name, metric in (("a>b", 100), ("b>a", 100), ("a>c", 10), ("c>b", 10), ("b>d", None)):
        body = {"name": name, "labels": {} if metric is None else {"metric": metric}}
        assert client.post("/api/v1/links", json=body, headers=admin).status_code == 201
    body = client.get("/api/v1/topology", headers=read).json()
    assert body["metric"] == "hops" and body["without_metric"] == ["b>d"]
    body = {"name": "b>d", "labels": {"metric": 10}}
    assert client.post("/api/v1/links", json=body, headers=admin).status_code == 200
    body = client.get("/api/v1/topology", headers=read).json()
    assert body["metric"] == "igp" and body["without_metric"] == []
