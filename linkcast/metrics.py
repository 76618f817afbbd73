"""Where linkcast's processes keep their Prometheus metrics, and how a scrape reads them.

linkcast runs as several processes on one host: ``linkcast api --workers N`` is a
supervisor and N uvicorn workers, ``linkcast engine`` is another process, and
``linkcast up`` runs the API and the engine (a thread) in one. A scrape of ``GET
/metrics`` reaches one worker, yet must show every process's counts. prometheus-client's
multiprocess mode does that: each process writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape merges the files.

The layout, under ``DATA_DIR/metrics`` (:data:`METRICS_SUBDIR`)::

    metrics/api-<pid>/      linkcast api: the supervisor's pid; its workers write here
    metrics/engine-<pid>/   linkcast engine
    metrics/up-<pid>/       linkcast up: the API and the engine thread

Each command calls :func:`use_metrics_dir` before anything imports prometheus_client:
it removes the folders of processes that are no longer running (their counts end with
them, as a restarted process's counters start again from 0), makes its own and sets
``PROMETHEUS_MULTIPROC_DIR`` there, which the workers inherit. A scrape merges the files
of every folder (:func:`exposition`), so the API's ``/metrics`` shows the engine's tick
durations whether the engine is a thread of ``linkcast up`` or a ``linkcast engine``
next to ``linkcast api`` with the same ``LINKCAST_DATA_DIR`` on the same host.

Why not the alternatives: the engine serving a ``/metrics`` of its own would need a
second scrape target (and a port); keeping tick durations in the database would need a
table and a write per tick for what is process telemetry. An engine on another host (or
in another container without a shared data volume) is not seen by the API's scrape;
what it writes to the database is (the forecast, utilisation and alert gauges).

A worker that exits (or that uvicorn replaces) leaves its files: its counters and
histograms still count in the sums, as they should. No gauge is per-process in a
``live*`` multiprocess mode (the engine's last-tick gauge takes the ``max``), so there
is nothing for ``mark_process_dead`` to remove; a gauge added in such a mode needs it
at worker exit.

A process that never called :func:`use_metrics_dir` (tests, an app embedded in another
server) keeps its metrics in memory and a scrape shows its own, as prometheus-client
does by default.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_SUBDIR = "metrics"
ROLES = ("api", "engine", "up")


def metrics_root(data_dir: Path | str) -> Path:
    """``DATA_DIR/metrics``: the folder of every local process's metric files."""
    return Path(data_dir) / METRICS_SUBDIR


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _owner_pid(folder: Path) -> int | None:
    role, _, pid = folder.name.rpartition("-")
    return int(pid) if role in ROLES and pid.isdigit() else None


def remove_dead(root: Path) -> list[Path]:
    """Remove the metric folders under ``root`` whose process is gone; returns them."""
    removed = []
    for folder in sorted(root.glob("*-*")):
        pid = _owner_pid(folder)
        if folder.is_dir() and pid is not None and pid != os.getpid() and not _running(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def use_metrics_dir(data_dir: Path | str, role: str) -> Path:
    """Make ``DATA_DIR/metrics/<role>-<pid>`` and point ``PROMETHEUS_MULTIPROC_DIR`` at it.

    Call it first thing in a command, before prometheus_client is imported (it chooses
    in-memory or file-backed values once, at import); child processes (uvicorn's
    workers) inherit the variable. Folders of processes that have exited are removed.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not _multiprocess():
        log.warning(
            "prometheus_client was imported before %s was set: this process's own "
            "metrics stay in memory",
            MULTIPROC_ENV,
        )
    root = metrics_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    remove_dead(root)
    own = root / f"{role}-{os.getpid()}"
    shutil.rmtree(own, ignore_errors=True)  # a pid reused after a reboot
    own.mkdir()
    os.environ[MULTIPROC_ENV] = str(own.resolve())
    return own


def _multiprocess() -> bool:
    """Whether this process's prometheus_client writes its values to files."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


class MergedFiles:
    """A collector of the metric files of every local linkcast process: those of
    ``PROMETHEUS_MULTIPROC_DIR`` and of each folder under ``DATA_DIR/metrics``, merged
    as one (counters and histograms summed over processes, gauges by their
    ``multiprocess_mode``)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)

    def files(self) -> list[str]:
        folders = {Path(p).resolve() for p in [os.environ.get(MULTIPROC_ENV)] if p}
        root = metrics_root(self.data_dir)
        if root.is_dir():
            folders |= {f.resolve() for f in root.iterdir() if f.is_dir()}
        return sorted(str(f) for folder in folders for f in folder.glob("*.db"))

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        return MultiProcessCollector.merge(self.files(), accumulate=True)


def exposition(data_dir: Path | str, *extra: Collector) -> bytes:
    """The text exposition of this host's linkcast metrics and of ``extra`` collectors.

    In multiprocess mode (:func:`use_metrics_dir` was called): the merged files of
    every local process. Otherwise: this process's registry (with the process and
    Python collectors prometheus-client registers by default).
    """
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        disable_created_metrics,
        generate_latest,
    )

    # No *_created series: the files of multiprocess mode have none, the in-memory
    # values would, and Prometheus reads them as series of their own.
    disable_created_metrics()
    if _multiprocess():
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MergedFiles(data_dir))  # type: ignore[arg-type]
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Delegate(REGISTRY))  # type: ignore[arg-type]
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Delegate:
    """The default registry's metrics, without registering ``extra`` collectors in it."""

    def __init__(self, registry: Collector) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
