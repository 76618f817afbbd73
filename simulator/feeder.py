"""A simulated network played as a live collector: link loads pushed over REST.

:class:`Feeder` walks a :class:`~simulator.network.SimulatedNetwork` step by
step and pushes every step's loads to ``POST /api/v1/telemetry`` with real,
wall-clock timestamps on a grid of ``step_seconds``; the scenario's failures
and repairs also go to ``POST /api/v1/events``. It behaves as a collector
should: a batch the API cannot take now (connection error, timeout, 503, 429)
is kept and retried with backoff, honouring ``Retry-After``; a refusal (401,
403, other 4xx) stops it with a :class:`FeederError` that says what to fix.

**The clock.** Simulated step ``k`` of the live run is pushed at, and stamped
with, ``anchor + k * step_seconds``, where ``anchor`` is the wall-clock time at
start rounded down to a multiple of ``step_seconds`` (the engine's grid when
``step_seconds`` equals ``LINKCAST_STEP_SECONDS``). ``step_seconds`` is *real*
seconds per simulated step: with 5-minute traffic, ``step_seconds=2`` plays a
day in under 10 minutes. ``speed`` says the same thing the other way round,
simulated seconds per real second (``speed = network.step_seconds /
step_seconds``: 150 for 300-s steps every 2 s). ``backfill=N`` first pushes the
first ``N`` steps of the simulation at once, stamped on the grid just before
``anchor`` (the last one at ``anchor - step_seconds``), so forecasters have a
history straight away; batches hold at most ``batch_samples`` (5,000) samples.

Examples
--------
>>> from simulator.failures import LinkEvent, Scenario
>>> from simulator.network import SimulatedNetwork
>>> from simulator.topology import load_topology
>>> from simulator.traffic import sine_traffic
>>> topo = load_topology("abilene")
>>> net = SimulatedNetwork(topo, sine_traffic(topo, n_steps=100, seed=0),
...                        Scenario((LinkEvent(60, ("WASHng", "NYCMng")),)))
>>> feeder = Feeder(net, "http://127.0.0.1:8000", "token", speed=150, backfill=50, steps=20)
>>> feeder.step_seconds, feeder.speed
(2.0, 150.0)
>>> format_ts(1_767_225_600_000), format_ts(1_767_225_600_200)
('2026-01-01T00:00:00Z', '2026-01-01T00:00:00.200Z')

A thread and an event are all a caller needs (``linkcast up --demo``)::

    stop = threading.Event()
    threading.Thread(target=feeder.run, args=(stop,), daemon=True).start()
    ...
    stop.set()
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from simulator.failures import EventKind, LinkEvent, Scenario, build_scenario
from simulator.network import SimulatedNetwork, StepLoads
from simulator.topology import Topology, load_sndlib_xml, load_topology
from simulator.traffic import Traffic, load_abilene, load_traffic_csv, sine_traffic

__all__ = [
    "DEFAULT_FAIL_AT",
    "EVENTS_PATH",
    "MAX_BATCH_SAMPLES",
    "SCENARIO_CHOICES",
    "TELEMETRY_PATH",
    "TRAFFIC_CHOICES",
    "Feeder",
    "FeederError",
    "FeederStats",
    "build_network",
    "demo_feeder",
    "format_ts",
    "select_links",
]

log = logging.getLogger(__name__)

TELEMETRY_PATH = "/api/v1/telemetry"
EVENTS_PATH = "/api/v1/events"
LINKS_PATH = "/api/v1/links"
#: Samples per request at most (the API takes 50,000; smaller requests retry cheaply).
MAX_BATCH_SAMPLES = 5_000
#: Live steps before the failure by default: the models warm up first.
DEFAULT_FAIL_AT = 60
SCENARIO_CHOICES = ("drastic", "moderate", "mixed", "none")
TRAFFIC_CHOICES = ("sine", "abilene")
#: Statuses after which the same request is sent again later.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_EVENT_KINDS = {EventKind.FAIL: "failure", EventKind.REPAIR: "repair"}


class FeederError(RuntimeError):
    """The API refused a request for good (bad token, scope, input): retrying cannot help."""


@dataclass
class FeederStats:
    """What a run did; ``unsent_samples`` are those still queued when it was stopped."""

    steps_pushed: int = 0
    samples_pushed: int = 0
    failures_injected: int = 0
    events_posted: int = 0
    retries: int = 0
    unsent_samples: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None


@dataclass
class _Request:
    path: str
    body: dict[str, Any]
    n_samples: int = 0
    what: str = ""
    #: Failures logged as warnings (each followed by a retry).
    retries: int = 0
    #: Why the last try failed, when it failed as the feeder was being stopped.
    stopped_by: str = ""


def format_ts(ms: int) -> str:
    """RFC 3339 UTC for epoch milliseconds (fraction only when there is one)."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    frac = ms % 1000
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac:03d}Z" if frac else "Z")


def _directed(event: LinkEvent) -> list[str]:
    a, b = event.link
    return [f"{a}>{b}", f"{b}>{a}"]


class Feeder:
    """Push a simulated network's loads to the REST API as a live collector would.

    Parameters
    ----------
    network : SimulatedNetwork
    url : str
        Base URL of the API (``http://host:8000``; a trailing ``/api/v1`` is ignored).
    token : str
        Bearer token with the ``write`` scope.
    step_seconds : float, optional
        Real seconds per simulated step (and the timestamps' grid).
    speed : float, optional
        Simulated seconds per real second, instead of ``step_seconds``. With
        neither, the network plays in real time.
    backfill : int
        Push the first ``backfill`` steps at once with past timestamps.
    steps : int, optional
        Live steps to push after the backfill; None: to the end of the
        traffic, or forever with ``loop``.
    loop : bool
        Replay the traffic (and its scenario) over and over.
    links : collection of str, optional
        Push only these directed links (all by default).
    realtime : bool
        Wait for each step's time; False pushes at once (tests, bulk loads),
        still stamping on the grid from now on, so keep such runs shorter than
        the API's ``LINKCAST_MAX_FUTURE_SECONDS``.
    batch_samples : int
        Samples per request at most.
    max_backoff_seconds : float
        Longest wait between retries (``Retry-After`` is capped by it too).
    log_every_seconds : float
        Interval of the progress line.
    timeout_seconds : float
        HTTP timeout per request.
    transport : httpx.BaseTransport, optional
        For tests or a custom stack.

    Notes
    -----
    Arguments are stored as given; ``run`` keeps its state in locals, so one
    feeder can run again (it starts a new anchor).
    """

    def __init__(
        self,
        network: SimulatedNetwork,
        url: str,
        token: str,
        *,
        step_seconds: float | None = None,
        speed: float | None = None,
        backfill: int = 0,
        steps: int | None = None,
        loop: bool = False,
        links: Collection[str] | None = None,
        realtime: bool = True,
        batch_samples: int = MAX_BATCH_SAMPLES,
        max_backoff_seconds: float = 30.0,
        log_every_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if step_seconds is not None and speed is not None:
            raise ValueError("give step_seconds or speed, not both")
        if step_seconds is not None and not (math.isfinite(step_seconds) and step_seconds > 0):
            raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be > 0, got {speed}")
        if backfill < 0 or (steps is not None and steps < 0):
            raise ValueError("backfill and steps must be >= 0")
        if batch_samples < 1:
            raise ValueError(f"batch_samples must be >= 1, got {batch_samples}")
        if links is not None:
            unknown = sorted(set(links) - set(network.link_names))
            if unknown:
                raise ValueError(f"links not in the topology: {', '.join(unknown[:5])}")
        self.network = network
        self.url = url
        self.token = token
        self.step_seconds_arg = step_seconds
        self.speed_arg = speed
        self.backfill = backfill
        self.steps = steps
        self.loop = loop
        self.links = links
        self.realtime = realtime
        self.batch_samples = batch_samples
        self.max_backoff_seconds = max_backoff_seconds
        self.log_every_seconds = log_every_seconds
        self.timeout_seconds = timeout_seconds
        self.transport = transport
        if self.step_ms < 1:
            raise ValueError("a step must last at least 1 ms of real time")

    # -- the clock --------------------------------------------------------------------

    @property
    def step_ms(self) -> int:
        """Real milliseconds per simulated step (the timestamps' grid)."""
        return round(self.step_seconds * 1000)

    @property
    def step_seconds(self) -> float:
        """Real seconds per simulated step."""
        if self.step_seconds_arg is not None:
            return float(self.step_seconds_arg)
        return self.network.step_seconds / (self.speed_arg or 1.0)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self.network.step_seconds / self.step_seconds

    @property
    def base_url(self) -> str:
        url = self.url.rstrip("/")
        return url.removesuffix("/api/v1")

    # -- running ----------------------------------------------------------------------

    def _steps(self) -> Iterator[StepLoads]:
        total = None if self.steps is None else self.backfill + self.steps
        if not self.loop and total is not None and total > self.network.n_steps:
            log.warning(
                "the traffic has %d steps: stopping there (use loop to replay it)",
                self.network.n_steps,
            )
        for i, step in enumerate(self.network.iter_steps(loop=self.loop)):
            if total is not None and i >= total:
                return
            yield step

    def run(self, stop_event: threading.Event | None = None) -> FeederStats:
        """Push until the steps are done or ``stop_event`` is set.

        Returns
        -------
        FeederStats

        Raises
        ------
        FeederError
            When the API refuses a request for good (401, 403, other 4xx).
        """
        stop = stop_event if stop_event is not None else threading.Event()
        stats = FeederStats()
        step_ms = self.step_ms
        anchor_ms = int(time.time() * 1000) // step_ms * step_ms
        wanted = None if self.links is None else set(self.links)
        names = [n for n in self.network.link_names if wanted is None or n in wanted]
        pushed = frozenset(names)
        edges = self.network.edge_link_records()
        names += [r["name"] for r in edges]
        pending: deque[_Request] = deque()
        samples: list[dict[str, Any]] = []
        events_on = [True]
        last_log = time.monotonic()
        log.info(
            "feeding %d links of %s to %s: a %d-s simulated step every %g s (speed %gx), "
            "backfill %d steps, %s",
            len(names),
            self.network.topology.name,
            self.base_url,
            self.network.step_seconds,
            self.step_seconds,
            self.speed,
            self.backfill,
            self._scenario_line(),
        )
        if self.steps is not None and not self.loop:
            late = [e for e in self.network.scenario.events if e.step >= self.backfill + self.steps]
            if late:
                log.warning(
                    "%d scenario events come after the last of the %d live steps: not played",
                    len(late),
                    self.steps,
                )
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        with httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self.timeout_seconds,
            transport=self.transport,
        ) as client:
            if edges and not self._register(client, edges, stop, stats):
                return stats
            generated = 0
            live = False
            for index, step in enumerate(self._steps()):
                ts_ms = anchor_ms + (index - self.backfill) * step_ms
                live = index >= self.backfill
                if stop.is_set():
                    break
                if live and self.realtime:
                    delay = ts_ms / 1000 - time.time()
                    if delay > 0 and stop.wait(delay):
                        break
                ts = format_ts(ts_ms)
                values = step.loads_bps
                samples.extend({"link": n, "ts": ts, "value": values[n]} for n in names)
                generated += 1
                events = self._events(step, ts, pushed) if events_on[0] else []
                for event in step.events:
                    if event.kind == EventKind.FAIL:
                        stats.failures_injected += 1
                    log.info(
                        "step %d (%s): %s of %s",
                        step.step,
                        ts,
                        _EVENT_KINDS[event.kind],
                        "-".join(event.link),
                    )
                end_of_backfill = index == self.backfill - 1
                if live or end_of_backfill or events or len(samples) >= self.batch_samples:
                    self._queue_samples(pending, samples)
                    samples = []
                pending.extend(events)
                if not self._flush(client, pending, stop, stats, events_on):
                    break
                if not samples:
                    stats.steps_pushed = generated
                    stats.last_ts = datetime.fromtimestamp(ts_ms / 1000, UTC)
                    if stats.first_ts is None:
                        stats.first_ts = datetime.fromtimestamp(
                            (anchor_ms - self.backfill * step_ms) / 1000, UTC
                        )
                if time.monotonic() - last_log >= self.log_every_seconds:
                    self._log_progress(stats)
                    last_log = time.monotonic()
            else:
                self._queue_samples(pending, samples)
                samples = []
                self._flush(client, pending, stop, stats, events_on)
        stats.unsent_samples = len(samples) + sum(r.n_samples for r in pending)
        unsent_events = sum(1 for r in pending if r.path == EVENTS_PATH)
        if pending and pending[0].retries:  # failing, and said so, before the stop
            log.warning(
                "stopped with %d samples and %d events not pushed",
                stats.unsent_samples,
                unsent_events,
            )
        elif pending or samples:  # stopped as asked, between or during pushes
            log.info(
                "feeder stopped; %d samples %s%s were not pushed%s",
                stats.unsent_samples,
                "of the last step" if live else "of the backfill",
                f" and {unsent_events} events" if unsent_events else "",
                f" (last push: {pending[0].stopped_by})"
                if pending and pending[0].stopped_by
                else "",
            )
        self._log_progress(stats, final=True)
        return stats

    def _register(
        self,
        client: httpx.Client,
        records: list[dict[str, Any]],
        stop: threading.Event,
        stats: FeederStats,
    ) -> bool:
        """Register the edge links with their label (``POST /api/v1/links``, admin scope),
        each sent and retried as a push is (:meth:`_send`); False if stopped first.

        Raises
        ------
        FeederError
            When the API refuses one for good (a token without the admin scope).
        """
        log.info("registering %d edge links (label edge: ingress, egress)", len(records))
        for record in records:
            request = _Request(LINKS_PATH, record, 0, f"edge link {record['name']!r}")
            if not self._send(client, request, stop, stats, [True]):
                return False
        return True

    def _scenario_line(self) -> str:
        events = self.network.scenario.events
        if not events:
            return "no failures"
        parts = [
            f"{_EVENT_KINDS[e.kind]} of {'-'.join(e.link)} at step {e.step}"
            + (f" (live step {e.step - self.backfill})" if e.step >= self.backfill else "")
            for e in events
        ]
        return f"{self.network.scenario.name} scenario: " + ", ".join(parts)

    def _queue_samples(self, pending: deque[_Request], samples: list[dict[str, Any]]) -> None:
        for i in range(0, len(samples), self.batch_samples):
            chunk = samples[i : i + self.batch_samples]
            pending.append(
                _Request(TELEMETRY_PATH, {"samples": chunk}, len(chunk), f"{len(chunk)} samples")
            )

    def _events(self, step: StepLoads, ts: str, pushed: Collection[str]) -> list[_Request]:
        """One event per kind at this step, naming the failed links this feeder pushes
        (the API refuses links it has never seen)."""
        out = []
        for kind, label in _EVENT_KINDS.items():
            links = [n for e in step.events if e.kind == kind for n in _directed(e) if n in pushed]
            if links:
                note = f"simulated {self.network.scenario.name} {label} (step {step.step})"
                body = {"kind": label, "links": links, "ts": ts, "note": note}
                out.append(_Request(EVENTS_PATH, body, 0, f"{label} event"))
        return out

    def _log_progress(self, stats: FeederStats, *, final: bool = False) -> None:
        log.info(
            "%spushed %d steps (%d samples), %d failures injected, %d events, %d retries%s",
            "done: " if final else "",
            stats.steps_pushed,
            stats.samples_pushed,
            stats.failures_injected,
            stats.events_posted,
            stats.retries,
            f"; last ts {stats.last_ts:%Y-%m-%dT%H:%M:%S}Z" if stats.last_ts else "",
        )

    # -- HTTP -------------------------------------------------------------------------

    def _flush(
        self,
        client: httpx.Client,
        pending: deque[_Request],
        stop: threading.Event,
        stats: FeederStats,
        events_on: list[bool],
    ) -> bool:
        """Send the queue in order; False when stopped with requests still queued."""
        while pending:
            request = pending[0]
            if request.path == EVENTS_PATH and not events_on[0]:
                pending.popleft()
                continue
            if not self._send(client, request, stop, stats, events_on):
                return False
            pending.popleft()
        return True

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_seconds, 0.5 * 2**attempt))

    def _retry_after(self, response: httpx.Response) -> float | None:
        raw = response.headers.get("retry-after")
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - time.time()
        return min(self.max_backoff_seconds, max(0.0, seconds))

    def _send(
        self,
        client: httpx.Client,
        request: _Request,
        stop: threading.Event,
        stats: FeederStats,
        events_on: list[bool],
    ) -> bool:
        """Send one request until it is accepted; False when stopped first."""
        content = orjson.dumps(request.body)
        while True:
            try:
                response = client.post(request.path, content=content)
            except httpx.TransportError as exc:
                delay = self._backoff(request.retries)
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = response.status_code
                if status < 300:
                    if request.path == TELEMETRY_PATH:
                        stats.samples_pushed += request.n_samples
                    elif request.path == EVENTS_PATH:
                        stats.events_posted += 1
                    if request.retries:
                        log.info("%s accepted after %d retries", request.what, request.retries)
                    return True
                if request.path == EVENTS_PATH and status in (404, 405):
                    log.warning(
                        "the API has no POST %s yet (%d): failures and repairs are not posted "
                        "as events (telemetry goes on)",
                        EVENTS_PATH,
                        status,
                    )
                    events_on[0] = False
                    return True
                if status not in RETRY_STATUSES:
                    raise FeederError(self._refusal(response, request))
                retry_after = self._retry_after(response)
                delay = self._backoff(request.retries) if retry_after is None else retry_after
                reason = f"{status} {_detail(response)}"
            if stop.is_set():
                # Being stopped: the API may have gone first (`linkcast up` closes it on
                # Ctrl-C). No retry follows, so no warning; run() says what was not pushed.
                request.stopped_by = reason
                return False
            request.retries += 1
            stats.retries += 1
            log.warning(
                "%s not accepted (%s): kept, retry %d in %.1f s",
                request.what,
                reason,
                request.retries,
                delay,
            )
            if stop.wait(delay):
                return False

    def _refusal(self, response: httpx.Response, request: _Request) -> str:
        status = response.status_code
        detail = _detail(response)
        where = f"POST {self.base_url}{request.path}"
        if status == 401:
            return (
                f"{where}: 401, the API refused the token ({detail}); "
                "pass a valid one with --token or LINKCAST_TOKEN"
            )
        if status == 403 and request.path == LINKS_PATH:
            return (
                f"{where}: 403, the token may not register links ({detail}); edge links are"
                " registered with their label, which needs the admin scope: linkcast token"
                " create --scope admin"
            )
        if status == 403:
            return (
                f"{where}: 403, the token may not push ({detail}); it needs the write scope: "
                "linkcast token create --scope write"
            )
        if status == 404:
            return f"{where}: 404, no such route; is {self.base_url} a linkcast API?"
        if status == 413:
            return f"{where}: 413, batch too large ({detail}); lower batch_samples"
        return f"{where}: {status}, refused ({detail})"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]


# -- building a network from options ------------------------------------------------------


def _topology(topology: str | None, topology_file: str | Path | None, traffic: str) -> Topology:
    if topology and topology_file:
        raise ValueError("give a topology name or a topology file, not both")
    if topology_file:
        return load_sndlib_xml(topology_file)
    return load_topology(topology or ("abilene" if traffic == "abilene" else "nobel-eu"))


def build_network(
    *,
    topology: str | None = None,
    topology_file: str | Path | None = None,
    traffic: str = "sine",
    traffic_file: str | Path | None = None,
    scenario: str = "drastic",
    seed: int = 0,
    fail_at: int = DEFAULT_FAIL_AT,
    backfill: int = 0,
    repair_after: int | None = None,
    n_steps: int | None = None,
    edge_links: bool = False,
) -> SimulatedNetwork:
    """A network with traffic and a failure, ready to feed.

    Parameters
    ----------
    topology : str, optional
        Built-in name (``nobel-eu``, the default; ``abilene`` with abilene traffic).
    topology_file : str or Path, optional
        SNDlib XML instead.
    traffic : {"sine", "abilene"}
        Synthetic sums of sines (5-minute steps) or the shipped Abilene matrices.
    traffic_file : str or Path, optional
        A gzipped CSV (``timestamp``, ``SRC>DST`` columns in Mbit/s) instead.
    scenario : {"drastic", "moderate", "mixed", "none"}
    seed : int
        Same seed, same traffic and failure.
    fail_at : int
        Live steps before the failure (counted after the backfill).
    backfill : int
        Steps the feeder will push as history first.
    repair_after : int, optional
        Repair the failed links this many steps after the failure.
    n_steps : int, optional
        Length of sine traffic (default: one week, or more when needed).
    edge_links : bool
        Also push each router's edge links (:meth:`SimulatedNetwork.edge_link_records`).

    Raises
    ------
    ValueError
        Unknown names, a failure beyond the traffic, no qualifying failure.
    """
    if scenario not in SCENARIO_CHOICES:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIO_CHOICES)}")
    if traffic_file is None and traffic not in TRAFFIC_CHOICES:
        raise ValueError(f"unknown traffic {traffic!r}; valid: {', '.join(TRAFFIC_CHOICES)}")
    if fail_at < 0 or backfill < 0:
        raise ValueError("fail_at and backfill must be >= 0")
    topo = _topology(topology, topology_file, "file" if traffic_file else traffic)
    fail_step = backfill + fail_at
    tail = (repair_after or 0) + 288  # a day of 5-minute steps after the failure
    tr: Traffic
    if traffic_file is not None:
        tr = load_traffic_csv(traffic_file, topology=topo)
    elif traffic == "abilene":
        tr = load_abilene(topology=topo)
    else:
        tr = sine_traffic(topo, n_steps=n_steps or max(2016, fail_step + tail), seed=seed)
    tr.check_nodes(topo)
    events: Sequence[LinkEvent] = ()
    name = "none"
    if scenario != "none":
        if fail_step >= tr.n_steps:
            raise ValueError(
                f"the failure at step {fail_step} (backfill {backfill} + fail_at {fail_at}) "
                f"is beyond the {tr.n_steps} steps of the traffic"
            )
        built = build_scenario(scenario, topo, tr, seed=seed, step=fail_step)
        events, name = built.events, built.name
        if repair_after is not None:
            repair_step = fail_step + max(1, repair_after)
            if repair_step < tr.n_steps:
                events = tuple(events) + tuple(
                    LinkEvent(repair_step, e.link, EventKind.REPAIR) for e in built.events
                )
        scenario_played = Scenario(tuple(events), name, built.target)
        return SimulatedNetwork(topo, tr, scenario_played, edge_links=edge_links)
    return SimulatedNetwork(topo, tr, Scenario((), name), edge_links=edge_links)


def select_links(network: SimulatedNetwork, max_links: int) -> tuple[str, ...]:
    """At most ``max_links`` directed links: failed ones first, then the most shifted, then
    the rest in topology order, so a small demo still shows the failure and the drift."""
    result = network.result
    names = network.link_names
    order: list[int] = list(result.failed_links)
    order += [s.link_index for s in result.failure_shifts]
    order += range(len(names))
    chosen: dict[str, None] = {}
    for i in order:
        if len(chosen) >= max_links:
            break
        chosen.setdefault(names[i], None)
    return tuple(chosen)


def demo_feeder(
    url: str,
    token: str,
    *,
    step_seconds: float,
    backfill: int = 3 * 288,
    fail_at: int = DEFAULT_FAIL_AT,
    scenario: str = "drastic",
    seed: int = 0,
) -> Feeder:
    """The feeder of ``linkcast up --demo``: nobel-eu, sine traffic, a drastic failure.

    Three days of history first (864 five-minute steps: the liquid model learns once a
    season-ago context exists, so it trains through the second and third day while the
    engine catches up), then a step every ``step_seconds`` (``linkcast up`` passes its
    demo grid, 300 / --speed seconds), the failure ``fail_at`` steps in, replayed forever.
    """
    network = build_network(scenario=scenario, seed=seed, fail_at=fail_at, backfill=backfill)
    return Feeder(network, url, token, step_seconds=step_seconds, backfill=backfill, loop=True)
