"""The soak's machinery (bench/soak.py, issue 14) in a short run: real `linkcast api
--workers 2` and `linkcast engine` processes on the test database, writers pushing on a
schedule and a dashboard polling for about 25 s at a low rate.

Checked: the accounting the soak reports is right (every sample acknowledged is in the
database, counted here independently of the bench; nothing else is), every request of
every kind got a 200, the engine ticked, and the report states the verdicts it is
built from. Timings are printed by the bench, never asserted.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import text

from bench.soak import LINK_PREFIX, SoakConfig, report, run_soak

# generous: starting the servers alone took over 2 minutes on the loaded 2-core machine
pytestmark = pytest.mark.timeout(600)

READ_ROUTES = {
    "GET /links/latest",
    "GET /alerts",
    "GET /links/{link}/samples",
    "GET /links/{link}/forecasts",
}


def test_soak_accounting(database_url, clean_db, tmp_path):
    cfg = SoakConfig(
        duration=20,
        warmup=5,
        rate=1_000,
        links=50,
        step=2,
        workers=2,
        database_url=database_url,
        connections=2,
        batch=20,  # 50 links: rounds of three requests (20, 20, 10 samples)
        readers=1,
        read_every=1.0,
        data_dir=tmp_path,
    )
    res = run_soak(cfg, say=lambda line: None)

    writes = [c for c in res.calls if c.route == "POST /telemetry"]
    assert writes, "no sample was pushed"
    assert Counter(c.status for c in res.calls) == {"200": len(res.calls)}
    assert res.acknowledged == sum(c.samples for c in writes)
    assert sorted({c.samples for c in writes}) == [10, 20]
    with clean_db.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM sample")).scalar_one()
        per_link = conn.execute(
            text(
                "SELECT l.name, count(*) FROM sample s JOIN link l ON l.id = s.link_id"
                " GROUP BY l.name"
            )
        ).all()
    assert stored == res.acknowledged == res.stored
    assert {name for name, _ in per_link} == {f"{LINK_PREFIX}{k}>x" for k in range(cfg.links)}
    # every round covers every link, so no link is more than a round behind another
    counts = [n for _, n in per_link]
    assert max(counts) - min(counts) <= 1, counts

    assert {c.route for c in res.calls} == {"POST /telemetry", *READ_ROUTES}
    assert res.ticks, "the engine logged no tick"

    lines = report(res)
    assert res.unacknowledged == []
    verdict = "every acknowledged sample stored, none in part: holds"
    assert f"{verdict} (0 lost of {res.acknowledged:,}, 0 requests stored in part)" in lines
    assert "no errors: holds (0 answers not 200)" in lines
    for line in lines:
        print(line)
