"""The real Prometheus remote-writes node_exporter's loopback counter to a live linkcast.

Debian's ``prometheus`` and ``prometheus-node-exporter`` (installed by ``.ci/run``) on
free ports: node_exporter reads the interfaces' counters, Prometheus scrapes it every
second and remote-writes to linkcast's ``/api/v1/write`` with a write token, and
linkcast's default rule turns ``node_network_transmit_bytes_total`` into the link
``127.0.0.1:PORT:lo`` in bit/s. The test sends a known, steady 200 Mbit/s over a TCP
connection on the loopback interface and checks what linkcast stored against what was
sent and against the kernel's own counter (``/proc/net/dev``, read every 50 ms over the
same window: other traffic on lo, such as the test database's, is in both). Then
node_exporter is killed and started again on the same port: Prometheus marks its series
stale while it is gone (staleness markers, which linkcast skips), and the first reading
after it is back must give the mean over the outage, not a spike.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from tests.conftest import LiveServer, free_port
from tests.procs import http_ok, stop_process, wait_for

PROMETHEUS = Path("/usr/bin/prometheus")
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
RATE_BPS = 200e6  # far above the other traffic on lo, so "what was sent" is well defined
TICK_S = 0.01

pytestmark = pytest.mark.skipif(
    not (PROMETHEUS.exists() and NODE_EXPORTER.exists()),
    reason="Debian's prometheus and prometheus-node-exporter are not installed"
    " (apt-get install prometheus prometheus-node-exporter, as .ci/run does)",
)


class Timeline:
    """(wall-clock time, cumulative bytes) readings; bytes at a time by interpolation."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.v: list[float] = []

    def add(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)

    def at(self, t: float) -> float:
        i = bisect_left(self.t, t)
        if i == 0 or i == len(self.t):
            raise AssertionError(f"no reading around {t} ({self.t[0]} to {self.t[-1]})")
        t0, t1, v0, v1 = self.t[i - 1], self.t[i], self.v[i - 1], self.v[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def bps(self, start: float, end: float) -> float:
        return 8 * (self.at(end) - self.at(start)) / (end - start)


class Traffic:
    """A TCP connection over 127.0.0.1 carrying ``bps`` bit/s of payload, paced in
    10 ms chunks; ``sent`` records the bytes handed to the kernel."""

    def __init__(self, bps: float) -> None:
        self.chunk = b"\x00" * int(bps / 8 * TICK_S)
        self.sent = Timeline()
        self._stop = threading.Event()
        listener = socket.create_server(("127.0.0.1", 0))
        self._tx = socket.create_connection(listener.getsockname())
        self._rx, _ = listener.accept()
        listener.close()
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]

    def _send(self) -> None:
        total, start = 0, time.time()
        self.sent.add(start, 0)
        for k in range(1, 1_000_000):
            if self._stop.is_set():
                return
            delay = start + k * TICK_S - time.time()
            if delay > 0:
                time.sleep(delay)
            self._tx.sendall(self.chunk)
            total += len(self.chunk)
            self.sent.add(time.time(), total)

    def _drain(self) -> None:
        buf = bytearray(1 << 20)
        while self._rx.recv_into(buf):
            pass

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._threads[0].join(5)
        self._tx.close()
        self._threads[1].join(5)
        self._rx.close()


@contextmanager
def lo_counter() -> Iterator[Timeline]:
    """The kernel's transmit byte counter of lo, read every 50 ms from /proc/net/dev."""
    kernel, stop = Timeline(), threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for line in Path("/proc/net/dev").read_text().splitlines():
                name, _, fields = line.partition(":")
                if name.strip() == "lo":
                    kernel.add(time.time(), float(fields.split()[8]))
            stop.wait(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield kernel
    finally:
        stop.set()
        thread.join(5)


class Process:
    """A program started with its output in ``log``; stopped with SIGTERM."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def lo_samples(engine: Engine, link: str) -> list[tuple[float, float]]:
    """(epoch seconds, bit/s) of the link's stored samples, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT extract(epoch FROM s.ts)::float8, s.value_bps FROM sample s"
                " JOIN link l ON l.id = s.link_id WHERE l.name = :link ORDER BY s.ts"
            ),
            {"link": link},
        )
        return [(float(t), float(v)) for t, v in rows]


def remote_storage_counts(prometheus_url: str) -> dict[str, float]:
    """Prometheus' own remote-write counters (samples sent, failed, retried...)."""
    body = httpx.get(f"{prometheus_url}/metrics", timeout=5).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        if family.name.startswith("prometheus_remote_storage_"):
            for s in family.samples:
                if s.name.endswith("_total"):
                    counts[s.name] = counts.get(s.name, 0.0) + s.value
    return counts


def test_prometheus_remote_writes_loopback_load_and_an_exporter_restart_is_no_spike(
    live_api: LiveServer, tokens: dict[str, str], clean_db: Engine, tmp_path: Path
) -> None:
    ne_port, prom_port = free_port(), free_port()
    link = f"127.0.0.1:{ne_port}:lo"
    node_exporter = Process(
        [
            str(NODE_EXPORTER),
            f"--web.listen-address=127.0.0.1:{ne_port}",
            "--collector.disable-defaults",
            "--collector.netdev",
            "--collector.netdev.device-exclude=",  # Debian's default leaves lo out
            "--collector.netclass",  # node_network_speed_bytes: -125000 on a virtual NIC
        ],
        tmp_path / "node_exporter.log",
    )
    (tmp_path / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{ne_port}"]
remote_write:
  - url: {live_api.url}/api/v1/write
    authorization:
      credentials: {tokens["write"]}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 2s
"""
    )
    prometheus = Process(
        [
            str(PROMETHEUS),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    prom_url = f"http://127.0.0.1:{prom_port}"

    def logs() -> str:
        return f"node_exporter:\n{node_exporter.tail()}\nprometheus:\n{prometheus.tail()}"

    with lo_counter() as kernel:
        try:
            node_exporter.start()
            wait_for("node_exporter", lambda: http_ok(f"http://127.0.0.1:{ne_port}/metrics"), 15)
            prometheus.start()
            wait_for("prometheus", lambda: http_ok(f"{prom_url}/-/ready"), 20)
            # the pipeline works: linkcast has rates of lo (a baseline, then rates)
            wait_for("lo samples in linkcast", lambda: len(lo_samples(clean_db, link)) >= 2, 20)
            with Traffic(RATE_BPS) as traffic:
                t_on = time.time()
                time.sleep(10)
                t_kill = time.time()
                node_exporter.stop()
                time.sleep(3)  # three scrapes fail: Prometheus writes staleness markers
                node_exporter.start()
                t_back = time.time()
                wait_for(
                    "samples after the restart",
                    lambda: sum(t > t_back for t, _ in lo_samples(clean_db, link)) >= 3,
                    15,
                )
            counts = remote_storage_counts(prom_url)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
        finally:
            prometheus.stop()
            node_exporter.stop()
        # Read while lo is still being sampled, and sample a little past the read, so the
        # kernel's timeline covers every stored sample (Prometheus may scrape during its
        # shutdown, after the last reading of a counter stopped with it).
        rows = lo_samples(clean_db, link)
        time.sleep(0.2)

    # Each stored sample is the rate over (previous reading, its reading].
    spans = [(t0, t1, v) for (t0, _), (t1, v) in zip(rows, rows[1:], strict=False)]

    # 1. The steady period: from a second after the traffic starts to the kill.
    steady = [(a, b, v) for a, b, v in spans if a >= t_on + 1 and b <= t_kill]
    assert len(steady) >= 6, (rows, logs())
    start, end = steady[0][0], steady[-1][1]
    stored = sum(v * (b - a) for a, b, v in steady) / (end - start)
    sent, on_lo = traffic.sent.bps(start, end), kernel.bps(start, end)
    figures = (
        f"stored {stored:.4g}, sent {sent:.4g}, kernel {on_lo:.4g} bit/s over {end - start:.1f} s"
    )
    print(figures)
    assert abs(stored - sent) <= 0.10 * sent, figures  # the bar
    assert abs(stored - on_lo) <= 0.05 * on_lo, figures  # the same counter, read twice
    assert sorted(v for _, _, v in steady)[len(steady) // 2] == pytest.approx(sent, rel=0.1)

    # 2. The restart: Prometheus saw node_exporter gone (no reading for over 2 s), and no
    # sample after it exceeds what lo carried; the first one is the mean over the outage.
    after = [(a, b, v) for a, b, v in spans if b > t_kill]
    gaps = [(a, b, v) for a, b, v in after if b - a > 2]
    assert gaps, f"no gap around the restart: node_exporter was never seen down; {after}"
    for a, b, v in after:
        bound = 1.5 * max(sent, kernel.bps(a, b))
        assert v <= bound, f"spike: {v:.4g} bit/s over ({a:.3f}, {b:.3f}] > {bound:.4g}; {rows}"
    a, b, v = gaps[0]
    print(f"across the restart: {v:.4g} bit/s over {b - a:.1f} s; after it: {after[-3:]}")
    assert v == pytest.approx(kernel.bps(a, b), rel=0.25), (gaps, kernel.bps(a, b))

    # 3. Prometheus had nothing refused: no sample or metadata failed, none retried.
    failed = {k: v for k, v in counts.items() if ("failed" in k or "retried" in k) and v}
    assert not failed, (failed, logs())
    assert counts.get("prometheus_remote_storage_samples_total", 0) > 0, counts
