"""Links and samples queries."""

from __future__ import annotations

from api.schemas import LinkLatestPublic
from tests.conftest import auth
from tests.factories import sample


def test_create_update_and_list_links(client, tokens):
    h = auth(tokens["admin"])
    body = {"name": "ATLAng>HSTNng", "capacity_bps": 10e9, "labels": {"vendor": "juniper"}}
    r = client.post("/api/v1/links", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["src"] == "ATLAng" and r.json()["dst"] == "HSTNng"
    r = client.post("/api/v1/links", json=body | {"capacity_bps": 40e9}, headers=h)
    assert r.status_code == 200
    assert r.json()["capacity_bps"] == 40e9
    listed = client.get("/api/v1/links", headers=auth(tokens["read"])).json()
    assert listed["count"] == listed["total"] == 1
    assert listed["data"][0]["labels"] == {"vendor": "juniper"}


def test_link_create_needs_admin_and_valid_fields(client, tokens):
    r = client.post("/api/v1/links", json={"name": "a>b"}, headers=auth(tokens["write"]))
    assert r.status_code == 403
    r = client.post(
        "/api/v1/links", json={"name": "a>b", "capacity_bps": -5}, headers=auth(tokens["admin"])
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "capacity_bps"]
    r = client.post("/api/v1/links", content=b"{", headers=auth(tokens["admin"]))
    assert r.status_code == 400
    assert client.get("/api/v1/links", headers=auth(tokens["read"])).json()["total"] == 0


def test_an_edge_label_is_checked_when_the_link_is_registered(client, tokens):
    h = auth(tokens["admin"])
    for body, message in (
        (
            {"name": "r1:xe-0/0/1", "dst": "r1", "labels": {"edge": "both"}},
            "link 'r1:xe-0/0/1': label edge 'both' is not 'ingress' or 'egress'",
        ),
        (
            {"name": "r1:xe-0/0/1", "dst": "r1", "labels": {"edge": "Ingress"}},
            "label edge 'Ingress' is not 'ingress' or 'egress'",
        ),
        (
            {"name": "r1:xe-0/0/1", "src": "r1", "labels": {"edge": "ingress"}},
            "ingress link 'r1:xe-0/0/1': no router; set its dst",
        ),
        (
            {"name": "r1:xe-0/0/2", "dst": "peer", "labels": {"edge": "egress"}},
            "egress link 'r1:xe-0/0/2': no router; set its src",
        ),
    ):
        r = client.post("/api/v1/links", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert message in r.json()["detail"]
    assert client.get("/api/v1/links", headers=auth(tokens["read"])).json()["total"] == 0
    for body in (
        {"name": "r1:xe-0/0/1", "dst": "r1", "labels": {"edge": "ingress"}},
        {"name": "r1>peer", "labels": {"edge": "egress"}},
    ):
        assert client.post("/api/v1/links", json=body, headers=h).status_code == 201


def test_the_labels_the_network_model_reads_are_checked_when_a_link_is_registered(client, tokens):
    # A label the model cannot read used to be stored with a 201 and the link left out
    # of the topology, what-if and risk without a word there.
    h = auth(tokens["admin"])
    for body, message in (
        ({"name": "A>B", "labels": {"metric": "ten"}}, "link 'A>B': metric 'ten'"),
        ({"name": "A>B", "labels": {"metric": 0}}, "link 'A>B': metric 0"),
        ({"name": "A>B", "labels": {"metric": 1.5}}, "link 'A>B': metric 1.5"),
        ({"name": "A>B", "labels": {"src_lat": 95, "src_lon": 10}}, "label src_lat"),
        ({"name": "A>B", "labels": {"dst_lat": 50, "dst_lon": "east"}}, "label dst_lon"),
        # not placed yet (no nodes): checked all the same, before it is placed
        ({"name": "r1:xe-0/0/1", "labels": {"metric": "ten"}}, "metric 'ten'"),
    ):
        r = client.post("/api/v1/links", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert message in r.json()["detail"], r.json()
    assert client.get("/api/v1/links", headers=auth(tokens["read"])).json()["total"] == 0
    for body in (
        {"name": "A>B", "labels": {"metric": "10", "src_lat": 48.85, "src_lon": "2.35"}},
        {"name": "r1:xe-0/0/1", "labels": {"metric": 20}},
    ):
        r = client.post("/api/v1/links", json=body, headers=h)
        assert r.status_code == 201, r.text
    topo = client.get("/api/v1/topology", headers=auth(tokens["read"])).json()
    assert [lk["metric"] for lk in topo["links"]] == [10] and topo["problems"] == []


def test_samples_time_range_and_errors(client, tokens):
    h = auth(tokens["write"])
    batch = [sample(ts=f"2026-01-01T00:0{m}:00Z", value=m) for m in range(6)]
    assert client.post("/api/v1/telemetry", json={"samples": batch}, headers=h).status_code == 200
    url = "/api/v1/links/A>B/samples"
    r = client.get(
        url,
        params={"start": "2026-01-01T00:02:00Z", "end": "2026-01-01T00:04:00Z"},
        headers=h,
    )
    assert [d["value_bps"] for d in r.json()["data"]] == [2.0, 3.0]
    assert client.get("/api/v1/links/nope/samples", headers=h).status_code == 404
    bad = client.get(
        url, params={"start": "2026-01-01T00:04:00Z", "end": "2026-01-01T00:02Z"}, headers=h
    )
    assert bad.status_code == 422
    assert client.get(url, params={"start": "soon"}, headers=h).status_code == 422
    assert client.get(url, params={"start": "2026-01-01T00:00:00"}, headers=h).status_code == 422
    assert client.get(url, params={"limit": 10_001}, headers=h).status_code == 422
    assert client.get(url).status_code == 401


def test_health_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_links_latest_gives_each_links_newest_sample(client, tokens):
    h = auth(tokens["write"])
    batch = [sample(link="a>b", ts=f"2026-01-01T00:0{m}:00Z", value=m) for m in range(3)]
    batch.append(sample(link="c>d", ts="2026-01-01T00:00:00Z", value=7))
    assert client.post("/api/v1/telemetry", json={"samples": batch}, headers=h).status_code == 200
    quiet = {"name": "e>f", "src": "e", "dst": "f", "capacity_bps": 1e9}
    admin = auth(tokens["admin"])
    assert client.post("/api/v1/links", json=quiet, headers=admin).status_code == 201
    r = client.get("/api/v1/links/latest", headers=h)
    assert r.status_code == 200
    # serialised without the response model: it must still be the documented shape
    assert set(r.json()) == {"data", "count"} and r.json()["count"] == len(r.json()["data"])
    for d in r.json()["data"]:
        assert set(d) == set(LinkLatestPublic.model_fields)
        LinkLatestPublic.model_validate(d)
        assert all(d[k] is None or d[k].endswith("Z") for k in ("ts", "issued_at"))
    rows = {d["name"]: d for d in r.json()["data"]}
    assert (rows["a>b"]["ts"], rows["a>b"]["value_bps"]) == ("2026-01-01T00:02:00Z", 2.0)
    assert rows["c>d"]["value_bps"] == 7.0
    assert (rows["e>f"]["ts"], rows["e>f"]["value_bps"], rows["e>f"]["capacity_bps"]) == (
        None,
        None,
        1e9,
    )
    assert rows["a>b"]["peak_bps"] is None  # no engine ran: no forecast yet
    assert (
        client.get("/api/v1/links/latest", params={"model": "nope"}, headers=h).status_code == 422
    )
