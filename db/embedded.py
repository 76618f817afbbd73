"""An embedded PostgreSQL server (``pgserver``) for when no database URL is set.

The server runs as its own process (``pg_ctl`` starts it in a session of its own, so a
Ctrl-C in the terminal never reaches it) and must be stopped by the process that
started it. pgserver does that from an ``atexit`` hook, which failed in three ways:

* a SIGTERM under Python's default action kills the process without running ``atexit``
  (``linkcast api``: uvicorn re-raises the SIGTERM that stopped it once the API is
  closed; ``linkcast up`` until it had installed its handler, i.e. while it started);
* pgserver stops the server only when the exiting process is the last one in its list
  of users (``.handle_pids.json`` in the data directory), and never drops the processes
  that died without leaving it (SIGKILL, the case above): after one such exit, no exit
  ever stopped the server again;
* a signal while its ``pg_ctl start`` or ``stop`` ran interrupted them half-way.

So here: a SIGTERM under the default action becomes a normal exit (``SystemExit``),
which runs ``atexit``; SIGINT and SIGTERM wait while the server starts and while it is
stopped; users that no longer run are dropped from the list before it is read; and
:func:`stop_embedded` stops the server (unless a process still running uses it),
called by ``linkcast up`` once everything else has stopped and at exit by ``atexit``.

A server that stops while its process runs (stopped by hand, killed, the machine short
of memory) would leave ``linkcast up`` answering 503 until someone restarted it, and
the single-command install has no one to do that: :func:`supervise_embedded` watches
the servers this process started and starts a stopped one again, logging the stop, each
failed attempt's cause once, and the return.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}
_owned: set[Path] = set()  # data dirs this process started (or began to start) a server in
_hooked: list[bool] = []  # whether stop_embedded is registered with atexit
# Held by stop_embedded and by the supervisor's restart: a server being stopped on
# purpose is never started again behind it.
_in_process = threading.Lock()
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def embedded_url(data_dir: Path | str, *, database: str = "postgres") -> str:
    """Start (or reuse) a PostgreSQL server whose data lives under ``data_dir/pg``.

    The data survives restarts; the server stops when the last process using it exits
    (or when :func:`stop_embedded` is called). Returns a ``postgresql://`` URL that
    connects through its Unix socket.
    """
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # imported here: only needed without LINKCAST_DATABASE_URL
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = (Path(data_dir) / "pg").resolve()
    server = _servers.get(pgdata)
    if server is None:
        pgdata.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        _exit_on_sigterm()
        _owned.add(pgdata)
        try:
            with _signals_deferred():
                with _pgserver_lock():
                    _forget_dead_users(pgdata)
                server = pgserver.get_server(pgdata, cleanup_mode="stop")
                _servers[pgdata] = server
        finally:
            if not _hooked:  # after pgserver's own hook, so that it runs first
                atexit.register(stop_embedded)
                _hooked.append(True)
    uri: str = server.get_uri(database)
    return uri


def stop_embedded() -> None:
    """Stop the embedded servers this process started, unless another process that is
    still running uses one (it stops it when it exits). Safe to call more than once."""
    for pgdata in sorted(_owned):
        # Signals wait (the process is exiting anyway); the lock keeps another process
        # from starting to use the server between the look at its users and the stop.
        with _signals_deferred(redeliver=False), _in_process, _pgserver_lock():
            users = _forget_dead_users(pgdata, leaving=os.getpid())
            server = _servers.pop(pgdata, None)
            if server is not None:
                atexit.unregister(server._cleanup)  # pgserver's own hook: done here
                type(server)._instances.pop(pgdata, None)  # a later start starts anew
            if users:
                log.info("embedded PostgreSQL in %s left running: used by %s", pgdata, users)
            else:
                _stop(pgdata)
        _owned.discard(pgdata)


def supervise_embedded(stop: threading.Event, *, every_seconds: float = 1.0) -> threading.Thread:
    """Start a daemon thread that checks every ``every_seconds`` seconds whether the
    embedded servers this process started still run, and starts a stopped one again
    in the same data directory and socket directory (so the URL that
    :func:`embedded_url` returned stays valid), until ``stop`` is set.

    A start that fails (its configuration unreadable, the killed server's processes
    still holding its shared memory) is tried again every ``every_seconds``; each new
    cause is logged once, and the return with the time the server was down. A server stopped
    by :func:`stop_embedded` is no longer watched. Returns the started thread.
    """
    thread = threading.Thread(
        target=_supervise, args=(stop, every_seconds), name="embedded-postgres", daemon=True
    )
    thread.start()
    return thread


class _Down:
    """What the supervisor knows of a server it found stopped."""

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.said = ""  # the cause last logged


def _supervise(stop: threading.Event, every_seconds: float) -> None:
    down: dict[Path, _Down] = {}  # the servers found stopped and not yet back
    while not stop.wait(every_seconds):
        for pgdata in list(_servers):
            try:
                if postmaster_pid(pgdata) is None:
                    _start_again(pgdata, stop, down, every_seconds)
                else:
                    _back(pgdata, down)  # a start that outlasted pg_ctl's wait, if any
            except Exception:  # noqa: BLE001 - the watch must outlive any one failure
                log.exception("embedded PostgreSQL in %s: supervision failed", pgdata)


def _start_again(
    pgdata: Path, stop: threading.Event, down: dict[Path, _Down], every_seconds: float
) -> None:
    with _in_process:
        server = _servers.get(pgdata)  # gone: stop_embedded stopped it on purpose
        if server is None or stop.is_set():
            down.pop(pgdata, None)
            return
        if postmaster_pid(pgdata) is not None:
            _back(pgdata, down)
            return
        if pgdata not in down:
            down[pgdata] = _Down()
            log.warning("embedded PostgreSQL in %s is not running: starting it again", pgdata)
        # pgserver starts its servers under its lock, one file for every server on the
        # machine: a start elsewhere can hold it for long, so wait a little, then start
        # anyway (PostgreSQL's own postmaster.pid keeps a second server off the data).
        lock = _pgserver_lock()
        locked = lock.acquire(timeout=5)
        failed = _PgserverErrors(pgdata)
        pg_logger = logging.getLogger("pgserver")
        pg_logger.addHandler(failed)
        pg_logger.propagate = False  # pgserver logs the whole server log on a failure
        why = ""
        try:
            server.ensure_postgres_running()
        except Exception as exc:  # noqa: BLE001 - tried again on the next check
            why = failed.why(pgdata) or str(exc)
        finally:
            pg_logger.removeHandler(failed)
            pg_logger.propagate = True
            if locked:
                lock.release()
        if not why and postmaster_pid(pgdata) is None:
            # pgserver took the killed server's process for a running one (a zombie
            # its parent has not reaped yet): nothing was started
            why = "the stopped server's process has not exited yet"
        if not why:
            _back(pgdata, down)
        elif why != down[pgdata].said:  # each new cause once, not every second
            down[pgdata].said = why
            log.error(
                "embedded PostgreSQL in %s did not start (%s): trying again every %.0f s",
                pgdata,
                why,
                every_seconds,
            )


def _back(pgdata: Path, down: dict[Path, _Down]) -> None:
    was = down.pop(pgdata, None)
    if was is not None:
        log.warning(
            "embedded PostgreSQL in %s is running again (pid %s), %.1f s after it was found"
            " stopped",
            pgdata,
            postmaster_pid(pgdata),
            time.monotonic() - was.since,
        )


class _PgserverErrors(logging.Handler):
    """Keeps what pgserver logs at ERROR while it starts a server: the failed command's
    standard error is the cause (``pg_ctl: could not open PID file ...``)."""

    def __init__(self, pgdata: Path) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        try:  # what the server logs from now on is this start's
            self.log_offset = (pgdata / "log").stat().st_size
        except OSError:
            self.log_offset = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def why(self, pgdata: Path) -> str:
        """pg_ctl's standard error, and what the server logged since this start began: the
        lines of the process that logged a FATAL error (the cause: a file it could not
        open, shared memory still in use...)."""
        said = ""
        for message in self.messages:
            _, found, rest = message.partition("stderr:\n")
            lines = [line.strip() for line in rest.split("\n---")[0].splitlines()]
            if found and any(lines):
                said = " ".join(line for line in lines if line)[-300:]
                break
        try:
            with (pgdata / "log").open("rb") as f:
                f.seek(self.log_offset)
                tail = f.read().decode(errors="replace").splitlines()[-20:]
        except OSError:
            tail = []
        fatal = next((line for line in reversed(tail) if "FATAL" in line), "")
        if "[" in fatal:  # with the lines its process logged before it (the cause)
            pid = fatal[fatal.index("[") : fatal.index("]") + 1]
            fatal = " / ".join(line.split(pid, 1)[1].strip() for line in tail if pid in line)
        return "; ".join(part for part in (said, fatal[-400:]) if part)


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the server running in ``pgdata`` (from ``postmaster.pid``), if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _running(pid) else None


def _stop(pgdata: Path) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    log.info("stopping embedded PostgreSQL in %s", pgdata)
    user = "pgserver" if os.geteuid() == 0 else None  # as pgserver runs it under root
    stopped = False
    try:
        # fast: clients are disconnected, the server checkpoints and exits. A session of
        # its own: a Ctrl-C in the terminal does not reach pg_ctl half-way either.
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "60"]
            + ["-m", "fast", "stop"],
            user=user,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
            timeout=90,
        )
        stopped = True
    except Exception as exc:  # noqa: BLE001 - whatever failed, the signals below stop it
        why = getattr(exc, "stderr", None) or exc
        log.warning("pg_ctl stop failed (%s): signalling PostgreSQL %d", why, pid)
    import psutil

    # pg_ctl returns once postmaster.pid is gone, a moment before the process: wait for
    # it; signal it only if pg_ctl failed or it lingers (fast, immediate, then kill).
    try:
        process = psutil.Process(pid)
        if not stopped:
            process.send_signal(signal.SIGINT)  # the postmaster's fast shutdown
        for sig in (signal.SIGQUIT, signal.SIGKILL):  # then immediate, then killed
            try:
                process.wait(10)
                return
            except psutil.TimeoutExpired:
                process.send_signal(sig)
        process.wait(10)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def _pgserver_lock() -> Any:
    """pgserver's lock (one file for all its servers), held while it starts or stops one."""
    import pgserver

    return pgserver.PostgresServer._lock


def _forget_dead_users(pgdata: Path, *, leaving: int | None = None) -> list[int]:
    """Drop from pgserver's list of the server's users (``.handle_pids.json``) those no
    longer running, and ``leaving``; return the others. Call it under pgserver's lock."""
    from pgserver.utils import DiskList

    users = DiskList(pgdata / ".handle_pids.json")
    pids = users.get()
    alive = [p for p in pids if p != leaving and _running(p)]
    if alive != pids:
        gone = sorted(set(pids) - set(alive) - {leaving})
        if gone:
            log.info("embedded PostgreSQL: processes %s ended without stopping it", gone)
        users.put(alive)
    return alive


def _running(pid: int) -> bool:
    import psutil

    pid = abs(pid)  # the postmaster.pid of a single-user postgres (initdb) holds -pid
    if pid == 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sigterm_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> None:
    """Under the default action a SIGTERM ends the process at once, without ``atexit``:
    make it a normal exit (status 143), which stops the server. A handler set by the
    command (``linkcast up``, ``linkcast engine``) is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_exit)


@contextmanager
def _signals_deferred(*, redeliver: bool = True) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the server starts or stops (a KeyboardInterrupt in
    the middle of ``pg_ctl`` leaves a server no one stops); raise them afterwards under
    the handlers they had, unless ``redeliver`` is False. Main thread only (elsewhere a
    signal cannot interrupt anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if redeliver:
            for signum in dict.fromkeys(held):
                signal.raise_signal(signum)
