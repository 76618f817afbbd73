"""Debian's real Alertmanager for the tests, on a free port with a null receiver."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.procs import http_ok, stop_process, wait_for

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

needs_alertmanager = pytest.mark.skipif(
    not Path(ALERTMANAGER).exists(), reason="Debian's prometheus-alertmanager is not installed"
)


@dataclass
class Alertmanager:
    url: str

    def alerts(self) -> list[dict]:
        """What Alertmanager holds as active now (resolved alerts drop out)."""
        r = httpx.get(f"{self.url}/api/v2/alerts", timeout=10)
        r.raise_for_status()
        return [a for a in r.json() if a["labels"].get("source") == "linkcast"]

    def by_id(self) -> dict[int, dict]:
        return {int(a["labels"]["alert_id"]): a for a in self.alerts()}


@contextmanager
def running_alertmanager(workdir: Path) -> Iterator[Alertmanager]:
    """Alertmanager started in ``workdir`` and stopped on exit."""
    config = workdir / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    log = (workdir / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            shutil.which(ALERTMANAGER) or ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    am = Alertmanager(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"alertmanager exited: {(workdir / 'alertmanager.log').read_text()}"
            )
        return http_ok(f"{am.url}/-/ready")

    try:
        wait_for("alertmanager to start", ready)
        yield am
    finally:
        stop_process(proc)
        log.close()
