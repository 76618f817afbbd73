"""GET /api/v1/whatif and GET /api/v1/risk (issue 10): loads over the forecast horizon
with links failed, and the N-1 scan, on forecasts stored as the engine stores them.

The networks are small and identifiable (a triangle routed by hops: every pair's path
is one link, so the link loads fix the demands), so that the expected answers follow
from the demands by routing alone (network.routing), not from the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, text

from db.live import array_literal, insert_forecasts
from network.routing import route
from network.topology import Topology
from network.whatif import estimate_demands, what_if
from tests.conftest import auth

ISSUED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STEP = 60
GBIT = 1e9
TRIANGLE = ("A", "B", "C")


def names(nodes: tuple[str, ...]) -> list[str]:
    return [f"{a}>{b}" for a in nodes for b in nodes if a != b]


def register(client, tokens, links: list[str], capacity_bps: float | None = GBIT) -> Topology:
    """Links A>B as POST /links takes them (hops metric: no `metric` label)."""
    records = []
    for name in links:
        body = {"name": name} | ({} if capacity_bps is None else {"capacity_bps": capacity_bps})
        r = client.post("/api/v1/links", json=body, headers=auth(tokens["admin"]))
        assert r.status_code == 201, r.text
        records.append(body)
    return Topology.from_links(records)


def store_forecasts(
    db: Engine, loads: dict[str, list[float]], *, model: str = "hybrid", issued=ISSUED
) -> None:
    """Forecast rows as engine/loop.py writes them (COPY lines, float4 arrays)."""
    with db.begin() as conn:
        ids = {name: i for name, i in conn.execute(text("SELECT name, id FROM link"))}
        lines = [
            f"{ids[name]}\t{model}\t{issued.isoformat()}\t{STEP}\t{array_literal(v)}"
            f"\t{array_literal(v)}\t{array_literal(v)}\n"
            for name, v in loads.items()
        ]
        insert_forecasts(conn, lines)


def demand_loads(topo: Topology, demands: dict[tuple[str, str], list[float]], failed=()):
    """(T, L) link loads of the demands routed by hops with ``failed`` down, and the
    routing (the expected answer, computed by network.routing alone)."""
    r = route(topo, metric="hops", failed=failed)
    steps = len(next(iter(demands.values())))
    x = np.zeros((steps, len(r.pairs)))
    for p, pair in enumerate(r.pairs):
        x[:, p] = demands.get(pair, [0.0] * steps)
    return r.loads(x), r, x


def by_link(body: dict) -> dict[str, dict]:
    return {lk["link"]: lk for lk in body["links"]}


#: Demands over four steps (bit/s): A->B 0.6 Gbit/s at its peak (step 2), A->C 0.5.
TRI_DEMANDS = {
    ("A", "B"): [0.4e9, 0.5e9, 0.6e9, 0.5e9],
    ("B", "A"): [0.1e9, 0.1e9, 0.2e9, 0.1e9],
    ("A", "C"): [0.5e9, 0.5e9, 0.5e9, 0.4e9],
    ("C", "A"): [0.2e9, 0.1e9, 0.1e9, 0.1e9],
    ("B", "C"): [0.1e9, 0.2e9, 0.1e9, 0.1e9],
    ("C", "B"): [0.3e9, 0.3e9, 0.3e9, 0.2e9],
}


@pytest.fixture
def triangle(client, tokens, clean_db) -> Topology:
    topo = register(client, tokens, names(TRIANGLE))
    loads, _, _ = demand_loads(topo, TRI_DEMANDS)
    store_forecasts(clean_db, {n: loads[:, i].tolist() for i, n in enumerate(topo.link_names)})
    return topo


def node_balance(topo: Topology, loads: np.ndarray) -> np.ndarray:
    """(T, N) bit/s leaving each node over its links minus arriving."""
    index = {n: i for i, n in enumerate(topo.nodes)}
    out = np.zeros((loads.shape[0], len(topo.nodes)))
    for i, lk in enumerate(topo.links):
        out[:, index[lk.src]] += loads[:, i]
        out[:, index[lk.dst]] -= loads[:, i]
    return out


def test_a_failed_link_moves_its_load_onto_the_other_path(client, tokens, triangle):
    r = client.get(
        "/api/v1/whatif", params={"fail": "A>B", "cable": "false"}, headers=auth(tokens["read"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["failed"] == body["failed_links"] == ["A>B"]
    assert body["metric"] == "hops" and body["model"] == "hybrid"
    assert body["issued_at"] == "2026-01-01T12:00:00Z" and body["step_seconds"] == STEP
    assert body["times"] == [
        (ISSUED + timedelta(seconds=STEP * k)).isoformat().replace("+00:00", "Z") for k in range(4)
    ]
    expected, after, x = demand_loads(triangle, TRI_DEMANDS, failed=["A>B"])
    before, _, _ = demand_loads(triangle, TRI_DEMANDS)
    links = by_link(body)
    got = np.array([links[n]["load_bps"] for n in triangle.link_names]).T
    base = np.array([links[n]["baseline_bps"] for n in triangle.link_names]).T
    np.testing.assert_allclose(base, before, rtol=1e-6)  # float4 storage
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e3)
    # A->B now rides A>C then C>B, on top of what they carried.
    ab = np.array(TRI_DEMANDS[("A", "B")])
    ac = triangle.link_index("A>C")
    np.testing.assert_allclose(got[:, ac], before[:, ac] + ab, rtol=1e-5)
    assert links["A>B"]["failed"] and links["A>B"]["load_bps"] == [0.0] * 4
    assert links["A>B"]["utilisation"] == [None] * 4
    # Conserved: every node sends what its demands send, nothing unroutable.
    sent = node_balance(triangle, before)
    np.testing.assert_allclose(node_balance(triangle, got), sent, atol=1e3)
    assert body["unroutable_bps"] == [0.0] * 4 and body["unroutable_pairs"] == []
    assert 0 <= body["demand_fit_error"] < 1e-4


def test_a_cable_fails_both_directions_by_default(client, tokens, triangle):
    r = client.get("/api/v1/whatif", params={"fail": "A>B"}, headers=auth(tokens["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["failed"] == ["A>B"] and body["failed_links"] == ["A>B", "B>A"]
    expected, _, _ = demand_loads(triangle, TRI_DEMANDS, failed=["A>B", "B>A"])
    links = by_link(body)
    got = np.array([links[n]["load_bps"] for n in triangle.link_names]).T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e3)


@pytest.mark.parametrize(
    ("threshold", "overloaded"), [(1.0, ["A>C"]), (0.8, ["A>C", "C>B"]), (1.2, [])]
)
def test_overloaded_lists_the_links_above_the_threshold_worst_first(
    client, tokens, triangle, threshold, overloaded
):
    # Failing A>B: A>C peaks at 0.5 + 0.6 = 1.1 Gbit/s (step 2), C>B at 0.3 + 0.6 = 0.9.
    r = client.get(
        "/api/v1/whatif",
        params={"fail": "A>B", "cable": "false", "threshold": threshold},
        headers=auth(tokens["read"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["overloaded"] == overloaded
    links = by_link(body)
    assert links["A>C"]["peak_utilisation"] == pytest.approx(1.1, rel=1e-5)
    assert links["C>B"]["peak_utilisation"] == pytest.approx(0.9, rel=1e-5)
    assert links["A>C"]["utilisation"][2] == pytest.approx(1.1, rel=1e-5)
    assert {n for n, lk in links.items() if lk["overloaded"]} == set(overloaded)


def test_risk_ranks_the_cut_that_overloads_first(client, tokens, triangle):
    r = client.get("/api/v1/risk", headers=auth(tokens["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scanned"] == 3 and body["metric"] == "hops" and body["threshold"] == 1.0
    # The expected worst of each cable, by routing the true demands around it.
    expected = []
    for cable in (["A>B", "B>A"], ["A>C", "C>A"], ["B>C", "C>B"]):
        loads, after, _ = demand_loads(triangle, TRI_DEMANDS, failed=cable)
        util = np.where(after.alive, loads / GBIT, -1.0)
        t, link = np.unravel_index(int(util.argmax()), util.shape)
        peak = util.max(axis=0)
        over = [triangle.link_names[i] for i in np.argsort(-peak) if peak[i] > 1.0]
        expected.append((float(util[t, link]), cable, triangle.link_names[link], int(t), over))
    expected.sort(key=lambda e: -e[0])
    got = body["scenarios"]
    assert [s["failed"] for s in got] == [e[1] for e in expected]
    assert got[0]["failed"] == ["A>B", "B>A"] and got[0]["overloaded"] == ["A>C"]
    for s, (util, _, link, t, over) in zip(got, expected, strict=True):
        assert s["worst_utilisation"] == pytest.approx(util, rel=1e-5)
        assert s["worst_link"] == link
        assert s["worst_time"] == body_time(body, t)
        assert s["unroutable_bps"] == 0.0
        assert s["overloaded"] == over
    assert got[-1]["overloaded"] == []  # B-C cut: A and C reach B the other way, in room
    r = client.get("/api/v1/risk", params={"limit": 1}, headers=auth(tokens["read"]))
    assert [s["failed"] for s in r.json()["scenarios"]] == [["A>B", "B>A"]]


def body_time(body: dict, step: int) -> str:
    t = datetime.fromisoformat(body["issued_at"]) + timedelta(seconds=body["step_seconds"] * step)
    return t.isoformat().replace("+00:00", "Z")


def test_a_partition_reports_the_demand_left_without_a_path(client, tokens, clean_db):
    # The triangle and D hanging off C: cutting C-D strands every demand to or from D.
    links = [*names(TRIANGLE), "C>D", "D>C"]
    topo = register(client, tokens, links)
    demands = dict(TRI_DEMANDS)
    demands |= {("A", "D"): [0.1e9] * 4, ("D", "B"): [0.05e9, 0.1e9, 0.05e9, 0.1e9]}
    demands |= {("C", "D"): [0.2e9] * 4}
    loads, _, _ = demand_loads(topo, demands)
    store_forecasts(clean_db, {n: loads[:, i].tolist() for i, n in enumerate(topo.link_names)})
    h = auth(tokens["read"])
    r = client.get("/api/v1/whatif", params={"fail": "C>D"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    stranded = np.sum([v for (s, d), v in demands.items() if "D" in (s, d)], axis=0)
    np.testing.assert_allclose(body["unroutable_bps"], stranded, rtol=1e-5)
    pairs = body["unroutable_pairs"]
    assert pairs and all("D" in (p["src"], p["dst"]) for p in pairs)
    assert sum(p["demand_bps"] for p in pairs) >= stranded.max() * (1 - 1e-5)
    assert [p["demand_bps"] for p in pairs] == sorted(
        (p["demand_bps"] for p in pairs), reverse=True
    )
    # Stranding only takes traffic away; A>B and B>A carry no demand of D's (its paths
    # all go through C), so they keep their forecast.
    links = by_link(body)
    for n in topo.link_names:
        load, base = np.array(links[n]["load_bps"]), np.array(links[n]["baseline_bps"])
        assert (load <= base * (1 + 1e-6)).all(), n
    for n in ("A>B", "B>A"):
        np.testing.assert_allclose(links[n]["load_bps"], links[n]["baseline_bps"], rtol=1e-6)
    assert links["C>D"]["load_bps"] == links["D>C"]["load_bps"] == [0.0] * 4
    risk = client.get("/api/v1/risk", headers=h).json()
    # The cut that strands D ranks first, though the links it leaves carry less than
    # after any triangle cut; the triangle cuts follow, worst utilisation first.
    cut, *others = risk["scenarios"]
    assert cut["failed"] == ["C>D", "D>C"]
    assert cut["unroutable_bps"] == pytest.approx(stranded.max(), rel=1e-5)
    assert len(others) == 3 and all(o["unroutable_bps"] == 0 for o in others)
    worst = [o["worst_utilisation"] for o in others]
    assert cut["worst_utilisation"] < min(worst) and worst == sorted(worst, reverse=True)


def test_a_link_left_out_of_the_model_is_named_in_the_answers(client, tokens, triangle, clean_db):
    # POST /links refuses a metric it cannot read; a row stored before it did is left
    # out of the model, and what-if and risk say so instead of routing without it.
    h = auth(tokens["read"])
    for path in ("/api/v1/whatif?fail=A>B", "/api/v1/risk"):
        assert client.get(path, headers=h).json()["problems"] == []
    with clean_db.begin() as conn:
        conn.execute(text("""UPDATE link SET labels = '{"metric": "ten"}' WHERE name = 'B>C'"""))
    for path in ("/api/v1/whatif?fail=A>B", "/api/v1/risk"):
        r = client.get(path, headers=h)
        assert r.status_code == 200, r.text
        [problem] = r.json()["problems"]
        assert problem["link"] == "B>C" and "metric 'ten'" in problem["detail"], problem
        assert r.json()["without_metric"] == []  # the triangle: no link has a metric
        assert r.json()["without_capacity"] == []  # every link has one


def test_links_without_a_metric_among_links_with_one_are_named(client, tokens, triangle, clean_db):
    h = auth(tokens["read"])
    with clean_db.begin() as conn:
        conn.execute(text("""UPDATE link SET labels = '{"metric": 10}' WHERE name <> 'C>A'"""))
    for path in ("/api/v1/whatif?fail=A>B", "/api/v1/risk"):
        body = client.get(path, headers=h).json()
        assert body["metric"] == "hops" and body["without_metric"] == ["C>A"], body


def test_links_down_now_stay_down_and_are_named(client, tokens, triangle):
    w = auth(tokens["write"])
    ts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = client.post(
        "/api/v1/events", json={"kind": "failure", "links": ["B>C"], "ts": ts}, headers=w
    )
    assert r.status_code == 201, r.text
    r = client.get(
        "/api/v1/whatif", params={"fail": "A>B", "cable": "false"}, headers=auth(tokens["read"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    # B>C is reported down: an IGP drops the adjacency both ways, so C>B is down too
    assert body["already_down"] == ["B>C", "C>B"]
    links = by_link(body)
    for name in ("B>C", "C>B"):
        assert links[name]["down"] and not links[name]["failed"]
        assert links[name]["load_bps"] == [0.0] * 4
    # with A>B failed as well (that direction only), A reaches B no more: via C, C>B is down
    assert ("A", "B") in {(p["src"], p["dst"]) for p in body["unroutable_pairs"]}
    risk = client.get("/api/v1/risk", headers=auth(tokens["read"])).json()
    assert risk["already_down"] == ["B>C", "C>B"]
    assert risk["scanned"] == 2  # the B-C cable is down already: not a scenario
    assert ["B>C", "C>B"] not in [s["failed"] for s in risk["scenarios"]]
    later = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = client.post(
        "/api/v1/events", json={"kind": "repair", "links": ["B>C"], "ts": later}, headers=w
    )
    assert r.status_code == 201
    r = client.get("/api/v1/whatif", params={"fail": "A>B"}, headers=auth(tokens["read"]))
    assert r.json()["already_down"] == []


# -- bad input -------------------------------------------------------------------------


def test_an_unknown_link_is_a_422_naming_it(client, tokens, triangle):
    r = client.get(
        "/api/v1/whatif", params={"fail": ["A>B", "X>Y", "Q"]}, headers=auth(tokens["read"])
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "unknown links: 'X>Y', 'Q'"


def test_a_link_not_placed_is_a_422_saying_what_to_set(client, tokens, triangle, clean_db):
    # Pushed under a name with no nodes: registered, but not in the topology.
    push = {"samples": [{"link": "eth0", "ts": "2026-01-01T00:00:00Z", "value": 1.0}]}
    assert client.post("/api/v1/telemetry", json=push, headers=auth(tokens["write"])).is_success
    r = client.get("/api/v1/whatif", params={"fail": "eth0"}, headers=auth(tokens["read"]))
    assert r.status_code == 422, r.text
    assert "'eth0' is not placed in the topology" in r.json()["detail"]
    assert "src and dst" in r.json()["detail"]
    # a metric no router takes: refused by POST /links now, stored by an older version
    with clean_db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO link (name, src, dst, labels)"
                """ VALUES ('C>A2', 'C', 'A2', '{"metric": "0"}')"""
            )
        )
    r = client.get("/api/v1/whatif", params={"fail": "C>A2"}, headers=auth(tokens["read"]))
    assert r.status_code == 422, r.text
    assert "'C>A2' is left out of the topology" in r.json()["detail"]
    assert "metric '0'" in r.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"fail": [f"L{i}" for i in range(17)]},
        {"fail": ""},
        {"fail": "A>B", "threshold": 0},
        {"fail": "A>B", "threshold": "nan"},
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(client, tokens, triangle, params):
    r = client.get("/api/v1/whatif", params=params, headers=auth(tokens["read"]))
    assert r.status_code == 422, r.text
    locs = [e["loc"][:2] for e in r.json()["detail"]]
    assert locs[0] == ["query", "threshold" if "threshold" in params else "fail"]


@pytest.mark.parametrize(
    ("path", "fail"), [("/api/v1/whatif", {"fail": "A>B"}), ("/api/v1/risk", {})]
)
def test_a_percentage_for_the_threshold_is_a_422_saying_it_is_a_fraction(
    client, tokens, triangle, path, fail
):
    # the dashboard's URL takes a percentage (threshold=90); the API, a fraction: 90 was
    # read as 9,000 % and flagged nothing
    r = client.get(path, params=fail | {"threshold": 90}, headers=auth(tokens["read"]))
    assert r.status_code == 422, r.text
    assert "threshold 90 is above 10: it is a fraction of capacity" in r.json()["detail"]
    assert "for 90 % send 0.9" in r.json()["detail"]
    r = client.get(path, params=fail | {"threshold": 10}, headers=auth(tokens["read"]))
    assert r.status_code == 200 and r.json()["threshold"] == 10


def test_no_forecasts_yet_is_a_409_saying_so(client, tokens, clean_db):
    register(client, tokens, names(TRIANGLE))
    h = auth(tokens["read"])
    for url, params in (("/api/v1/whatif", {"fail": "A>B"}), ("/api/v1/risk", {})):
        r = client.get(url, params=params, headers=h)
        assert r.status_code == 409, r.text
        assert "no forecast of model 'hybrid' stored yet" in r.json()["detail"]
    # Forecasts of another model are not the hybrid's.
    store_forecasts(clean_db, {"A>B": [1e8]}, model="liquid")
    assert client.get("/api/v1/risk", headers=h).status_code == 409
    assert client.get("/api/v1/risk", params={"model": "liquid"}, headers=h).status_code == 200
    # An unknown link is the client's error whether or not there are forecasts.
    r = client.get("/api/v1/whatif", params={"fail": "Z>Z"}, headers=h)
    assert r.status_code == 422


def test_a_token_is_needed(client):
    assert client.get("/api/v1/whatif", params={"fail": "A>B"}).status_code == 401
    assert client.get("/api/v1/risk").status_code == 401


def test_the_next_issue_is_answered_from_its_own_forecasts(client, tokens, triangle, clean_db):
    """A new issue's demands start from the last issue's (tracked, no tomogravity): the
    answer is still the new forecasts' re-route."""
    from api.routes import whatif as routes

    routes._cache.clear()
    routes._tracks.clear()
    h = auth(tokens["read"])
    assert client.get("/api/v1/risk", headers=h).status_code == 200  # the first issue
    later = {pair: [v * (1.5 if pair[0] == "A" else 0.5) for v in values[::-1]]
             for pair, values in TRI_DEMANDS.items()}  # fmt: skip
    loads, _, _ = demand_loads(triangle, later)
    issued = ISSUED + timedelta(seconds=STEP)
    names_ = triangle.link_names
    store_forecasts(
        clean_db, {n: loads[:, i].tolist() for i, n in enumerate(names_)}, issued=issued
    )
    r = client.get("/api/v1/whatif", params={"fail": "A>B", "cable": "false"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_at"] == "2026-01-01T12:01:00Z"
    expected, _, _ = demand_loads(triangle, later, failed=["A>B"])
    got = np.array([by_link(body)[n]["load_bps"] for n in names_]).T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e3)
    assert body["demand_fit_error"] < 1e-4
    assert [t.issues for t in routes._tracks.values()] == [1]  # tracked, not made afresh


#: A ring A-B-C-D and demands far from gravity (B sends mostly to D), over two steps.
RING = ("A", "B", "C", "D")
RING_LINKS = ["A>B", "B>A", "B>C", "C>B", "C>D", "D>C", "D>A", "A>D"]
RING_DEMANDS = {
    ("A", "B"): [0.1e9, 0.2e9],
    ("A", "C"): [0.3e9, 0.2e9],
    ("B", "D"): [0.6e9, 0.5e9],
    ("B", "C"): [0.05e9, 0.1e9],
    ("C", "A"): [0.2e9, 0.3e9],
    ("D", "A"): [0.4e9, 0.3e9],
    ("D", "B"): [0.1e9, 0.1e9],
    ("C", "D"): [0.2e9, 0.2e9],
}


def test_edge_links_forecasts_are_the_demand_estimates_node_totals(client, tokens, clean_db):
    """Each router's edge links (label edge) give a fresh estimate its node totals (at its
    reference step): the answer is what_if over tomogravity with those totals, not with
    fitted ones, also when an estimate made without them was being tracked (labelling
    them starts afresh); failing an edge link is a 422 (no traffic is routed over it)."""
    from api.routes import whatif as routes

    routes._cache.clear()
    routes._tracks.clear()
    h = auth(tokens["read"])
    topo = register(client, tokens, RING_LINKS, capacity_bps=10 * GBIT)
    loads, routing, x = demand_loads(topo, RING_DEMANDS)
    forecasts = {name: loads[:, i].tolist() for i, name in enumerate(topo.link_names)}
    store_forecasts(clean_db, forecasts)
    r = client.get("/api/v1/whatif", params={"fail": "B>C"}, headers=h)
    assert r.status_code == 200 and r.json()["demand_prior"] == "fitted", r.text

    # the operator labels every router's edge links; their forecasts come with the next issue
    n = len(topo.nodes)
    out = np.stack([np.bincount(routing.origin, weights=row, minlength=n) for row in x])
    inn = np.stack([np.bincount(routing.dest, weights=row, minlength=n) for row in x])
    for i, node in enumerate(topo.nodes):
        for name, role, values in (
            (f"cust-{node}>{node}", "ingress", out[:, i]),
            (f"{node}>cust-{node}", "egress", inn[:, i]),
        ):
            body = {"name": name, "labels": {"edge": role}}
            r = client.post("/api/v1/links", json=body, headers=auth(tokens["admin"]))
            assert r.status_code == 201, r.text
            forecasts[name] = values.tolist()
    issued = ISSUED + timedelta(seconds=STEP)
    store_forecasts(clean_db, forecasts, issued=issued)
    edges = [name for name in forecasts if "cust-" in name]

    def report(links: list[str], at: datetime) -> None:  # the edge links' newest samples
        samples = [{"link": n, "ts": at.isoformat(), "value": 1.0} for n in links]
        w = auth(tokens["write"])
        r = client.post("/api/v1/telemetry", json={"samples": samples}, headers=w)
        assert r.status_code == 200, r.text

    report(edges, issued - timedelta(seconds=30))
    r = client.get("/api/v1/whatif", params={"fail": "B>C"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["demand_prior"] == "edge_links"
    links = by_link(r.json())
    got = np.array([links[name]["load_bps"] for name in topo.link_names]).T
    assert "cust-A>A" not in links  # no backbone link, no what-if load
    stored = np.array([forecasts[name] for name in topo.link_names], dtype=np.float32).T
    y = stored.astype(float)
    measured = estimate_demands(routing, y, totals_bps=(out, inn)).demands_bps
    fitted = estimate_demands(routing, y).demands_bps
    want = what_if(routing, measured, y, ["B>C", "C>B"]).loads_bps
    other = what_if(routing, fitted, y, ["B>C", "C>B"]).loads_bps
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e4)
    assert np.abs(want - other).max() > 0.05 * GBIT  # the totals change the answer
    risk = client.get("/api/v1/risk", headers=h)
    assert risk.status_code == 200 and risk.json()["demand_prior"] == "edge_links", risk.text

    # the next issue (the traffic a tenth up) with the same edge links is tracked from it
    later = {name: [1.1 * v for v in values] for name, values in forecasts.items()}
    store_forecasts(clean_db, later, issued=issued + timedelta(seconds=STEP))
    r = client.get("/api/v1/whatif", params={"fail": "B>C"}, headers=h)
    assert r.status_code == 200 and r.json()["demand_prior"] == "tracked", r.text

    # an edge link that stopped reporting two steps before an issue: the engine carries
    # its last value forward, which does not count: its router's total is fitted
    routes._cache.clear()
    routes._tracks.clear()
    issued = ISSUED + timedelta(seconds=3 * STEP)
    store_forecasts(clean_db, forecasts, issued=issued)
    report([n for n in edges if n != "cust-B>B"], issued - timedelta(seconds=30))
    r = client.get("/api/v1/whatif", params={"fail": "B>C"}, headers=h)
    assert r.status_code == 200 and r.json()["demand_prior"] == "edge_links", r.text
    got = np.array([by_link(r.json())[name]["load_bps"] for name in topo.link_names]).T
    partial = out.copy()
    partial[:, topo.nodes.index("B")] = np.nan
    measured = estimate_demands(routing, y, totals_bps=(partial, inn)).demands_bps
    np.testing.assert_allclose(got, what_if(routing, measured, y, ["B>C", "C>B"]).loads_bps,
                               rtol=1e-4, atol=1e4)  # fmt: skip
    assert np.abs(got - want).max() > 0.01 * GBIT  # not the answer with B measured

    r = client.get("/api/v1/whatif", params={"fail": "cust-B>B"}, headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("link 'cust-B>B' is an ingress edge link of 'B'")


def test_edge_forecasts_of_zero_everywhere_are_no_measurement():
    """As in tomogravity: totals that are 0 at every router are fitted, so the answer's
    demand_prior does not say edge_links for them."""
    from api.routes.whatif import _edge_totals
    from network.records import build_topology

    built = build_topology(
        [{"name": n} for n in RING_LINKS]
        + [{"name": f"c-{n}>{n}", "labels": {"edge": "ingress"}} for n in RING]
        + [{"name": f"{n}>c-{n}", "labels": {"edge": "egress"}} for n in RING]
    )
    zeros = {f"c-{n}>{n}": [0.0, 1e9] for n in RING} | {f"{n}>c-{n}": [0.0, 2e9] for n in RING}
    out, inn = _edge_totals(built, zeros, 2)
    assert np.isnan(out[0]).all() and np.isnan(inn[0]).all()
    assert (out[1] == 1e9).all() and (inn[1] == 2e9).all()
    assert _edge_totals(built, {n: [0.0] for n in zeros}, 1) is None


def test_links_without_a_capacity_are_named(client, tokens, clean_db):
    # no utilisation, so no failure can be seen to overload them: the answers say which
    topo = register(client, tokens, names(TRIANGLE))
    loads, _, _ = demand_loads(topo, TRI_DEMANDS)
    store_forecasts(clean_db, {n: loads[:, i].tolist() for i, n in enumerate(topo.link_names)})
    with clean_db.begin() as conn:
        conn.execute(text("UPDATE link SET capacity_bps = NULL WHERE name IN ('A>C', 'C>B')"))
    h = auth(tokens["read"])
    for path in ("/api/v1/whatif?fail=A>B", "/api/v1/risk"):
        body = client.get(path, headers=h).json()
        assert body["without_capacity"] == ["A>C", "C>B"], body
