r"""InfluxDB line protocol to series points.

A body is lines of ``<measurement>[,<tag>=<value>...] <field>=<value>[,...] [<timestamp>]``
(InfluxDB line protocol reference, v1 and v2; Telegraf's ``influx`` serializer). Each
numeric field is one :class:`api.series.Point` named ``<measurement>_<field>``, its
labels the tags: ``interface,agent_host=r1,ifName=xe-0/0/1 ifHCOutOctets=5u`` is the
series ``interface_ifHCOutOctets`` (:mod:`api.series` says which series are links).

Each line is parsed by ``line-protocol-parser`` (C, MIT; the 2.x releases have wheels
for CPython 3.10 to 3.15 and follow InfluxDB's own parser), which gives:

- escapes: ``\,`` and ``\ `` in the measurement; ``\,``, ``\ `` and ``\=`` in tag keys,
  tag values and field keys; a backslash before any other character is literal, as
  in InfluxDB (``ifName=Intel\Ethernet`` keeps its backslash); ``\"`` and ``\\``
  inside a string field;
- values: float (``1``, ``-1.5``, ``1e9``), integer ``12i`` (int64), unsigned ``12u``
  (uint64, every digit kept: a Counter64 near its wrap stays exact), boolean
  (``t``, ``true``, ``F``, ...) and ``"string"``. ``NaN``, ``inf``, ``1.5u`` and
  ``-1u`` are syntax errors.

Here: the body is split into lines on ``\n`` (the protocol allows no newline inside a
value), blank lines and ``#`` comments are skipped, each line must be UTF-8. String
and boolean fields are not loads: they are counted and left out, never an error.
A point without a timestamp gets the request's time, truncated to the precision, as
InfluxDB does.

A series' measurement and tags are kept by the text of its line up to the first space,
with the tags object that every later point of the series shares (so that
:meth:`api.series.SeriesMap.map_batch` matches the series to its rule and link once). Where
that text alone gives them (:func:`_learn`), a later line that starts with it has only
its fields and timestamp parsed, by the same parser (as a line of a measurement of its
own, ``m <fields> <timestamp>``); where it does not (an escaped space in the
measurement or a tag, cutting the text short), each line is parsed whole and the kept
tags object used if the tags are equal. Only series with a field some rule names are
kept, at most :data:`api.series_cache.CAP_BYTES` of them.

Errors: :class:`LineError` names the line (1-based, counting every line of the body);
:class:`TooManyPoints` when the numeric fields pass the request's bound.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from fractions import Fraction

from line_protocol_parser import LineFormatError, parse_line

from api.series import Point
from api.series_cache import SeriesCache

# precision -> seconds per unit (the API's `precision` query parameter)
PRECISIONS_V2: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
}
# InfluxDB 1.x's /write also takes n, u, m (minutes) and h.
PRECISIONS_V1: dict[str, Fraction] = {
    **PRECISIONS_V2,
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(60),
    "h": Fraction(3600),
}
_ECHO = 120  # characters of a bad line quoted in its error


class LineError(ValueError):
    """Line ``line`` (1-based) of the body is not line protocol."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"line {line}: {msg}")
        self.line = line


class TooManyPoints(ValueError):
    """The body holds more numeric fields than one request may store."""


@dataclass
class Parsed:
    """A body's numeric fields as points, and what was left out.

    ``lines[i]``: the line (1-based) that ``points[i]`` came from, to name it in an
    error. ``non_numeric``: string and boolean fields, not stored.
    """

    points: list[Point] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    non_numeric: int = 0


def _echo(text: str) -> str:
    return repr(text if len(text) <= _ECHO else text[:_ECHO] + "...")


def parse(
    body: bytes,
    *,
    unit: Fraction,
    now: float,
    max_points: int,
    metrics: Container[str] = frozenset(),
) -> Parsed:
    r"""The points of a line protocol ``body``.

    ``unit``: seconds per timestamp unit (a value of :data:`PRECISIONS_V2`); ``now``:
    the request's time in seconds, for points without one; ``max_points``: the most
    numeric fields accepted; ``metrics``: the point names (``<measurement>_<field>``,
    those of the app's series rules, :attr:`api.series.SeriesMap.metrics`) whose
    series' tags are kept for later lines and requests; a series with none of them is
    not kept. Raises :class:`LineError` or :class:`TooManyPoints`.

    >>> p = parse(b'# Telegraf\n\nnet,host=h,interface=eth0 bytes_sent=42u,up=true 1500\n',
    ...           unit=PRECISIONS_V2["ms"], now=0.0, max_points=10)
    >>> [(q.name, sorted(q.labels.items()), q.ts, q.value) for q in p.points]
    [('net_bytes_sent', [('host', 'h'), ('interface', 'eth0')], 1.5, 42)]
    >>> p.lines, p.non_numeric
    ([3], 1)
    >>> parse(b"m x=1\nm x=1.5u", unit=PRECISIONS_V2["s"], now=0.0, max_points=10)
    Traceback (most recent call last):
    ...
    api.line_protocol.LineError: line 2: failed to parse type of field value: 'm x=1.5u'
    """
    out = Parsed()
    num, den = unit.numerator, unit.denominator  # int / int: exact, then rounded once
    default_ts = int(Fraction(now) / unit) * num / den  # now, truncated to the precision
    text: str | None
    try:  # the body at once; a line that is not UTF-8 is named by _parse_line
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # lines as text (b"\n" is never inside a UTF-8 character), or as bytes
    lines, space, blank, strip = (
        (text.split("\n"), " ", _BLANK, _BLANK)
        if text is not None
        else (body.split(b"\n"), b" ", _BLANK_BYTES, _BLANK.encode())
    )
    append, numbers = out.points.append, out.lines.append
    new = tuple.__new__  # a Point without NamedTuple's Python-level __new__
    known = _SERIES
    for number, raw in enumerate(lines, start=1):
        if not raw or (raw[0] in blank and not raw.strip(strip)):
            continue
        # the text before the first space: the measurement and tags of a known series
        series, _, rest = raw.partition(space)
        kept = known.get(series) if text is not None else None
        if kept is not None and kept[2]:  # the text alone is the series: parse the rest
            prefix, tags, _ = kept
            try:
                point = parse_line(_ONLY_FIELDS + rest)
            except LineFormatError:
                point = _parse_line(raw.encode(), number)  # raises, naming the whole line
        else:
            try:
                point = parse_line(raw if text is not None else raw.decode("utf-8"))
            except (UnicodeDecodeError, LineFormatError):
                point = _parse_line(raw if text is None else raw.encode(), number)  # raises
            if point is None:  # a comment
                continue
            prefix, tags = point["measurement"] + "_", point["tags"]
            if kept is not None and kept[0] == prefix and kept[1] == tags:
                tags = kept[1]  # the series' one tags object
            elif text is not None and any(prefix + key in metrics for key in point["fields"]):
                _learn(series, prefix, tags)
        stamp = point["time"]
        ts = default_ts if stamp is None else stamp * num / den
        fields = point["fields"]
        for key, value in fields.items():
            kind = type(value)
            if kind is not float and kind is not int and isinstance(value, bool | str):
                out.non_numeric += 1
                continue
            append(new(Point, (prefix + key, tags, ts, value)))
            numbers(number)
        if len(out.points) > max_points:
            raise TooManyPoints(
                f"more than {max_points} numeric fields in one request (line {number}); "
                "send smaller batches"
            )
    return out


# What a blank line holds (bytes.strip's whitespace, as str and as byte values).
_BLANK = " \t\n\r\x0b\x0c"
_BLANK_BYTES = frozenset(_BLANK.encode())


def _parse_line(raw: bytes, number: int) -> dict | None:
    """One line by ``line-protocol-parser``; :class:`LineError` naming it if it is not
    line protocol (or not UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(number, f"not UTF-8 at byte {exc.start}") from None
    try:
        point: dict | None = parse_line(text)
    except LineFormatError as exc:
        reason = str(exc).rstrip(".")
        raise LineError(number, f"{reason[:1].lower()}{reason[1:]}: {_echo(text)}") from None
    return point


# A line's series text (up to its first space) -> the measurement's prefix, the tags
# parsed from it, and whether the text alone gives them (then the next line of that
# series parses only its fields and timestamp); every point of the series has the same
# tags object. Shared by the
# threads of a process; only series with a field some rule names; bounded by their
# bytes (oldest out first).
_SERIES: SeriesCache = SeriesCache()
# What a line of a known series is parsed as: a measurement of its own, then the line's
# fields and timestamp (what follows its first space).
_ONLY_FIELDS = "m "


def _learn(series: str, prefix: str, tags: dict[str, str]) -> None:
    """Keep ``series`` (the text of a line before its first space) with ``prefix`` (the
    measurement and ``_``) and ``tags``, and whether that text alone is what was parsed
    into them: the parser gives the same measurement and tags for it with a field of
    its own, ``x=1``. Then the parser's measurement and tags end where the text does,
    as they do in every line that starts with it, and such a line has only its fields
    and timestamp parsed. Otherwise (an escaped space, ``\\ ``, cuts the text short:
    ``m,a=b\\`` and `` x=1`` read as a tag value with no field after it; a line that
    starts with a space) every line is parsed whole, and the kept tags object is used
    where the parse gives equal tags and the same measurement."""
    try:
        alone = parse_line(series + " x=1")
    except LineFormatError:
        alone = None
    exact = alone is not None and alone["measurement"] + "_" == prefix and alone["tags"] == tags
    _SERIES.put(series, (prefix, tags, exact), len(series.encode()))
