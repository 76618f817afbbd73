"""POST /api/v1/telemetry: storage, idempotency, and every kind of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.main import create_app
from linkcast.settings import Settings
from tests.conftest import auth
from tests.db_proxy import DbProxy
from tests.factories import sample, samples

URL = "/api/v1/telemetry"


def stored(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT l.name, s.ts, s.value_bps, s.xmin::text FROM sample s"
                    " JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
                )
            )
        ]


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        links = conn.scalar(text("SELECT count(*) FROM link"))
        rows = conn.scalar(text("SELECT count(*) FROM sample"))
    return int(links or 0), int(rows or 0)


def test_push_50000_reads_back_exactly_and_retry_changes_nothing(client, tokens, clean_db):
    batch = samples(n_links=500, n_steps=100)
    assert len(batch) == 50_000
    body = orjson.dumps({"samples": batch})
    r = client.post(URL, content=body, headers=auth(tokens["write"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 50_000, "quarantined": 0}

    rows = stored(clean_db)
    assert len(rows) == 50_000
    expected = {(s["link"], datetime.fromisoformat(s["ts"]), s["value"]) for s in batch}
    assert {(name, ts, v) for name, ts, v, _ in rows} == expected

    # The same request again: 200, and not one row rewritten (same xmin everywhere).
    r = client.post(URL, content=body, headers=auth(tokens["write"]))
    assert r.status_code == 200
    assert stored(clean_db) == rows

    # Read back over the API too, page by page.
    got, start = [], None
    while True:
        params = {"limit": 40} | ({"start": start} if start else {})
        page = client.get(
            "/api/v1/links/n7>m7/samples", params=params, headers=auth(tokens["read"])
        )
        assert page.status_code == 200, page.text
        got += page.json()["data"]
        start = page.json()["next_start"]
        if start is None:
            break
        # next_start is the last ts returned; the next page starts just after it.
        start = (datetime.fromisoformat(start) + timedelta(microseconds=1)).isoformat()
    assert [d["value_bps"] for d in got] == [7e6 + step for step in range(100)]


def test_last_write_wins_across_and_within_requests(client, tokens, clean_db):
    h = auth(tokens["write"])
    assert client.post(URL, json={"samples": [sample(value=1.0)]}, headers=h).status_code == 200
    r = client.post(
        URL,
        json={"samples": [sample(value=2.0), sample(ts="2026-01-01T01:00:00+01:00", value=3.0)]},
        headers=h,
    )
    assert r.json() == {"accepted": 2, "quarantined": 0}
    # Both name the same instant: the later sample of the request wins.
    assert [row[2] for row in stored(clean_db)] == [3.0]
    # A batch mixing a stored (link, ts) with new ones stores all of them.
    r = client.post(
        URL,
        json={"samples": [sample(value=4.0), sample(ts="2026-01-01T00:01:00Z", value=5.0)]},
        headers=h,
    )
    assert r.status_code == 200
    assert [row[2] for row in stored(clean_db)] == [4.0, 5.0]


def test_epoch_seconds_and_unknown_links_are_registered(client, tokens, clean_db):
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    names = ["ATLAng>HSTNng", "r1:xe-0/0/1", "back\\slash", "spaces are ok"]
    r = client.post(
        URL,
        json={"samples": [sample(link=n, ts=ts.timestamp(), value=5) for n in names]},
        headers=auth(tokens["write"]),
    )
    assert r.status_code == 200, r.text
    links = client.get("/api/v1/links", headers=auth(tokens["read"])).json()
    assert sorted(d["name"] for d in links["data"]) == sorted(names)
    by_name = {d["name"]: d for d in links["data"]}
    assert (by_name["ATLAng>HSTNng"]["src"], by_name["ATLAng>HSTNng"]["dst"]) == (
        "ATLAng",
        "HSTNng",
    )
    assert by_name["r1:xe-0/0/1"]["src"] is None
    for path in ("r1:xe-0/0/1", "r1%3Axe-0%2F0%2F1"):
        got = client.get(f"/api/v1/links/{path}/samples", headers=auth(tokens["read"]))
        assert got.status_code == 200, got.text
        assert got.json()["data"] == [
            {"ts": "2026-03-01T12:00:00Z", "value_bps": 5.0, "quality": "ok"}
        ]


def test_links_recreated_behind_the_apis_back_are_learned_again(client, tokens, clean_db):
    """The api caches link ids; if the table changes under it, samples still land on the
    right (new) link rather than on a stale id."""
    h = auth(tokens["write"])
    assert client.post(URL, json={"samples": [sample(link="x>y")]}, headers=h).status_code == 200
    with clean_db.begin() as conn:
        conn.execute(text("TRUNCATE link, sample RESTART IDENTITY"))
        conn.execute(text("INSERT INTO link (name) VALUES ('other>one')"))  # takes id 1
    r = client.post(URL, json={"samples": [sample(link="x>y", value=9.0)]}, headers=h)
    assert r.status_code == 200
    assert [(row[0], row[2]) for row in stored(clean_db)] == [("x>y", 9.0)]


def qualities(engine: Engine) -> list[tuple[str, float, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.name, s.value_bps, s.quality FROM sample s"
                " JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
            )
        )
        return [tuple(r) for r in rows]


def test_above_the_line_rate_is_stored_marked_and_counted(client, tokens, clean_db):
    """Above capacity x (1 + LINKCAST_LINE_RATE_MARGIN): stored as sent, never refused,
    marked over_line_rate; the margin's edge is still ok; links without a capacity and
    samples written before a capacity was set are not judged by it."""
    w, admin = auth(tokens["write"]), auth(tokens["admin"])
    old = [sample(link="cap>a", ts="2026-01-01T00:00:00Z", value=5e9)]
    assert client.post(URL, json={"samples": old}, headers=w).json()["quarantined"] == 0
    for name in ("cap>a", "cap>b"):
        r = client.post("/api/v1/links", json={"name": name, "capacity_bps": 1e9}, headers=admin)
        assert r.status_code in (200, 201), r.text
    batch = [
        sample(link="cap>a", ts="2026-01-01T00:01:00Z", value=1e14),
        sample(link="cap>a", ts="2026-01-01T00:02:00Z", value=1.05e9),  # the edge: ok
        sample(link="cap>b", ts="2026-01-01T00:01:00Z", value=1.06e9),
        sample(link="free>c", ts="2026-01-01T00:01:00Z", value=1e14),  # no capacity
    ]
    r = client.post(URL, json={"samples": batch}, headers=w)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 4, "quarantined": 2}
    assert qualities(clean_db) == [
        ("cap>a", 5e9, "ok"),
        ("cap>a", 1e14, "over_line_rate"),
        ("cap>a", 1.05e9, "ok"),
        ("cap>b", 1.06e9, "over_line_rate"),
        ("free>c", 1e14, "ok"),
    ]
    rows = client.get("/api/v1/links/cap>a/samples", headers=auth(tokens["read"])).json()
    assert [d["quality"] for d in rows["data"]] == ["ok", "over_line_rate", "ok"]
    # the overview's "now" is the newest plausible sample: cap>b's only one is not
    latest = {
        r["name"]: r
        for r in client.get("/api/v1/links/latest", headers=auth(tokens["read"])).json()["data"]
    }
    assert latest["cap>b"]["value_bps"] is None
    assert latest["cap>a"]["value_bps"] == 1.05e9

    # A retry (the upsert path) judges the same; a corrected value is judged anew.
    r = client.post(URL, json={"samples": batch}, headers=w)
    assert r.json() == {"accepted": 4, "quarantined": 2}
    fixed = [sample(link="cap>a", ts="2026-01-01T00:01:00Z", value=4e8)]
    assert client.post(URL, json={"samples": fixed}, headers=w).json()["quarantined"] == 0
    assert qualities(clean_db)[1] == ("cap>a", 4e8, "ok")


def test_a_retry_keeps_the_engines_excursion_mark(client, tokens, clean_db):
    """The engine marks excursions after the fact; the same value sent again rewrites
    nothing, so the mark stays; a different value is a new sample, judged anew."""
    w = auth(tokens["write"])
    pushed = [sample(link="x>y", value=0.0), sample(link="x>y", ts="2026-01-01T00:01:00Z")]
    assert client.post(URL, json={"samples": pushed}, headers=w).status_code == 200
    with clean_db.begin() as conn:
        conn.execute(text("UPDATE sample SET quality = 'excursion' WHERE value_bps = 0"))
    assert client.post(URL, json={"samples": pushed}, headers=w).status_code == 200
    assert [q for _, _, q in qualities(clean_db)] == ["excursion", "ok"]
    again = [sample(link="x>y", value=1e3)]
    assert client.post(URL, json={"samples": again}, headers=w).status_code == 200
    assert [q for _, _, q in qualities(clean_db)] == ["ok", "ok"]


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()

BAD_SAMPLES = [
    pytest.param({"ts": "2026-01-01T00:00:00Z", "value": 1}, "link", id="missing-link"),
    pytest.param({"link": "A>B", "value": 1}, "ts", id="missing-ts"),
    pytest.param({"link": "A>B", "ts": "2026-01-01T00:00:00Z"}, "value", id="missing-value"),
    pytest.param(sample(value="1e9"), "value", id="value-string"),
    pytest.param(sample(value=True), "value", id="value-bool"),
    pytest.param(sample(value=None), "value", id="value-null"),
    pytest.param(sample(value=-1.0), "value", id="negative"),
    pytest.param(sample(value=2e15), "value", id="above-1e15"),
    pytest.param(sample(link=""), "link", id="empty-link"),
    pytest.param(sample(link="   "), "link", id="blank-link"),
    pytest.param(sample(link=7), "link", id="link-number"),
    pytest.param(sample(link="a\tb"), "link", id="link-control-char"),
    pytest.param(sample(ts="yesterday"), "ts", id="ts-unparseable"),
    pytest.param(sample(ts="2026-01-01T00:00:00"), "ts", id="ts-no-offset"),
    pytest.param(sample(ts=FUTURE), "ts", id="ts-far-future"),
    pytest.param(sample(ts=1e300), "ts", id="ts-epoch-overflow"),
    pytest.param(sample(ts=[1]), "ts", id="ts-list"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_SAMPLES)
def test_bad_sample_is_422_naming_index_and_field_and_stores_nothing(
    client, tokens, clean_db, bad, field
):
    body = {"samples": [sample(link="good>one"), sample(link="good>two"), bad]}
    r = client.post(URL, json=body, headers=auth(tokens["write"]))
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "samples", 2, field]
    assert err["msg"]
    assert counts(clean_db) == (0, 0)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_values_are_422_with_index(client, tokens, clean_db, literal):
    body = '{"samples":[{"link":"A>B","ts":"2026-01-01T00:00:00Z","value":' + literal + "}]}"
    r = client.post(URL, content=body, headers=auth(tokens["write"]))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "samples", 0, "value"]
    assert counts(clean_db) == (0, 0)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b'{"samples": [', 400, id="truncated"),
        pytest.param(b"not json", 400, id="garbage"),
        pytest.param(b"", 400, id="empty"),
        pytest.param(b"[]", 422, id="not-an-object"),
        pytest.param(b"{}", 422, id="no-samples"),
        pytest.param(b'{"samples": {}}', 422, id="samples-not-list"),
        pytest.param(b'{"samples": [1]}', 422, id="sample-not-object"),
    ],
)
def test_malformed_bodies(client, tokens, clean_db, body, status):
    r = client.post(URL, content=body, headers=auth(tokens["write"]))
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert counts(clean_db) == (0, 0)


def test_body_too_large_is_413(client, tokens, clean_db):
    big = b'{"samples": [' + b" " * (10 * 1024 * 1024) + b"]}"
    r = client.post(URL, content=big, headers=auth(tokens["write"]))
    assert r.status_code == 413
    assert "exceeds" in r.json()["detail"]
    assert counts(clean_db) == (0, 0)


def test_too_many_samples_is_413(settings, clean_db, tokens):
    settings.max_batch_samples = 10
    with TestClient(create_app(settings)) as c:
        r = c.post(URL, json={"samples": [sample()] * 11}, headers=auth(tokens["write"]))
    assert r.status_code == 413
    assert "at most 10" in r.json()["detail"]
    assert counts(clean_db) == (0, 0)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-token"),
        pytest.param({"Authorization": "Bearer lc_not-a-token"}, 401, id="bad-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwdw=="}, 401, id="not-bearer"),
    ],
)
def test_auth_failures_are_401(client, clean_db, tokens, headers, status):
    r = client.post(URL, json={"samples": [sample()]}, headers=headers)
    assert r.status_code == status
    assert r.headers.get("www-authenticate") == "Bearer"
    assert counts(clean_db) == (0, 0)


def test_read_scope_cannot_push(client, tokens, clean_db):
    r = client.post(URL, json={"samples": [sample()]}, headers=auth(tokens["read"]))
    assert r.status_code == 403
    assert "write" in r.json()["detail"]
    assert counts(clean_db) == (0, 0)
    # A write token can also read; admin can do everything.
    for scope in ("write", "admin"):
        assert client.get("/api/v1/links", headers=auth(tokens[scope])).status_code == 200


def test_database_outage_is_503_then_retry_stores_once(database_url, tmp_path, clean_db, tokens):
    proxy = DbProxy(database_url)
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path)
    body = {"samples": [sample(link="x>y", ts=f"2026-01-01T00:0{i}:00Z") for i in range(5)]}
    with TestClient(create_app(settings)) as c:
        h = auth(tokens["write"])
        assert c.get("/readyz").status_code == 200
        assert c.post(URL, json=body, headers=h).status_code == 200  # warms pool and token cache
        proxy.stop()
        r = c.post(
            URL, json=body | {"samples": body["samples"] + [sample(link="new>z")]}, headers=h
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit()
        assert "retry" in r.json()["detail"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "retry-after" in ready.headers
        assert counts(clean_db) == (1, 5)  # nothing of the failed request

        proxy.start()
        r = c.post(
            URL, json=body | {"samples": body["samples"] + [sample(link="new>z")]}, headers=h
        )
        assert r.status_code == 200, r.text
        assert counts(clean_db) == (2, 6)
        proxy.stop()


def test_openapi_documents_every_route_and_error(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    push = paths["/api/v1/telemetry"]["post"]
    assert {"200", "400", "401", "403", "413", "422", "503"} <= set(push["responses"])
    assert "samples" in json.dumps(push["requestBody"])
    schemas = spec["components"]["schemas"]
    assert "quarantined" in schemas["TelemetryAccepted"]["required"]
    quality = schemas["SamplePublic"]["properties"]["quality"]
    assert quality["enum"] == ["ok", "over_line_rate", "excursion"]
    assert "over_line_rate" in quality["description"]
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op.get("description") or op.get("summary"), (method, path)
            if path.startswith("/api/v1"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)
