"""docker-compose.yml and the Dockerfile, read as data (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_SECRET = re.compile(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def command(service: dict) -> str:
    cmd = service["command"]
    return cmd if isinstance(cmd, str) else " ".join(cmd)


def test_services_and_commands(services: dict) -> None:
    assert {"db", "migrate", "api", "engine", "ui", "feeder"} <= set(services)
    assert "timescaledb" in services["db"]["image"]
    assert command(services["migrate"]) == "linkcast db upgrade"
    assert command(services["api"]).startswith("linkcast api --host 0.0.0.0")
    assert command(services["engine"]) == "linkcast engine"
    assert "linkcast ui --host 0.0.0.0" in command(services["ui"])
    feeder = command(services["feeder"])
    assert "linkcast simulate --push http://api:8000 --token" in feeder
    for name in ("migrate", "api", "engine", "ui", "feeder", "tokens"):
        assert services[name]["build"] == "."  # one image, built from the Dockerfile


def test_healthchecks(services: dict) -> None:
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "/healthz" in api_check and "8000" in api_check


@pytest.mark.parametrize("name", ["api", "engine"])
def test_api_and_engine_wait_for_database_and_migrations(services: dict, name: str) -> None:
    deps = services[name]["depends_on"]
    assert deps["db"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_start_order(services: dict) -> None:
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("ui", "feeder"):
        deps = services[name]["depends_on"]
        assert deps["api"]["condition"] == "service_healthy"
        assert deps["tokens"]["condition"] == "service_completed_successfully"


def test_secrets_come_from_the_environment_and_fail_clearly(services: dict) -> None:
    db_env = services["db"]["environment"]
    assert REQUIRED_SECRET.fullmatch(db_env["POSTGRES_PASSWORD"])
    for name in ("migrate", "api", "engine", "ui", "feeder", "tokens"):
        url = services[name]["environment"]["LINKCAST_DATABASE_URL"]
        assert url.startswith("postgresql://linkcast:") and "@db:5432/linkcast" in url
        assert REQUIRED_SECRET.search(url), name
    text = (ROOT / "docker-compose.yml").read_text()
    assert "lc_" not in text  # no token or password written down
    for match in re.finditer(r"^\s*\w*PASSWORD\s*:\s*(.+)$", text, re.M):
        assert "${POSTGRES_PASSWORD:?" in match.group(1)


def test_ui_reads_the_api_with_a_token(services: dict) -> None:
    ui = services["ui"]
    assert ui["environment"]["LINKCAST_API_URL"] == "http://api:8000"
    assert "LINKCAST_TOKEN=" in command(ui) and "read-token" in command(ui)
    assert "--scope read" in command(services["tokens"])
    assert "--scope write" in command(services["tokens"])


def test_demo_feeder_only_under_its_profile(services: dict) -> None:
    assert services["feeder"]["profiles"] == ["demo"]
    for name, service in services.items():
        if name != "feeder":
            assert "profiles" not in service, name


def test_dockerfile_builds_the_project_with_cpu_torch() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    torch = re.search(
        r"pip install torch==(\S+) --index-url https://download.pytorch.org/whl/cpu", text
    )
    assert torch is not None
    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned is not None and torch.group(1) == pinned.group(1)
    assert text.index("whl/cpu") < text.index("pip install .")
    for package in ("linkcast", "api", "db", "forecaster", "simulator", "ui"):
        assert f"COPY {package} " in text


def test_the_image_holds_every_package_the_project_installs() -> None:
    """Each package pyproject installs is copied into the image (engine/ and network/
    were once missing: `pip install .` then built an image whose engine cannot start)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\S+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages and set(packages) <= copied, sorted(set(packages) - copied)
    for package in packages:
        assert (ROOT / package / "__init__.py").exists(), package
