"""The linkcast command line, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import auth


def linkcast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "linkcast.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    "args",
    [(), ("api",), ("up",), ("db", "upgrade"), ("token", "create"), ("evaluate",)],
)
def test_help_on_every_command(args):
    r = linkcast(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout
    assert "--help" in r.stdout


def test_token_create_prints_a_working_token(settings, clean_db):
    env = os.environ | {"LINKCAST_DATABASE_URL": settings.database_url or ""}
    r = linkcast("token", "create", "--scope", "read", "--name", "grafana", env=env)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("lc_") and len(token) > 40
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/v1/links", headers=auth(token)).status_code == 200
        assert (
            c.post("/api/v1/telemetry", json={"samples": []}, headers=auth(token)).status_code
            == 403
        )


def test_token_create_rejects_unknown_scope(settings):
    env = os.environ | {"LINKCAST_DATABASE_URL": settings.database_url or ""}
    r = linkcast("token", "create", "--scope", "root", env=env)
    assert r.returncode == 2
    assert "read, write, admin" in r.stderr


def test_bad_settings_fail_fast_with_a_clear_message():
    env = os.environ | {"LINKCAST_DATABASE_URL": "mysql://nope", "LINKCAST_STEP_SECONDS": "0"}
    r = linkcast("db", "upgrade", env=env)
    assert r.returncode == 2
    assert "invalid settings" in r.stderr and "postgresql" in r.stderr


def test_a_capacity_alert_that_could_never_clear_is_refused():
    env = os.environ | {"LINKCAST_CAPACITY_RATIO": "0.5", "LINKCAST_CAPACITY_CLEAR_MARGIN": "0.5"}
    r = linkcast("db", "upgrade", env=env)
    assert r.returncode == 2
    assert "invalid settings" in r.stderr
    assert "LINKCAST_CAPACITY_CLEAR_MARGIN (0.5) must be below LINKCAST_CAPACITY_RATIO" in r.stderr
