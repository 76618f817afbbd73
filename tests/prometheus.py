"""Debian's real Prometheus for the tests: scrapes one target every second on a free port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.procs import http_ok, stop_process, wait_for

PROMETHEUS = "/usr/bin/prometheus"

needs_prometheus = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="Debian's prometheus is not installed"
)


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict]:
        """The instant vector of ``promql`` now (``[]`` if nothing matches yet)."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` now, None while it has none."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None


@contextmanager
def running_prometheus(workdir: Path, target: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``target`` (host:port, path /metrics) every second; stopped
    on exit."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: linkcast\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {log_path.read_text()}")
        return http_ok(f"{prometheus.url}/-/ready")

    try:
        wait_for("prometheus to start", ready, timeout=30)
        yield prometheus
    finally:
        stop_process(proc)


def scrape_error(prometheus: Prometheus) -> str:
    """Prometheus' last scrape error for its one target ('' if none)."""
    r = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=10)
    r.raise_for_status()
    targets = r.json()["data"]["activeTargets"]
    return "; ".join(t.get("lastError", "") for t in targets)
