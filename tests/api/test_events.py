"""Events and the error aligned at them (GET /events/{id}/errors), on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from db.models import ForecastError
from db.queries import get_link
from db.session import make_sessionmaker, session_scope
from tests.conftest import auth
from tests.factories import BACK_AFTER, T0, tripled_error_rows

MODELS = {"persistence", *BACK_AFTER}
FAILED = "f0>g0"


def store(client, tokens: dict[str, str], db: Engine, rows: list[dict]) -> int:
    """The links, the rows as the engine would store them, a failure at T0; its id."""
    h = auth(tokens["admin"])
    for name in sorted({r["link"] for r in rows} | {FAILED}):
        assert client.post("/api/v1/links", json={"name": name}, headers=h).status_code == 201
    with session_scope(make_sessionmaker(db)) as session:
        ids = {r["link"]: get_link(session=session, name=r["link"]).id for r in rows}  # type: ignore[union-attr]
        session.add_all(
            ForecastError(
                link_id=ids[r["link"]],
                model=r["model"],
                ts=r["ts"],
                actual_bps=r["actual_bps"],
                error_bps=[r["error_bps"], None],
            )
            for r in rows
        )
    body = {"kind": "failure", "links": [FAILED], "ts": T0.isoformat()}
    r = client.post("/api/v1/events", json=body, headers=h)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_errors_on_a_tripled_link_give_every_model_a_finite_ttc(client, tokens, clean_db):
    event = store(client, tokens, clean_db, tripled_error_rows())
    r = client.get(
        f"/api/v1/events/{event}/errors",
        params={"before": 60, "after": 120},
        headers=auth(tokens["read"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["affected"] == ["s0>t0", "s1>t1"]
    assert body["count"] == len(body["data"]) == len(MODELS) * 180
    row = body["data"][0]
    assert {"model", "offset_steps", "ape", "rel_error", "mae_bps", "links"} <= set(row)
    ttc = body["ttc_steps"]
    assert set(ttc) == MODELS and all(isinstance(v, int) for v in ttc.values())
    assert ttc["persistence"] <= 2 and ttc["hybrid"] <= 2 and ttc["liquid"] <= 4
    for model, c in body["convergence"].items():
        assert c["status"] == "converged"
        assert c["ttc_steps"] == ttc[model] and c["ttc_seconds"] == 60 * ttc[model]
        assert 0 < c["baseline_ape"] < c["threshold_ape"] < 0.1
        assert c["post_steps"] == 120


@pytest.mark.parametrize(("pre", "post", "status"), [(60, 10, "pending"), (5, 120, "no_baseline")])
def test_errors_say_why_there_is_no_ttc(client, tokens, clean_db, pre, post, status):
    event = store(client, tokens, clean_db, tripled_error_rows(pre=pre, post=post))
    body = client.get(f"/api/v1/events/{event}/errors", headers=auth(tokens["read"])).json()
    assert body["ttc_steps"] == dict.fromkeys(MODELS)
    assert {c["status"] for c in body["convergence"].values()} == {status}
    assert all(c["ttc_seconds"] is None for c in body["convergence"].values())


def test_errors_of_an_unknown_event_is_404(client, tokens):
    r = client.get("/api/v1/events/999/errors", headers=auth(tokens["read"]))
    assert r.status_code == 404


def test_openapi_describes_the_ttc(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["EventErrorsPublic"]["properties"]
    assert "forecaster.metrics.convergence" in fields["ttc_steps"]["description"]
    assert "convergence" in schemas["EventErrorsPublic"]["required"]
    assert set(schemas["ConvergenceStatus"]["enum"]) == {
        "converged",
        "not_converged",
        "pending",
        "no_baseline",
    }
    assert "current load" in schemas["AlignedErrorPublic"]["properties"]["ape"]["description"]


def test_a_failure_or_repair_in_the_future_is_a_422_and_nothing_is_stored(client, tokens):
    # A failure dated 2099 was stored: the dashboard drew the link down while what-if
    # did not count it, and the Failures page opened on an event with no errors ever.
    h = auth(tokens["admin"])
    assert client.post("/api/v1/links", json={"name": FAILED}, headers=h).status_code == 201
    soon = datetime.now(UTC) + timedelta(minutes=30)  # within the hour a sample may be ahead
    later = datetime.now(UTC) + timedelta(hours=2)
    for kind in ("failure", "repair"):
        body = {"kind": kind, "links": [FAILED], "ts": later.isoformat()}
        r = client.post("/api/v1/events", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert f"of a {kind} is in the future" in r.json()["detail"]
    assert client.get("/api/v1/events", headers=auth(tokens["read"])).json()["count"] == 0
    for body in (
        {"kind": "failure", "links": [FAILED], "ts": soon.isoformat()},
        # a maintenance window may be planned ahead
        {"kind": "maintenance", "links": [FAILED], "ts": later.isoformat(),
         "end_ts": (later + timedelta(hours=1)).isoformat()},
    ):  # fmt: skip
        r = client.post("/api/v1/events", json=body, headers=h)
        assert r.status_code == 201, r.text
