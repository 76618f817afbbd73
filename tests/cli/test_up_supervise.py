"""`linkcast up` brings its embedded PostgreSQL back: killed outright (SIGKILL, as the
kernel's out-of-memory killer does), the server is started again by `linkcast up`, which
says so in its log, and the API, which answered 503 meanwhile, answers 2xx again. The stop for
30 s under load is tests/api/test_db_outage.py."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.api.outage import embedded_stack, embedded_url, postmaster_ready
from tests.cli.test_up_embedded import wait_gone
from tests.procs import wait_for


def _push(base_url: str, token: str, value: float) -> int:
    body = {"samples": [{"link": "a>b", "ts": datetime.now(UTC).isoformat(), "value": value}]}
    try:
        r = httpx.post(
            f"{base_url}/api/v1/telemetry",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return 0
    return r.status_code


@pytest.mark.timeout(360)
def test_linkcast_up_starts_its_killed_database_again(tmp_path):
    with embedded_stack(tmp_path, 2) as (stack, fault, up):
        assert _push(stack.base_url, stack.token, 1e9) // 100 == 2
        killed = postmaster_ready(fault.pgdata)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(
            "a 503 while the database is down",
            lambda: _push(stack.base_url, stack.token, 2e9) == 503,
            30,
            every=0.05,
        )
        pushed = [3e9 + n for n in range(1000)]
        acked = []

        def push_acked() -> bool:
            value = pushed[len(acked)]
            if _push(stack.base_url, stack.token, value) // 100 == 2:
                acked.append(value)
                return True
            return False

        wait_for("a 2xx after linkcast up restarted its database", push_acked, 60, every=0.2)
        back = postmaster_ready(fault.pgdata)
        assert back is not None and back != killed
        # the API answers as soon as the server accepts connections, which may be before
        # the supervisor's start call has returned and logged it: wait for the line
        wait_for("the supervisor's log of the restart", lambda: "is running again" in up.text(), 30)
        log = up.text()
        assert "is not running: starting it again" in log, log[-3000:]
        assert "is running again (pid " in log and "(pid None)" not in log, log[-3000:]
        with psycopg.connect(embedded_url(fault.pgdata)) as conn:
            values = {r[0] for r in conn.execute("SELECT value_bps FROM sample").fetchall()}
        assert 1e9 in values and acked[0] in values  # before the kill, after the restart
        up.popen.send_signal(signal.SIGTERM)  # the server it started again stops with it
        assert up.popen.wait(120) == 0, up.text()[-3000:]
        t0 = time.monotonic()
        assert wait_gone(back, fault.pgdata), "the restarted PostgreSQL outlived linkcast up"
        print(f"restarted server gone {time.monotonic() - t0:.1f} s after linkcast up exited")
