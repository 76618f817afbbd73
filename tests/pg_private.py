"""A PostgreSQL server of a test's own (initdb and pg_ctl on a free port in a temporary
directory), so that the test can stop and start it while other tests use the shared one.

The binaries are pgserver's (a dependency of linkcast, so always installed). PostgreSQL
refuses to run as root: under root the server runs as pgserver's system user, as the
embedded database does (db/embedded.py).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port


def _server_user() -> str | None:
    """The system user to run PostgreSQL as: None (this one) unless this one is root."""
    if os.geteuid() != 0:
        return None
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists("pgserver")  # what pgserver does before it runs a server as root
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | stat.S_IROTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return "pgserver"


class PrivatePostgres:
    """One PostgreSQL server on 127.0.0.1:``port``, data in a new temporary directory,
    trust authentication for user postgres. :meth:`stop` is a fast shutdown (clients
    are disconnected, as when an operator stops the server); :meth:`start` waits until
    it accepts connections."""

    def __init__(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="linkcast-pg-"))
        self.pgdata = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if self.user is not None:
            shutil.chown(self.dir, self.user, self.user)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / program), *args],
            user=self.user,
            cwd=self.dir,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def _pg_ctl(self, *args: str, wait: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w" if wait else "-W", "-t", "60", *args)

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with ``wait``, return once it accepts connections (pg_ctl
        checks every 0.1 s), else at once (the caller polls for itself)."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.dir}"
        self._pg_ctl("-l", str(self.dir / "log"), "-o", options, "start", wait=wait)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")
        except OSError:
            return ""

    def remove(self) -> None:
        """Stop it (immediate shutdown) if it runs, and delete its directory."""
        if self.running():
            try:
                self._pg_ctl("-m", "immediate", "stop")
            except subprocess.SubprocessError:
                time.sleep(1)
        shutil.rmtree(self.dir, ignore_errors=True)
