"""A revoked token stops working within a second in every API process, while a token in
use costs no query per request; `linkcast token list` and `linkcast token revoke`."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from api.tokens import TokenCache
from db.queries import create_token, token_scope
from db.session import make_sessionmaker, session_scope
from db.tokens import revoke_tokens, token_generation
from tests.conftest import auth, free_port

LINKCAST = [sys.executable, "-m", "linkcast.cli"]


def linkcast(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"LINKCAST_DATABASE_URL": url}
    return subprocess.run([*LINKCAST, *args], capture_output=True, text=True, timeout=120, env=env)


def wait_until(condition, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def two_apis(settings, clean_db, tmp_path: Path) -> Iterator[list[str]]:
    """Two `linkcast api` processes on the test database: each has its own token cache,
    as uvicorn's workers do."""
    env = os.environ | {
        "LINKCAST_DATABASE_URL": settings.database_url or "",
        "LINKCAST_DATA_DIR": str(tmp_path),
    }
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [*LINKCAST, "api", f"--port={port}"],
            env=env,
            stdout=(tmp_path / f"api-{port}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs, strict=True):

            def ready(url: str = url, proc: subprocess.Popen = proc) -> bool:
                assert proc.poll() is None, "linkcast api exited"
                try:
                    return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, 120, f"{url} did not start")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_a_revoked_token_fails_within_a_second_in_every_api_process(two_apis, settings, clean_db):
    with session_scope(make_sessionmaker(clean_db)) as session:
        token = create_token(session=session, scope="write", name="collector").token
        other = create_token(session=session, scope="read", name="dashboard").token
    headers = auth(token)
    with httpx.Client(timeout=5) as http:
        for url in two_apis:  # both processes have the token's answer cached
            for _ in range(5):
                assert http.get(f"{url}/api/v1/links", headers=headers).status_code == 200

        r = linkcast("token", "revoke", "collector", url=settings.database_url)
        committed = time.monotonic()  # the command returns once the revocation is stored
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("revoked 1 token: ")

        # Refused in each process once the revocation is seen, within a second (the
        # deadline leaves room for a loaded machine; a 30 s cache never gets there) ...
        seen = []
        for url in two_apis:
            wait_until(
                lambda url=url: http.get(f"{url}/api/v1/links", headers=headers).status_code == 401,
                3,
                f"{url} still accepts the revoked token",
            )
            seen.append(time.monotonic() - committed)
        print(f"\nrevoked token refused by both API processes {max(seen):.2f} s after the revoke")
        # ... and from then on, every time; the other token still works.
        for url in two_apis:
            for _ in range(10):
                r = http.get(f"{url}/api/v1/links", headers=headers)
                assert r.status_code == 401
                assert r.json()["detail"] == "invalid or revoked token"
            assert http.get(f"{url}/api/v1/links", headers=auth(other)).status_code == 200


def test_a_cached_token_costs_no_query_and_a_revocation_clears_it(settings, clean_db):
    sessions = make_sessionmaker(clean_db)
    with session_scope(sessions) as session:
        token = create_token(session=session, scope="write", name="collector").token
    lookups = 0

    def lookup() -> str | None:
        nonlocal lookups
        lookups += 1
        with sessions() as session:
            return token_scope(session=session, token=token)

    cache = TokenCache(settings.database_url)
    # Not polling (no lifespan): nothing is trusted, every check asks the database.
    assert [cache.scope(token, lookup) for _ in range(3)] == ["write"] * 3
    assert lookups == 3
    cache.start()
    try:
        wait_until(lambda: cache.confirmed_age < 1, 10, "the poller read no generation")
        cache.scope(token, lookup)
        lookups = 0
        assert [cache.scope(token, lookup) for _ in range(50)] == ["write"] * 50
        assert lookups == 0  # a push costs no query for its token

        with session_scope(sessions) as session:
            assert revoke_tokens(session=session, key="collector").revoked == 1
        wait_until(lambda: cache.scope(token, lookup) is None, 3, "the revocation unseen")
        assert lookups >= 1
    finally:
        cache.stop()


def test_the_generation_changes_with_every_token_change_even_by_sql(clean_db: Engine):
    sessions = make_sessionmaker(clean_db)
    seen = []
    with clean_db.connect() as conn:
        seen.append(token_generation(conn))
    with session_scope(sessions) as session:
        create_token(session=session, scope="read", name="a")
    with clean_db.begin() as conn:
        seen.append(token_generation(conn))
        conn.execute(text("UPDATE api_token SET scope = 'admin'"))
        seen.append(token_generation(conn))
        conn.execute(text("UPDATE api_token SET revoked_at = now()"))
        seen.append(token_generation(conn))
    assert len(set(seen)) == len(seen)


def test_token_list_and_revoke_by_id_or_name(settings, clean_db):
    url = settings.database_url
    with session_scope(make_sessionmaker(clean_db)) as session:
        made = [
            create_token(session=session, scope="write", name="router push"),
            create_token(session=session, scope="read", name="grafana"),
            create_token(session=session, scope="read", name="grafana"),
        ]

    r = linkcast("token", "revoke", str(made[0].id), url=url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"revoked 1 token: {made[0].id} (router push, write)"
    r = linkcast("token", "revoke", "grafana", url=url)  # a name: every token of it
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("revoked 2 tokens: ")
    r = linkcast("token", "revoke", "grafana", url=url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("revoked 0 tokens: ") and "2 already revoked" in r.stdout
    for unknown in ("nobody", "999999"):
        r = linkcast("token", "revoke", unknown, url=url)
        assert r.returncode == 1
        assert f"no token has the id or name '{unknown}'" in r.stderr

    with session_scope(make_sessionmaker(clean_db)) as session:
        fresh = create_token(session=session, scope="admin", name="ops")
    r = linkcast("token", "list", url=url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "SCOPE", "CREATED", "REVOKED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {str(t.id) for t in [*made, fresh]}
    assert "router push" in rows[str(made[0].id)] and " write " in rows[str(made[0].id)]
    for t in made:
        assert rows[str(t.id)].count(" UTC") == 2  # created and revoked
    assert rows[str(fresh.id)].count(" UTC") == 1 and rows[str(fresh.id)].endswith(" -")
    for t in [*made, fresh]:
        assert t.token not in r.stdout  # never the secret


def test_an_idle_keep_alive_connection_is_kept_past_a_push_interval(two_apis) -> None:
    """Prometheus pushes a batch about every 5 s on a connection it keeps: `linkcast api`
    holds an idle connection longer than that (uvicorn's default closed it at 5 s, and
    Prometheus retried the batch that met the close)."""
    host, port = two_apis[0].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for pause in (0.0, 7.0):  # the second request after more than uvicorn's 5 s
            time.sleep(pause)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            if pause == 0.0:
                first = conn.sock
        assert conn.sock is first  # the same connection: not closed and opened again
    finally:
        conn.close()
