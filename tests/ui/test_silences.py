"""The Alerts page's silences: the active ones listed, and the alerts they match marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from db.models import Alert
from db.session import make_sessionmaker, session_scope
from tests.conftest import ROOT, LiveServer, auth


def test_alerts_page_lists_silences_and_marks_silenced_alerts(
    live_api: LiveServer, tokens: dict[str, str], clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = auth(tokens["admin"])
    for name in ("A>B", "C>D"):
        r = httpx.post(f"{live_api.url}/api/v1/links", json={"name": name}, headers=admin)
        assert r.status_code == 201, r.text
    t = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope(make_sessionmaker(clean_db)) as session:
        for link_id, name in ((1, "A>B"), (2, "C>D")):
            session.add(
                Alert(
                    kind="capacity",
                    state="firing",
                    link_id=link_id,
                    links=[name],
                    onset=t,
                    firing_at=t,
                    message=f"capacity on {name}",
                )
            )
    body = {"link": "A>B", "duration_seconds": 3600, "comment": "fibre work"}
    r = httpx.post(f"{live_api.url}/api/v1/silences", json=body, headers=admin)
    assert r.status_code == 201, r.text
    until = datetime.fromisoformat(r.json()["ends_at"])

    monkeypatch.setenv("LINKCAST_API_URL", live_api.url)
    monkeypatch.setenv("LINKCAST_TOKEN", tokens["read"])
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "alerts.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    alerts, silences = at.dataframe[0].value, at.dataframe[1].value
    assert dict(zip(alerts["link"], alerts["silenced"], strict=True)) == {
        "A>B": True,
        "C>D": False,
    }
    assert "Silences" in [h.value for h in at.subheader]
    (row,) = silences.to_dict("records")
    assert (row["link"], row["kind"], row["comment"], row["created_by"]) == (
        "A>B",
        "any",
        "fibre work",
        "admin token",
    )
    assert row["ends_at"] == until
    assert "until (UTC)" in at.dataframe[1].proto.columns
