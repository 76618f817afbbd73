"""`linkcast up` on the embedded PostgreSQL: whatever stops it (SIGTERM, Ctrl-C, a SIGTERM
while it starts, after an earlier run was killed), the server of its data dir goes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

UP = [sys.executable, "-c", "from linkcast.cli import main; main()", "up", "--no-ui"]


def postmaster(pgdata: Path, *, ready: bool = False) -> int | None:
    """The pid in ``postmaster.pid`` while that process runs (with ``ready``: only once
    the server says it accepts connections, not initdb's single-user run)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if ready and (len(lines) < 8 or lines[7].strip() != "ready"):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


class Up:
    """One `linkcast up` on ``data`` (embedded database: no LINKCAST_DATABASE_URL)."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "LINKCAST_DATABASE_URL"}
        env["LINKCAST_DATA_DIR"] = str(data)
        self.log = data.parent / f"up-{self.port}.log"
        self.proc = subprocess.Popen(
            [*UP, f"--port={self.port}"],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{self.port}/readyz"
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "linkcast up did not start\n" + self.output()
            time.sleep(0.2)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(120)


def wait_gone(pid: int, pgdata: Path, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) or (pgdata / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.timeout(600)
def test_the_embedded_database_stops_with_linkcast_up(tmp_path):
    data = tmp_path / "data"
    pgdata = data / "pg"
    runs: list[Up] = []
    try:
        # An earlier run killed outright (SIGKILL, OOM) leaves the server and its handle
        # behind: pgserver then never stopped it again, on any later exit.
        first = Up(data)
        runs.append(first)
        first.wait_ready()
        leftover = postmaster(pgdata)
        assert leftover is not None
        first.proc.kill()
        first.proc.wait(30)
        assert alive(leftover)  # nothing can stop it on a SIGKILL: the next run's job

        for n, sig in enumerate([signal.SIGTERM, signal.SIGINT, signal.SIGTERM]):
            up = Up(data)
            runs.append(up)
            up.wait_ready()
            pid = postmaster(pgdata)
            assert pid is not None
            if n == 0:
                assert pid == leftover  # the killed run's server, taken over
            assert up.stop(sig) == 0, up.output()
            assert "linkcast: stopping (engine checkpoint" in up.output()
            assert wait_gone(pid, pgdata), f"{sig!r}: PostgreSQL {pid} still runs\n" + up.output()

        # SIGTERM while it starts (its database up, the API not yet): before, the default
        # action killed it there and the server stayed.
        for _ in range(2):
            up = Up(data)
            runs.append(up)
            deadline = time.monotonic() + 120
            while (pid := postmaster(pgdata, ready=True)) is None:
                assert up.proc.poll() is None, up.output()
                assert time.monotonic() < deadline, "the database did not start\n" + up.output()
                time.sleep(0.01)
            up.stop(signal.SIGTERM)  # 130 (interrupted while starting) or 0 (it had started)
            assert wait_gone(pid, pgdata), f"PostgreSQL {pid} still runs\n" + up.output()
    finally:
        for up in runs:
            if up.proc.poll() is None:
                up.proc.kill()
                up.proc.wait(30)
        left = postmaster(pgdata)
        if left is not None:  # a failed check above: stop what the test started
            os.kill(left, signal.SIGQUIT)
            wait_gone(left, pgdata, 10)
