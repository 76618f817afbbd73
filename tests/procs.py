"""Real `linkcast` processes for the crash tests: started with the test database's URL,
their output in a file, stopped (or killed) by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

LINKCAST = [sys.executable, "-c", "from linkcast.cli import main; main()"]


class Proc:
    """One `linkcast ...` subprocess; stdout and stderr go to ``log``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [*LINKCAST, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.pid = self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.popen, grace=20)
        self._out.close()


def env_for(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a `linkcast` process: the test database, its own data dir,
    one thread per numeric library (two shared cores), and LINKCAST_<settings>."""
    env = os.environ | {
        "LINKCAST_DATABASE_URL": database_url,
        "LINKCAST_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({f"LINKCAST_{k.upper()}": v for k, v in settings.items()})
    return env


DEADLINE_SECONDS = 120.0  # generous: a loaded 2-core machine


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = DEADLINE_SECONDS, every: float = 0.2
) -> Any:
    """Poll ``check()`` until it returns something truthy (returned), or fail naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop_process(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def database_port(url: str) -> int | None:
    """The TCP port of the database at ``url``; None when it is reached over a Unix
    socket (the embedded PostgreSQL), where a backend cannot be tied to a process."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://", 1))
    host = str(info.get("host") or "")
    return None if not host or host.startswith("/") else int(info.get("port") or 5432)


def db_client_ports(pid: int, port: int) -> set[int]:
    """The local ports of process ``pid``'s connections to the database on ``port``:
    what ties its backends in pg_stat_activity (``client_port``) to the process."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in conns if c.raddr and c.raddr.port == port}
