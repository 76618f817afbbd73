"""POST|GET|DELETE /api/v1/silences on a real database, and `silenced` on alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from db.models import Alert
from db.session import make_sessionmaker, session_scope
from tests.conftest import auth

URL = "/api/v1/silences"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def links(client, tokens) -> list[str]:
    names = ["A>B", "r1:xe-0/0/1"]
    for name in names:
        r = client.post("/api/v1/links", json={"name": name}, headers=auth(tokens["admin"]))
        assert r.status_code == 201, r.text
    return names


def stored(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM silence")).scalar_one())


def test_create_list_and_expire(client, tokens, links, clean_db):
    write, read = auth(tokens["write"]), auth(tokens["read"])
    before = datetime.now(UTC)
    r = client.post(
        URL,
        json={"link": "A>B", "kind": "drift", "duration_seconds": 3600, "comment": "maint"},
        headers=write,
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["link"], made["kind"], made["comment"]) == ("A>B", "drift", "maint")
    assert made["created_by"] == "write token"  # the token's name
    assert made["active"] is True
    starts = datetime.fromisoformat(made["starts_at"])
    ends = datetime.fromisoformat(made["ends_at"])
    assert before - timedelta(seconds=5) <= starts <= datetime.now(UTC)
    assert ends - starts == timedelta(seconds=3600)

    # matchers left out match any; an end as a time; an admin token may create too
    until = datetime.now(UTC) + timedelta(hours=2)
    r = client.post(
        URL, json={"kind": "capacity", "ends_at": iso(until)}, headers=auth(tokens["admin"])
    )
    assert r.status_code == 201, r.text
    assert r.json()["link"] is None and r.json()["created_by"] == "admin token"
    # one that starts later is listed (not expired), not active yet
    later = datetime.now(UTC) + timedelta(hours=1)
    r = client.post(
        URL,
        json={"link": "r1:xe-0/0/1", "starts_at": iso(later), "duration_seconds": 60},
        headers=write,
    )
    assert r.status_code == 201, r.text
    scheduled = r.json()
    assert scheduled["active"] is False

    r = client.get(URL, headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and {s["id"] for s in body["data"]} == {1, 2, 3}

    # DELETE ends a silence: it is no longer listed, but ?all=true still shows it
    assert client.delete(f"{URL}/{made['id']}", headers=write).status_code == 204
    assert {s["id"] for s in client.get(URL, headers=read).json()["data"]} == {2, 3}
    everything = client.get(URL, params={"all": "true"}, headers=read).json()["data"]
    expired = next(s for s in everything if s["id"] == made["id"])
    assert expired["active"] is False
    assert datetime.fromisoformat(expired["ends_at"]) <= datetime.now(UTC)
    # one that had not started is removed; deleting an expired one again is harmless
    assert client.delete(f"{URL}/{scheduled['id']}", headers=write).status_code == 204
    assert client.delete(f"{URL}/{made['id']}", headers=write).status_code == 204
    assert stored(clean_db) == 2
    r = client.delete(f"{URL}/999", headers=write)
    assert r.status_code == 404 and "999" in r.json()["detail"]


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"kind": "latency", "duration_seconds": 60}, "kind"),
        ({"link": "A>B", "ends_at": iso(NOW - timedelta(minutes=5))}, "past"),
        (
            {
                "link": "A>B",
                "starts_at": iso(NOW + timedelta(hours=2)),
                "ends_at": iso(NOW + timedelta(hours=1)),
            },
            "after starts_at",
        ),
        ({"link": "A>B", "ends_at": iso(NOW + timedelta(hours=1)), "duration_seconds": 60}, "one"),
        ({"link": "A>B", "comment": "no end"}, "exactly one"),
        ({"link": "A>B", "ends_at": "2099-01-01T00:00:00"}, "offset"),
        ({"link": "A>B", "duration_seconds": -5}, "greater than 0"),
        ({"link": "nowhere>else", "duration_seconds": 60}, "unknown link"),
        ({"link": "", "duration_seconds": 60}, "at least 1"),
        ({"links": "A>B", "duration_seconds": 60}, "extra"),  # a typo must not silence all
        ({"link": "A>B", "duration_seconds": 60, "comment": "x" * 3000}, "2000"),
        # past Python's last year: named, not a 500
        (
            {"link": "A>B", "starts_at": "9999-12-31T00:00:00Z", "duration_seconds": 172_800},
            "duration_seconds",
        ),
        ({"link": "A>B", "ends_at": "9999-12-31T23:00:00-05:00"}, "ends_at"),
        (
            {
                "link": "A>B",
                "starts_at": "9999-12-31T23:00:00-05:00",
                "ends_at": "9999-12-31T23:30:00-05:00",
            },
            "starts_at",
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_stored(client, tokens, links, clean_db, body, says):
    r = client.post(URL, json=body, headers=auth(tokens["write"]))
    assert r.status_code == 422, r.text
    assert says in r.text
    assert stored(clean_db) == 0


def test_malformed_json_is_400(client, tokens, links, clean_db):
    r = client.post(URL, content=b'{"link": ', headers=auth(tokens["write"]))
    assert r.status_code == 400
    assert stored(clean_db) == 0


def test_auth(client, tokens, links, clean_db):
    body = {"link": "A>B", "duration_seconds": 60}
    assert client.post(URL, json=body).status_code == 401
    assert client.post(URL, json=body, headers=auth("lc_not-a-token")).status_code == 401
    assert client.get(URL).status_code == 401
    r = client.post(URL, json=body, headers=auth(tokens["read"]))
    assert r.status_code == 403
    assert stored(clean_db) == 0
    assert client.get(URL, headers=auth(tokens["read"])).status_code == 200
    made = client.post(URL, json=body, headers=auth(tokens["write"])).json()
    assert client.delete(f"{URL}/{made['id']}", headers=auth(tokens["read"])).status_code == 403
    assert client.delete(f"{URL}/{made['id']}").status_code == 401
    assert client.get(URL, headers=auth(tokens["read"])).json()["count"] == 1


def test_alerts_say_whether_a_silence_matches(client, tokens, links, clean_db):
    """A silence on a link matches that link's alerts, and a failure alert naming it; a
    silence on a kind matches every alert of the kind; an expired one matches nothing."""
    t = datetime.now(UTC) - timedelta(minutes=10)

    def alert(kind: str, names: list[str], link_id: int | None) -> Alert:
        return Alert(
            kind=kind,
            state="firing",
            link_id=link_id,
            links=names,
            onset=t,
            message=f"{kind} on {', '.join(names)}",
            firing_at=t,
        )

    with session_scope(make_sessionmaker(clean_db)) as session:
        session.add_all(
            [
                alert("drift", ["A>B"], 1),
                alert("capacity", ["A>B"], 1),
                alert("failure", ["C>D", "A>B"], None),
                alert("drift", ["r1:xe-0/0/1"], 2),
                alert("capacity", ["r1:xe-0/0/1"], 2),
            ]
        )
    write, read = auth(tokens["write"]), auth(tokens["read"])

    def silenced() -> dict[tuple[str, str], bool]:
        rows = client.get("/api/v1/alerts", headers=read).json()["data"]
        return {(a["kind"], ",".join(a["links"])): a["silenced"] for a in rows}

    assert not any(silenced().values())
    on_link = client.post(URL, json={"link": "A>B", "duration_seconds": 600}, headers=write)
    on_kind = client.post(URL, json={"kind": "capacity", "duration_seconds": 600}, headers=write)
    assert on_link.status_code == on_kind.status_code == 201
    assert silenced() == {
        ("drift", "A>B"): True,
        ("capacity", "A>B"): True,
        ("failure", "C>D,A>B"): True,
        ("drift", "r1:xe-0/0/1"): False,
        ("capacity", "r1:xe-0/0/1"): True,
    }
    for made in (on_link, on_kind):
        assert client.delete(f"{URL}/{made.json()['id']}", headers=write).status_code == 204
    assert not any(silenced().values())


def test_a_silence_that_ends_in_the_last_year_is_fine(client, tokens, links, clean_db):
    body = {"link": "A>B", "starts_at": "9999-12-30T00:00:00Z", "duration_seconds": 86_400}
    r = client.post(URL, json=body, headers=auth(tokens["write"]))
    assert r.status_code == 201, r.text
    assert r.json()["ends_at"].startswith("9999-12-31T00:00:00")


def test_check_constraints_are_named(clean_db):
    """As the other tables' are (alert_kind, ...): silence_kind, not PostgreSQL's default."""
    with clean_db.connect() as conn:
        names = conn.scalars(
            text(
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = 'silence'::regclass AND contype = 'c' ORDER BY 1"
            )
        ).all()
    assert names == ["silence_ends_after_start", "silence_kind"]
