"""From collectors' series to link loads: one mapping for every push format.

Prometheus remote write, InfluxDB line protocol and OTLP all deliver *series*: a
metric name, a set of labels (tags, attributes) and timestamped values. A
:class:`SeriesMap` says which of them are link loads, how a link's name is made from
their labels, and their unit:

- a **gauge** in ``bit/s``, ``kbit/s``, ``Mbit/s``, ``Gbit/s`` or ``byte/s``, stored as
  it comes (converted to bit/s);
- a **counter** of ``octets``, ``bytes`` or ``bits`` (``ifHCOutOctets``,
  ``node_network_transmit_bytes_total``), turned into bit/s from two readings by
  :mod:`db.counters` (``8 x delta / elapsed``, wraps and resets handled there);
- a **capacity** (``role = "capacity"``, for example ``ifHighSpeed`` in Mbit/s), which
  sets the link's ``capacity_bps`` instead of storing a sample.

Names are matched exactly. An InfluxDB point ``interface,agent_host=r1 ifHCOutOctets=5u``
is the series ``interface_ifHCOutOctets`` (Telegraf's own ``<measurement>_<field>``
naming in its Prometheus output). OTLP resource attributes are labels as well, so
``{host.name}`` works. A series that no rule matches, or that lacks a label its rule's
template names, is counted and dropped: never an error for the whole request. So is a
capacity of 0 or below (``unknown_capacity``): what devices report for a speed they do
not know (node_exporter's ``node_network_speed_bytes`` is -125000 on a virtual NIC).

The file (``LINKCAST_SERIES_FILE``, TOML) is a list of ``[[series]]`` tables, tried in
order, the first match winning; :data:`DEFAULT_RULES` is used when none is set::

    [[series]]
    metric = "ifHCOutOctets"          # the series name, exact
    link = "{instance}:{ifName}"      # str.format over the labels
    unit = "octets"                   # a counter: bit/s = 8 x delta / elapsed
    counter_bits = 64                 # where it wraps (32 or 64)
    match = { ifType = "6" }          # optional: labels that must have these values

Errors: :class:`SeriesFileError` (at start, naming the file, rule and field) and
:class:`BadPoint` (a value that is not finite or negative, or a timestamp outside
[1970, now + ``max_future``]).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import is_not, itemgetter
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from api.ingest import MAX_LINK_NAME, MAX_VALUE_BPS
from api.series_cache import CAP_BYTES, SeriesCache
from db.ingest import Gauges

Kind = Literal["gauge", "counter"]

# unit -> (kind, bits per unit)
UNITS: dict[str, tuple[Kind, float]] = {
    "bit/s": ("gauge", 1.0),
    "kbit/s": ("gauge", 1e3),
    "Mbit/s": ("gauge", 1e6),
    "Gbit/s": ("gauge", 1e9),
    "byte/s": ("gauge", 8.0),
    "octets": ("counter", 8.0),
    "bytes": ("counter", 8.0),
    "bits": ("counter", 1.0),
}
ROLES = ("load", "capacity")
_FIELD = re.compile(r"\{([^{}\s]+)\}")  # {label}: any label name, dots included


class SeriesFileError(ValueError):
    """The series file cannot be used; the message names the file, rule and field."""


@dataclass(frozen=True, slots=True)
class BadPoint(ValueError):
    """Point ``index`` of a request cannot be stored (the whole request is refused)."""

    index: int
    msg: str

    def __str__(self) -> str:
        return self.msg


class Point(NamedTuple):
    """One value of one series, as a decoder hands it over.

    ``ts`` is in seconds since the epoch (UTC); ``value`` an int where the wire had
    one (a 64-bit counter keeps every digit), else a float. ``labels`` must not change
    once handed over: :meth:`SeriesMap.map_batch` remembers what it made of each labels
    object (a decoder hands the same object for every point of a series, across
    requests, so that a series is matched to its rule and link once). A tuple, not a
    dataclass: a request makes one per sample, and a tuple is the cheapest to build.
    """

    name: str
    labels: Mapping[str, str]
    ts: float
    value: float | int


@dataclass(frozen=True)
class Rule:
    """One ``[[series]]`` table: which series are a link's load, and its unit."""

    metric: str
    link: str
    unit: str = "bit/s"
    role: str = "load"
    counter_bits: int = 64
    match: Mapping[str, str] = field(default_factory=dict)
    _parts: tuple[tuple[bool, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.role == "capacity" and self.kind == "counter":
            raise ValueError(f"a capacity is a gauge, not a counter of {self.unit}")
        if self.counter_bits not in (32, 64):
            raise ValueError(f"counter_bits must be 32 or 64, got {self.counter_bits!r}")
        if _FIELD.sub("", self.link).count("{") or _FIELD.sub("", self.link).count("}"):
            raise ValueError(f"link {self.link!r}: a brace that is not around a label name")
        if not self.labels:
            raise ValueError(f"link {self.link!r} names no label (for example '{{instance}}')")
        # the template as (is a label, text) pieces; split gives literal, label, literal, ...
        pieces = _FIELD.split(self.link)
        parts = tuple((k % 2 == 1, x) for k, x in enumerate(pieces) if x or k % 2)
        object.__setattr__(self, "_parts", parts)

    @property
    def kind(self) -> Kind:
        return UNITS[self.unit][0]

    @property
    def scale(self) -> float:
        """Bits per unit: bit/s = value x scale (gauge), or delta x scale / s (counter)."""
        return UNITS[self.unit][1]

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names the link template uses, in order."""
        return tuple(_FIELD.findall(self.link))

    def format(self, labels: Mapping[str, str]) -> str | None:
        """The link template filled from ``labels``; None if one is missing."""
        try:
            return "".join([labels[x] if label else x for label, x in self._parts])
        except KeyError:
            return None

    def link_name(self, labels: Mapping[str, str]) -> str | None:
        """The link's name, or None if a label is missing or the name is not usable.

        >>> Rule("x", "{host.name}:{device}").link_name({"host.name": "h", "device": "lo"})
        'h:lo'
        """
        return self.link_or_reason(labels)[0]

    def link_or_reason(self, labels: Mapping[str, str]) -> tuple[str | None, str | None]:
        """The link's name and None, or None and why there is none: ``missing_label`` (a
        label the template names is not there) or ``bad_link_name`` (the name made is
        blank, longer than :data:`api.ingest.MAX_LINK_NAME` characters, or holds a
        character that is not printable, a NUL for one).

        >>> rule = Rule("ifHCOutOctets", "{instance}:{ifName}", "octets")
        >>> rule.link_or_reason({"instance": "r1"})
        (None, 'missing_label')
        >>> rule.link_or_reason({"instance": "r1", "ifName": "et" + chr(0)})
        (None, 'bad_link_name')
        >>> rule.link_or_reason({"instance": "r1", "ifName": "et0"})
        ('r1:et0', None)
        """
        name = self.format(labels)
        if name is None:
            return None, "missing_label"
        if not name.strip() or len(name) > MAX_LINK_NAME or not name.isprintable():
            return None, "bad_link_name"
        return name, None


DEFAULT_RULES: tuple[Rule, ...] = (
    # linkcast's own gauge, in any format: link_load_bps{link="A>B"}; Influx
    # `link_load,link=A>B bps=1.2e9`; OTLP gauge `link_load_bps` with attribute link.
    Rule("link_load_bps", "{link}", "bit/s"),
    # Prometheus snmp_exporter (if_mib): the transmit side of each interface.
    Rule("ifHCOutOctets", "{instance}:{ifName}", "octets", counter_bits=64),
    Rule("ifHighSpeed", "{instance}:{ifName}", "Mbit/s", role="capacity"),
    # Prometheus node_exporter.
    Rule("node_network_transmit_bytes_total", "{instance}:{device}", "bytes"),
    Rule("node_network_speed_bytes", "{instance}:{device}", "byte/s", role="capacity"),
    # Telegraf inputs.snmp interface table (measurement `interface`).
    Rule("interface_ifHCOutOctets", "{agent_host}:{ifName}", "octets", counter_bits=64),
    Rule("interface_ifHighSpeed", "{agent_host}:{ifName}", "Mbit/s", role="capacity"),
    # Telegraf inputs.net.
    Rule("net_bytes_sent", "{host}:{interface}", "bytes"),
    # OpenTelemetry collector hostmetrics (network scraper), unit By, cumulative sum.
    Rule("system.network.io", "{host.name}:{device}", "bytes", match={"direction": "transmit"}),
)


_NO_GAUGES = Gauges([], np.empty(0, np.int64), np.empty(0), np.empty(0))


@dataclass
class Mapped:
    """A request's points sorted into what is stored.

    ``gauges``: loads in bit/s, as columns (:class:`Gauges`). ``counters``: (series,
    link, ts seconds, raw value, bits per unit, counter bits), the series its name and
    every label. ``capacities``: link -> bit/s (the last reading wins). ``dropped``:
    reason -> points not stored (``no_rule``, ``missing_label``, ``bad_link_name``,
    ``unknown_capacity``: a capacity of 0 or below, or NaN).
    """

    gauges: Gauges = _NO_GAUGES
    counters: list[tuple[str, str, float, float | int, float, int]] = field(default_factory=list)
    capacities: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def links(self) -> set[str]:
        return self.gauges.names() | {c[1] for c in self.counters} | set(self.capacities)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


@dataclass(frozen=True, slots=True)
class SeriesBatch:
    """A request's samples as columns over its series: what a decoder hands over.

    ``series``: (name, labels) per series, in the order the request has them (a series
    may come more than once); ``of``: int64 per sample, the position of its series in
    ``series``, or None when sample ``i`` is of series ``i``; ``ts``: float64 seconds
    since the epoch per sample; ``values``: per sample, an int where the wire had one (a
    64-bit counter keeps every digit), else a float. Each labels object must not change
    once handed over (see :class:`Point`).
    """

    series: Sequence[tuple[str, Mapping[str, str]]]
    of: np.ndarray | None
    ts: np.ndarray
    values: Sequence[float | int]

    @classmethod
    def empty(cls) -> SeriesBatch:
        return cls([], None, np.empty(0), [])

    @classmethod
    def of_points(cls, points: Sequence[Point]) -> SeriesBatch:
        """``points``, each its own series."""
        n = len(points)
        if not n:
            return cls.empty()
        names, labels, ts, values = zip(*points, strict=True)
        series = list(zip(names, labels, strict=True))
        return cls(series, None, np.fromiter(ts, np.float64, n), values)

    def __len__(self) -> int:
        return len(self.values)

    def point(self, i: int) -> Point:
        """Sample ``i`` as a :class:`Point`."""
        name, labels = self.series[i if self.of is None else int(self.of[i])]
        return Point(name, labels, float(self.ts[i]), self.values[i])

    def points(self) -> list[Point]:
        """Every sample as a :class:`Point`, in order."""
        return [self.point(i) for i in range(len(self))]


class SeriesMap:
    """The rules, indexed by metric name.

    >>> m = SeriesMap(DEFAULT_RULES)
    >>> out = m.map([Point("ifHCOutOctets", {"instance": "r1", "ifName": "xe-0/0/1"}, 60.0, 10),
    ...              Point("ifHighSpeed", {"instance": "r1", "ifName": "xe-0/0/1"}, 60.0, 10000),
    ...              Point("up", {"instance": "r1"}, 60.0, 1.0),
    ...              Point("link_load_bps", {}, 60.0, 1.0)], latest=1e9)
    >>> out.counters, out.capacities, out.dropped
    ([('ifHCOutOctets{ifName="xe-0/0/1",instance="r1"}', 'r1:xe-0/0/1', 60.0, 10, 8.0, 64)], \
{'r1:xe-0/0/1': 10000000000.0}, \
{'no_rule': 1, 'missing_label': 1})
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise SeriesFileError("the series file has no [[series]] table")
        self.rules = tuple(rules)
        self._by_name: dict[str, list[Rule]] = {}
        # (name, id(labels)) -> (labels, what the series is): the labels object is kept,
        # so its id cannot be taken by another object while the entry lives.
        # Only series whose name has a rule; bounded by bytes (api/series_cache.py).
        self._memo = SeriesCache(MEMO_BYTES)
        for rule in self.rules:
            self._by_name.setdefault(rule.metric, []).append(rule)
        self.metrics: frozenset[str] = frozenset(self._by_name)
        """The metric names some rule takes: the decoders keep only these series."""

    @classmethod
    def load(cls, path: Path | None) -> SeriesMap:
        """The rules of a TOML series file, or the defaults for None.

        Raises :class:`SeriesFileError` naming the file, the rule's index and the field.
        """
        if path is None:
            return cls(DEFAULT_RULES)
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SeriesFileError(f"LINKCAST_SERIES_FILE {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SeriesFileError(f"LINKCAST_SERIES_FILE {path}: not TOML: {exc}") from None
        unknown = set(doc) - {"series"}
        if unknown:
            raise SeriesFileError(
                f"LINKCAST_SERIES_FILE {path}: unknown key(s) {sorted(unknown)}; "
                "write [[series]] tables"
            )
        tables = doc.get("series")
        if not isinstance(tables, list) or not tables:
            raise SeriesFileError(f"LINKCAST_SERIES_FILE {path}: no [[series]] table")
        return cls([_rule(path, i, t) for i, t in enumerate(tables)])

    def rule(self, name: str, labels: Mapping[str, str]) -> Rule | None:
        for rule in self._by_name.get(name, ()):
            if all(labels.get(k) == v for k, v in rule.match.items()):
                return rule
        return None

    def map(self, points: Sequence[Point], *, latest: float, earliest: float = 0.0) -> Mapped:
        """:meth:`map_batch` of ``points``, each its own series."""
        return self.map_batch(SeriesBatch.of_points(points), latest=latest, earliest=earliest)

    def map_batch(self, batch: SeriesBatch, *, latest: float, earliest: float = 0.0) -> Mapped:
        """Sort the samples of ``batch`` into gauges, counters and capacities.

        ``latest``: the newest acceptable ts (now plus the allowed future), in seconds;
        ``earliest``: the oldest (before it, most often a timestamp in the wrong unit:
        seconds read as nanoseconds).
        Raises :class:`BadPoint` for the first sample (in order) of a matching series
        whose value is not finite or negative, or above :data:`api.ingest.MAX_VALUE_BPS`
        once in bit/s, or whose ts is not finite or lies before ``earliest`` (or 1970)
        or after ``latest``; a capacity that is not above 0 (a speed the device does
        not know) is dropped.

        A series whose name no rule has is dropped (``no_rule``), never remembered
        (Prometheus remote-writes every series it scrapes). Any other series (name and
        labels object) with a sample in the batch is matched to its rule and link once
        and remembered (at most :data:`MEMO_BYTES` of label bytes, the oldest forgotten
        first), every one of them before any sample is checked: a refused request has
        taught the memo its series. Gauges, the bulk of a push, are then sorted and
        checked as numpy columns, no Python per sample; counters and capacities one by
        one.
        """
        out = Mapped()
        n = len(batch)
        sampled = None  # a series without a sample (a remote write series of only
        if batch.of is not None:  # staleness markers) is not learnt
            sampled = (np.bincount(batch.of, minlength=len(batch.series)) > 0).tolist()
        found = self._found(batch.series, sampled)
        whats: list[_Series | str] = list(map(_WHAT, found))
        links: list[str | None] = list(map(_GAUGE_LINK, found))  # None: not a gauge
        is_gauge = np.fromiter(map(is_not, links, repeat(None)), bool, len(links))
        of = np.arange(n, dtype=np.int64) if batch.of is None else batch.of
        gauge = is_gauge[of] if n else np.zeros(0, bool)
        first_bad = n
        if gauge.any():
            scale = np.fromiter(map(_SCALE, found), np.float64, len(found))
            g_of, g_ts = of[gauge], batch.ts[gauge]
            g_values = np.asarray(batch.values, np.float64)[gauge]
            with np.errstate(over="ignore"):  # 1e300 Gbit/s is inf bit/s: refused below
                bps = g_values * scale[g_of]
            ok = (g_values >= 0) & (bps <= MAX_VALUE_BPS) & (g_ts >= earliest) & (g_ts <= latest)
            if not ok.all():  # (NaN fails every comparison)
                first_bad = int(np.flatnonzero(gauge)[np.argmin(ok)])
            out.gauges = Gauges(links, g_of, g_ts, bps)
        others = np.flatnonzero(~gauge).tolist()
        for i in others:
            if i > first_bad:
                break
            self._sort(out, batch, i, whats[int(of[i])], latest, earliest)
        if first_bad < n:
            what = whats[int(of[first_bad])]
            assert isinstance(what, _Series)
            self._refuse(batch.point(first_bad), first_bad, latest, earliest, what.rule)
        return out

    def _found(
        self, series: Sequence[tuple[str, Mapping[str, str]]], sampled: Sequence[bool] | None
    ) -> list[_Found]:
        """What each series is (:data:`_Found`): from the memo where it is there, else
        learnt once per distinct series of the request. ``sampled``: per series,
        whether a sample of the batch is of it (None: every series has one); a series
        without one is not learnt."""
        memo, metrics = self._memo, self.metrics
        names, labels = map(_NAME, series), map(_LABELS, series)
        found: list[_Found | None] = list(map(memo.get, zip(names, map(id, labels), strict=False)))
        if None in found:  # kept with its labels object: a hit's id is still this one's
            learnt: dict[tuple[str, int], _Found] = {}  # this request's misses, once each
            for k, (hit, (name, labels_)) in enumerate(zip(found, series, strict=True)):
                if hit is not None:
                    continue
                if name not in metrics or (sampled is not None and not sampled[k]):
                    found[k] = _NO_RULE
                    continue
                key = (name, id(labels_))  # labels_ lives as long as the batch
                if key not in learnt:
                    learnt[key] = self._learn(name, labels_)
                found[k] = learnt[key]
        return found  # type: ignore[return-value]

    @staticmethod
    def _sort(
        out: Mapped, batch: SeriesBatch, i: int, what: _Series | str, latest: float, earliest: float
    ) -> None:
        """Sample ``i`` of ``batch``, not a gauge, into ``out``: a counter reading, a
        capacity or a drop."""
        if isinstance(what, str):  # the reason the series is not stored
            out.drop(what)
            return
        value, ts = batch.values[i], float(batch.ts[i])
        if what.capacity and not 0 < value < math.inf:
            # a speed the device does not know: the kernel's -1 Mbit/s of a virtual
            # interface (node_exporter's node_network_speed_bytes -125000), IF-MIB's
            # ifHighSpeed 0. Refusing it would refuse the loads sent with it.
            out.drop("unknown_capacity")
            return
        if not (0 <= value < math.inf and earliest <= ts <= latest):
            SeriesMap._refuse(batch.point(i), i, latest, earliest)
        if what.series is not None:  # a counter
            out.counters.append((what.series, what.link, ts, value, what.scale, what.bits))
            return
        bps = float(value) * what.scale
        if not bps <= MAX_VALUE_BPS:
            SeriesMap._refuse(batch.point(i), i, latest, earliest, what.rule)
        out.capacities[what.link] = bps

    @staticmethod
    def _refuse(p: Point, i: int, latest: float, earliest: float, rule: Rule | None = None) -> None:
        """Raise :class:`BadPoint` for sample ``i``, naming what is wrong with it."""
        _check(i, p, latest, earliest)
        unit = rule.unit if rule is not None else "bit/s"
        raise BadPoint(i, f"{p.name}: {p.value!r} {unit} exceeds {MAX_VALUE_BPS:.0e} bit/s")

    def _learn(self, name: str, labels: Mapping[str, str]) -> _Found:
        """What the series ``name`` with ``labels`` is (:data:`_Found`: its rule, link
        and counter identity, or why it is dropped: ``no_rule``, ``missing_label``,
        ``bad_link_name``); remembered for its labels object."""
        what: _Series | str
        rule = self.rule(name, labels)
        link, why = (None, "no_rule") if rule is None else rule.link_or_reason(labels)
        if why is not None:
            what = why
        else:
            assert rule is not None and link is not None
            counter = rule.kind == "counter"
            what = _Series(
                rule=rule,
                link=link,
                scale=rule.scale,
                bits=rule.counter_bits,
                capacity=rule.role == "capacity",
                series=_series(Point(name, labels, 0.0, 0)) if counter else None,
            )
        size = len(name) + sum(len(k) + len(v) for k, v in labels.items())
        gauge = isinstance(what, _Series) and what.gauge
        found: _Found = (
            labels,
            what,
            what.link if gauge else None,  # type: ignore[union-attr]
            what.scale if gauge else 0.0,  # type: ignore[union-attr]
        )
        self._memo.put((name, id(labels)), found, size)
        return found


# Bytes of series (name and labels, summed) a SeriesMap remembers, each entry keeping
# its labels object alive; past it, the oldest half is forgotten.
MEMO_BYTES = CAP_BYTES


# What SeriesMap makes of a series, as its memo keeps it: the labels object (kept alive,
# so that its id stays its own), the series (_Series) or why it is dropped, and for a
# gauge its link and bits per unit (else None and 0).
_Found = tuple[Mapping[str, str], "_Series | str", str | None, float]
_NO_RULE: _Found = ({}, "no_rule", None, 0.0)
_NAME, _LABELS = itemgetter(0), itemgetter(1)
_WHAT, _GAUGE_LINK, _SCALE = itemgetter(1), itemgetter(2), itemgetter(3)


@dataclass(frozen=True, slots=True)
class _Series:
    """What :meth:`SeriesMap.map_batch` made of one series: its rule, link, bits per unit,
    counter width, whether a capacity, and for a counter its identity (:func:`_series`)."""

    rule: Rule
    link: str
    scale: float
    bits: int
    capacity: bool
    series: str | None

    @property
    def gauge(self) -> bool:
        """A load stored as it comes (neither a counter nor a capacity)."""
        return self.series is None and not self.capacity


def _series(p: Point) -> str:
    r"""A counter series' identity: its name and every label, so that two series one rule
    maps to the same link (another job, a second collector) keep their own last reading.

    Written as Prometheus' text format writes a series, each name and value escaped
    (:func:`escaped`), so that two label sets never give one identity, and a NUL a
    collector sent (PostgreSQL's text cannot hold one) is stored as ``\0``.

    >>> _series(Point("ifHCOutOctets", {"instance": "r1", "ifName": "et1"}, 0.0, 1))
    'ifHCOutOctets{ifName="et1",instance="r1"}'
    >>> print(_series(Point("m", {"a": 'x",b="y'}, 0.0, 1)))
    m{a="x\",b=\"y"}
    """
    inner = ",".join(f'{escaped(k)}="{escaped(v)}"' for k, v in sorted(p.labels.items()))
    return f"{escaped(p.name)}{{{inner}}}"


def escaped(text: str) -> str:
    r"""``text`` with backslash, double quote and line feed escaped as in Prometheus'
    text exposition format, and NUL as ``\0``.

    >>> print(escaped('a\\b"c' + chr(10) + chr(0)))
    a\\b\"c\n\0
    """
    if "\\" in text or '"' in text or "\n" in text or "\x00" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        text = text.replace("\x00", "\\0")
    return text


def _check(i: int, p: Point, latest: float, earliest: float) -> None:
    v = p.value
    if isinstance(v, float) and not math.isfinite(v):
        raise BadPoint(i, f"{p.name}: value {v!r} is not a finite number")
    if v < 0:
        raise BadPoint(i, f"{p.name}: value {v!r} is negative")
    if not math.isfinite(p.ts) or p.ts < 0:
        raise BadPoint(i, f"{p.name}: timestamp {p.ts!r} s is before 1970")
    if p.ts > latest:
        raise BadPoint(i, f"{p.name}: timestamp {p.ts!r} s is in the future")
    if p.ts < earliest:
        when = datetime.fromtimestamp(p.ts, UTC).isoformat()
        raise BadPoint(
            i,
            f"{p.name}: timestamp {when} is before 2000, too old for a link load: a"
            " timestamp in the wrong unit (seconds sent where the format expects ms or ns)?",
        )


def _rule(path: Path, i: int, table: object) -> Rule:
    where = f"LINKCAST_SERIES_FILE {path}: [[series]] #{i + 1}"
    if not isinstance(table, dict):
        raise SeriesFileError(f"{where} is not a table")
    allowed = {"metric", "link", "unit", "role", "counter_bits", "match"}
    extra = set(table) - allowed
    if extra:
        raise SeriesFileError(
            f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(allowed)}"
        )
    for key in ("metric", "link"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise SeriesFileError(f"{where}: '{key}' is required (a string)")
    match = table.get("match", {})
    if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
        raise SeriesFileError(f"{where}: 'match' must be a table of label = \"value\" strings")
    try:
        return Rule(
            metric=table["metric"],
            link=table["link"],
            unit=table.get("unit", "bit/s"),
            role=table.get("role", "load"),
            counter_bits=table.get("counter_bits", 64),
            match=match,
        )
    except ValueError as exc:
        raise SeriesFileError(f"{where}: {exc}") from None
