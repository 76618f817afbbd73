"""OTLP/HTTP metrics: the wire in, series points out, and the spec's answers.

Implements the receiving side of OTLP/HTTP for metrics
(https://opentelemetry.io/docs/specs/otlp/#otlphttp): the body is an
``ExportMetricsServiceRequest`` (opentelemetry-proto), binary protobuf
(``Content-Type: application/x-protobuf``) or its JSON mapping (``application/json``:
lowerCamelCase keys, 64-bit integers as strings, unknown fields ignored as the spec
requires), optionally ``Content-Encoding: gzip``. Answers are in the request's
encoding: an ``ExportMetricsServiceResponse`` (200), or a ``google.rpc.Status`` for
every 4xx and 5xx.

What becomes a :class:`api.series.Point`:

- **Gauge** and cumulative **Sum** data points (monotonic or not), ``as_double`` or
  ``as_int``: the point's name is the metric's name, its labels the resource's
  attributes overlaid by the data point's (the data point wins), every value as text
  (``true``/``false``, decimal numbers, JSON for arrays and maps, base64 for bytes); its
  ts is ``time_unix_nano`` in seconds. The series rule then says whether the value is
  a gauge or a counter (``system.network.io``, unit ``By``, is a byte counter).
- Data points flagged ``NO_RECORDED_VALUE`` are skipped: they mark a series gone,
  not a value.

Dropped (counted in ``partial_success``, never an error): histograms, exponential
histograms and summaries (distributions, not link loads) and sums of **delta** (or
unspecified) temporality. linkcast turns counters into rates from the readings it
keeps (:mod:`db.counters`, which handles wraps and resets); a delta is an increment
over a window that the exporter chose, so senders are asked to export cumulative
sums, the default of the SDKs and of the collector's hostmetrics receiver.

Refused as a whole, nothing stored: a body that does not decode (400), a Gauge or
Sum data point with no value or no ``time_unix_nano`` (400), a body above the size
limit, compressed or not (413), more data points than the batch limit (413), and an
unknown ``Content-Type`` or ``Content-Encoding`` (415). Errors are :class:`Refused`.
"""

from __future__ import annotations

import base64
import json
import zlib
from bisect import bisect_right
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter, truediv
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK,
)
from opentelemetry.proto.resource.v1 import resource_pb2

from api.proto_views import F, Layout, canonical, message_classes
from api.series import Point, SeriesMap
from api.series_cache import SeriesCache

Wire = Literal["protobuf", "json"]
MEDIA_TYPES: dict[Wire, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}
DISTRIBUTIONS = ("histogram", "exponential_histogram", "summary")

# Why data points were not stored, as told in partial_success.error_message.
REASONS = {
    "no_rule": "no [[series]] rule, built-in or from LINKCAST_SERIES_FILE, takes them",
    "missing_label": "a label their rule's link template names is missing",
    "bad_link_name": "the link name their labels make is blank, too long or not printable",
    "histogram": "histograms are not link loads",
    "exponential_histogram": "exponential histograms are not link loads",
    "summary": "summaries are not link loads",
    "delta_sum": "sums of delta temporality are not taken: export cumulative sums",
}
_NAMES_SHOWN = 5

# The google.rpc.Code of an HTTP status (google/rpc/code.proto's HTTP mapping).
_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


class Refused(Exception):
    """The request is refused as a whole (nothing stored): HTTP ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Decoded:
    """A request's Gauge and Sum data points, and those dropped before mapping.

    ``runs``: for each metric whose data points were read, (index of its first point in
    ``points``, its resource, scope and metric indices, and the index of each of its
    points among its data points, or None when they are all of them in order), so that
    :meth:`locate` can name where a point came from. ``dropped``: reason (``histogram``,
    ``exponential_histogram``, ``summary``, ``delta_sum``) -> data points; ``names``:
    reason -> metric names; ``skipped``: ``NO_RECORDED_VALUE`` data points.
    """

    points: list[Point] = field(default_factory=list)
    runs: list[tuple[int, int, int, int, list[int] | None]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    names: dict[str, set[str]] = field(default_factory=dict)
    skipped: int = 0

    def drop(self, reason: str, name: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
            self.names.setdefault(reason, set()).add(name)

    def locate(self, index: int) -> str:
        """Where point ``index`` is in the request, for an error message."""
        run = self.runs[bisect_right(self.runs, index, key=itemgetter(0)) - 1]
        first, r, s, m, where = run
        d = index - first if where is None else where[index - first]
        return f"{_path(r, s, m, self.points[index].name)} data_points[{d}]"


def _path(r: int, s: int, m: int, name: str) -> str:
    return f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}] ({name})"


def _wire_view() -> Any:
    """``ExportMetricsServiceRequest`` as :func:`points` reads it: opentelemetry-proto's
    own descriptors, copied into a private pool with the attributes of a resource and
    of a NumberDataPoint read as the bytes of their ``KeyValue`` messages (a
    length-delimited field parses as bytes or as a message alike). Those bytes are a
    series' identity: turned into labels once (:func:`_labels_of`) and found by them
    in later requests, instead of a message object, a key and a value per attribute
    of every data point. A body is first parsed with the real messages (:func:`parse`),
    which checks all of it, so this view only ever reads what that parse accepted."""
    pool = descriptor_pool.DescriptorPool()
    as_bytes = {
        "opentelemetry.proto.resource.v1.Resource": "attributes",
        "opentelemetry.proto.metrics.v1.NumberDataPoint": "attributes",
    }
    for module in (common_pb2, resource_pb2, metrics_pb2, metrics_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for message in proto.message_type:
            name = f"{proto.package}.{message.name}"
            for f in message.field:
                if as_bytes.get(name) == f.name:
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.ClearField("type_name")
        pool.Add(proto)
    service = metrics_service_pb2.DESCRIPTOR.name
    classes = message_factory.GetMessageClassesForFiles([service], pool)
    return (
        classes["opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"],
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("opentelemetry.proto.metrics.v1.NumberDataPoint")
        ),
    )


_RequestView, _PointView = _wire_view()


def _request_layout(merged: bool, data_points: tuple[str, int, int | str, bool]) -> Layout:
    """``ExportMetricsServiceRequest`` down to each metric's Gauge or Sum data points:
    resource and scope metrics singular if ``merged`` (their occurrences merge, every
    metric of the request in one list, in order), else repeated as declared;
    ``data_points``: how Gauge's and Sum's field 1 is read; every other field as bytes
    (read, never kept as unknown). Sum's aggregation_temporality (2) and is_monotonic
    (3) are read by the real view."""
    return {
        "Request": (("resource_metrics", 1, "ResourceMetrics", not merged),),
        "ResourceMetrics": (
            ("resource", 1, F.TYPE_BYTES, False),
            ("scope_metrics", 2, "ScopeMetrics", not merged),
            ("schema_url", 3, F.TYPE_BYTES, False),
        ),
        "ScopeMetrics": (
            ("scope", 1, F.TYPE_BYTES, False),
            ("metrics", 2, "Metric", True),
            ("schema_url", 3, F.TYPE_BYTES, False),
        ),
        "Metric": (
            *((other, number, F.TYPE_BYTES, False) for other, number in _METRIC_OTHERS),
            ("gauge", 5, "Points", False),
            ("sum", 7, "Points", False),
        ),
        "Points": (
            data_points,
            ("aggregation_temporality", 2, F.TYPE_INT32, False),
            ("is_monotonic", 3, F.TYPE_BOOL, False),
        ),
    }


def _columns_view() -> Any:
    """``ExportMetricsServiceRequest`` as :func:`_columns` reads it: merged
    (:func:`_request_layout`), each metric's data points singular (so that they merge
    into one), a data point's time, values and flags repeated (so that they
    concatenate)."""
    layout: Layout = {
        **_request_layout(True, ("data_points", 1, "NumberDataPoint", False)),
        "NumberDataPoint": (
            ("start_time_unix_nano", 2, F.TYPE_FIXED64, True),
            ("time_unix_nano", 3, F.TYPE_FIXED64, True),
            ("as_double", 4, F.TYPE_DOUBLE, True),
            ("exemplars", 5, F.TYPE_BYTES, True),
            ("as_int", 6, F.TYPE_SFIXED64, True),
            ("attributes", 7, F.TYPE_BYTES, True),
            ("flags", 8, F.TYPE_UINT32, True),
        ),
    }
    return message_classes("linkcast.otlpc", layout)["Request"]


def _bytes_view() -> Any:
    """``ExportMetricsServiceRequest`` as :func:`_encoded_metrics` reads it: the real
    nesting, each metric's Gauge or Sum data points as the bytes of their messages."""
    layout = _request_layout(False, ("data_points", 1, F.TYPE_BYTES, True))
    return message_classes("linkcast.otlpb", layout)["Request"]


# Metric's fields other than gauge and sum (opentelemetry-proto metrics.proto):
# name, description, unit, histogram, exponential_histogram, summary, metadata.
_METRIC_OTHERS = (
    ("name", 1),
    ("description", 2),
    ("unit", 3),
    ("histogram", 9),
    ("exponential_histogram", 10),
    ("summary", 11),
    ("metadata", 12),
)
_ColumnsView = _columns_view()
_BytesView = _bytes_view()


def wire_of(content_type: str | None) -> Wire:
    """The encoding a ``Content-Type`` names; :class:`Refused` (415) for any other.

    >>> wire_of("application/json; charset=utf-8"), wire_of("application/x-protobuf")
    ('json', 'protobuf')
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    for wire, name in MEDIA_TYPES.items():
        if media == name:
            return wire
    got = f"Content-Type {media!r}" if media else "no Content-Type"
    raise Refused(415, f"{got}: send application/x-protobuf or application/json (OTLP/HTTP)")


def answer_wire(content_type: str | None) -> Wire:
    """The encoding to answer in: the request's, JSON when it names neither."""
    try:
        return wire_of(content_type)
    except Refused:
        return "json"


def decode(
    body: bytes,
    *,
    wire: Wire,
    content_encoding: str | None,
    limit: int,
    max_points: int,
    metrics: Container[str] = frozenset(),
) -> Decoded:
    """The data points of an OTLP/HTTP metrics body (CPU-bound: run it in a thread).

    ``limit``: the most bytes after decompression; ``max_points``: the most Gauge and
    Sum data points; ``metrics``: the metric names whose series' labels are kept from
    request to request (:func:`points`). Raises :class:`Refused` (400, 413 or 415).
    """
    coding = (content_encoding or "identity").strip().lower()
    if coding == "gzip":
        body = gunzip(body, limit)
    elif coding != "identity":
        raise Refused(415, f"Content-Encoding {coding!r}: send gzip or no Content-Encoding")
    message = parse(body, wire)  # checks every field of the request
    raw = body if wire == "protobuf" else message.SerializeToString()
    view = _RequestView.FromString(raw)
    return points(view, max_points=max_points, metrics=metrics, raw=raw)


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` decompressed (every gzip member), at most ``limit`` bytes.

    Raises :class:`Refused`: 400 if it is not gzip or is cut short, 413 past ``limit``.
    """
    out = bytearray()
    while True:
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflate.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise Refused(400, f"Content-Encoding gzip: the body is not gzip ({exc})") from None
        if len(out) > limit:
            raise Refused(413, f"the body exceeds {limit} bytes once decompressed")
        if not inflate.eof:
            raise Refused(400, "Content-Encoding gzip: the body is cut short")
        data = inflate.unused_data
        if not data:
            return bytes(out)


def parse(body: bytes, wire: Wire) -> ExportMetricsServiceRequest:
    """An ``ExportMetricsServiceRequest`` from protobuf or OTLP JSON; 400 if not one."""
    message = ExportMetricsServiceRequest()
    if wire == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise Refused(400, f"not an OTLP metrics request (protobuf): {exc}") from None
        return message
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the JSON body is not UTF-8 ({exc})") from None
    except (ValueError, RecursionError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Refused(400, "the JSON body is not an object (an ExportMetricsServiceRequest)")
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, RecursionError) as exc:
        raise Refused(400, f"not an OTLP metrics request (JSON): {exc}") from None
    return message


def points(
    message: Any,
    *,
    max_points: int,
    metrics: Container[str] = frozenset(),
    raw: bytes | None = None,
) -> Decoded:
    """The Gauge and cumulative Sum data points of ``message`` as series points.

    ``message``: a request parsed as :func:`_wire_view`'s view (its attributes as
    bytes), or as the real ``ExportMetricsServiceRequest`` (re-read as that view);
    ``raw``: the bytes the view was parsed from, if at hand.
    ``metrics``: the metric names (those of the app's series rules,
    :attr:`api.series.SeriesMap.metrics`) whose series' labels are kept, so that a
    later request finds them; any other metric's are decoded each time.
    Raises :class:`Refused`: 400 for a data point with no value or no
    ``time_unix_nano``, 413 past ``max_points``.

    Times and values are read as columns (:func:`_columns`): per data point only its
    attribute bytes are touched from Python. Where a metric's columns cannot be trusted
    (a data point flagged, with no value or time, ``as_int`` and ``as_double`` mixed),
    or the body is not protobuf's own encoding of what it holds
    (:func:`api.proto_views.canonical`), each data point of that metric (of the body)
    is read from its own message.
    """
    if isinstance(message, ExportMetricsServiceRequest):
        raw = message.SerializeToString()
        message = _RequestView.FromString(raw)
    metrics_of = [
        (r, s, m, resource, metric, metric.WhichOneof("data"))
        for r, resource_metrics in enumerate(message.resource_metrics)
        for resource in [tuple(resource_metrics.resource.attributes)]
        for s, scope_metrics in enumerate(resource_metrics.scope_metrics)
        for m, metric in enumerate(scope_metrics.metrics)
    ]
    merged = ()  # every metric of the request, in order, its data points as columns
    encoded: list[Any] | None = None  # the same, its data points as bytes (once needed)
    if raw is not None and canonical(message, raw):  # as the SDKs and the collector write
        merged = _ColumnsView.FromString(raw).resource_metrics.scope_metrics.metrics
    out = Decoded()
    for i, (r, s, m, resource, metric, kind) in enumerate(metrics_of):
        if kind in DISTRIBUTIONS:
            out.drop(kind, metric.name, len(getattr(metric, kind).data_points))
            continue
        if kind not in ("gauge", "sum"):
            continue  # a metric with no data
        data_points = getattr(metric, kind).data_points
        temporality = metric.sum.aggregation_temporality if kind == "sum" else None
        if temporality not in (None, AGGREGATION_TEMPORALITY_CUMULATIVE):
            out.drop("delta_sum", metric.name, len(data_points))
            continue
        column = _columns(merged[i], kind, len(data_points)) if merged else None
        if column is None:
            _each_point(out, (r, s, m), resource, metric.name, data_points, max_points, metrics)
            continue
        n = len(data_points)
        if len(out.points) + n > max_points:
            raise Refused(413, f"more than {max_points} data points in one request")
        keep = metric.name in metrics
        known = _LABELS
        skip = _attributes_at(merged[i], kind, n)
        if skip is None:
            attributes: Iterable[Any] = map(tuple, map(_ATTRIBUTES, data_points))
        else:  # each data point's attribute fields, as one bytes object
            if encoded is None:
                encoded = _encoded_metrics(raw)  # type: ignore[arg-type]
            attributes = [b[skip:] for b in getattr(encoded[i], kind).data_points]
        keys = zip(repeat(resource), attributes)
        attrs = [a if (a := known.get(key)) is not None else _labels_of(key, keep) for key in keys]
        stamps, values = column
        out.runs.append((len(out.points), r, s, m, None))
        rows = zip(repeat(metric.name), attrs, map(truediv, stamps, repeat(10**9)), values)
        out.points.extend(map(tuple.__new__, repeat(Point), rows))  # int / int: rounded once
    return out


def _each_point(
    out: Decoded,
    where: tuple[int, int, int],
    resource: tuple[bytes, ...],
    name: str,
    data_points: Any,
    max_points: int,
    metrics: Container[str],
) -> None:
    """One metric's data points, each read from its own message (appended to ``out``)."""
    keep = name in metrics
    known = _LABELS
    new = tuple.__new__  # a Point without NamedTuple's Python-level __new__
    indices: list[int] = []
    out.runs.append((len(out.points), *where, indices))
    for d, dp in enumerate(data_points):
        if dp.flags & DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK:
            out.skipped += 1
            continue
        which = dp.WhichOneof("value")
        stamp = dp.time_unix_nano
        if which is None or stamp == 0:
            what = "as_double or as_int" if which is None else "time_unix_nano"
            raise Refused(400, f"{_path(*where, name)} data_points[{d}]: {what} is missing")
        if len(out.points) == max_points:
            raise Refused(413, f"more than {max_points} data points in one request")
        key = (resource, tuple(dp.attributes))
        attrs = known.get(key)
        if attrs is None:
            attrs = _labels_of(key, keep)
        value = dp.as_double if which == "as_double" else dp.as_int
        # int / int: correctly rounded
        out.points.append(new(Point, (name, attrs, stamp / 1_000_000_000, value)))
        indices.append(d)


_ATTRIBUTES = attrgetter("attributes")


def _columns(metric: Any, kind: str, n: int) -> tuple[list[int], list[float] | list[int]] | None:
    """The times (ns) and values of the ``n`` data points of ``metric`` (read through
    :func:`_columns_view`, its points merged into one whose fields are columns), or
    None unless they line up with its data points: as many times and values as
    points (proto3 leaves a time of 0 out), one value kind, and no flags.

    The view declares the data points singular, so that protobuf's parser merges their
    occurrences and concatenates the repeated fields beneath (the encoding guide:
    "repeated fields are concatenated"): one parse of the request gives every metric's
    columns, instead of a message object per data point.
    """
    if n == 0:
        return None
    dp = getattr(metric, kind).data_points
    stamps, doubles, ints = dp.time_unix_nano, dp.as_double, dp.as_int
    if len(stamps) != n or len(dp.flags):
        return None
    if len(doubles) == n and not ints:
        return list(stamps), list(doubles)
    if len(ints) == n and not doubles:
        return list(stamps), list(ints)
    return None


def _attributes_at(merged: Any, kind: str, n: int) -> int | None:
    """Where the attributes begin in each of the ``n`` data points' bytes (the same
    offset in every one), or None unless every data point is encoded the same way
    before them; ``merged``: the metric's columns (:func:`_columns`, which said they
    line up: a time and a value of one kind on each data point, no flags).

    In protobuf's own encoding (:func:`api.proto_views.canonical`), the fields of a
    NumberDataPoint come in field number order: ``start_time_unix_nano`` (2),
    ``time_unix_nano`` (3), ``as_double`` (4), ``exemplars`` (5), ``as_int`` (6),
    ``attributes`` (7), ``flags`` (8); a member of the ``value`` oneof is written even
    when 0. With no exemplars and no flags, and a start time on every data point or on
    none, what comes before the attributes is 9 bytes a field (a 1-byte tag, 8 bytes)
    for the start time, the time and the value: every data point's attribute fields
    are then one slice of its bytes (the series' identity, as :func:`_labels_of` reads
    it), where reading them from a message cost a message object and a tuple a data
    point: bench/otlp_decode.py decodes 5,000 gauges in 0.47 of the CPU time (rounds
    0.45 to 0.58), an SDK's counters in 0.57 (0.43 to 0.69;
    bench/results/otlp-decode-2026-12-02/).
    """
    dp = getattr(merged, kind).data_points
    starts = len(dp.start_time_unix_nano)
    if len(dp.exemplars) or len(dp.flags) or starts not in (0, n):
        return None
    return 9 * (2 + (starts == n))  # (start time,) time, value


def _encoded_metrics(raw: bytes) -> list[Any]:
    """Every metric of the canonical request ``raw``, in order, read through
    :func:`_bytes_view` (its data points as bytes)."""
    return [
        metric
        for resource_metrics in _BytesView.FromString(raw).resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    ]


# (resource attributes, data point attributes), each as KeyValue bytes -> the labels,
# the data point's winning. Shared by the threads of a process; the same dict for
# every point of a series lets api.series.SeriesMap.map_batch match it once. Only series of
# metrics some rule names; bounded by their attribute bytes (oldest out first).
_LABELS: SeriesCache = SeriesCache()


def _labels_of(
    key: tuple[tuple[bytes, ...], tuple[bytes, ...] | bytes], keep: bool
) -> dict[str, str]:
    """The merged labels of ``key``; kept in :data:`_LABELS` if ``keep``. A data
    point's attributes are a tuple of KeyValue bytes, or the bytes of the whole field
    (:func:`_attributes_at`)."""
    resource, attrs = key
    if isinstance(attrs, bytes):
        size = len(attrs)
        attrs = tuple(_PointView.FromString(attrs).attributes)
    else:
        size = sum(map(len, attrs))
    merged = {
        **labels(map(KeyValue.FromString, resource)),
        **labels(map(KeyValue.FromString, attrs)),
    }
    if keep:
        _LABELS.put(key, merged, sum(map(len, resource)) + size)
    return merged


def labels(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """OTLP attributes as series labels: every value as text.

    >>> from opentelemetry.proto.common.v1.common_pb2 import ArrayValue
    >>> labels([KeyValue(key="up", value=AnyValue(bool_value=True)),
    ...         KeyValue(key="n", value=AnyValue(int_value=7)),
    ...         KeyValue(key="l", value=AnyValue(array_value=ArrayValue(
    ...             values=[AnyValue(string_value="a"), AnyValue(double_value=0.5)])))])
    {'up': 'true', 'n': '7', 'l': '["a", 0.5]'}
    """
    out = {}
    for kv in attributes:
        value = _plain(kv.value)
        out[kv.key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _plain(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(v, kind))
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_nested(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _nested(kv.value) for kv in v.kvlist_value.values}
    return ""


def _nested(v: AnyValue) -> Any:
    """A value inside an array or map, as JSON holds it."""
    kind = v.WhichOneof("value")
    if kind in ("bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    return _plain(v)


@dataclass
class Rejected:
    """The data points of a request that were not stored: ``by_reason`` (reason ->
    count) and ``message`` (``partial_success.error_message``)."""

    by_reason: dict[str, int]
    message: str

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    @classmethod
    def of(cls, decoded: Decoded, mapped: Mapping[str, int], series: SeriesMap) -> Rejected:
        """Those ``decoded`` dropped, and those the series map dropped (``mapped``:
        ``no_rule``, ``missing_label``, ``bad_link_name``), naming their metrics."""
        names = dict(decoded.names)
        if mapped:
            for p in decoded.points:
                rule = series.rule(p.name, p.labels)
                why = "no_rule" if rule is None else rule.link_or_reason(p.labels)[1]
                if why is not None:
                    names.setdefault(why, set()).add(p.name)
        by_reason = {**mapped, **decoded.dropped}
        return cls(by_reason, rejection_message(by_reason, names))


def rejection_message(dropped: Mapping[str, int], names: Mapping[str, set[str]]) -> str:
    """Per reason, how many data points and which metrics.

    >>> rejection_message({"no_rule": 2, "summary": 1}, {"no_rule": {"b", "a"}})
    '2 data points: no [[series]] rule, built-in or from LINKCAST_SERIES_FILE, takes them \
(a, b); 1 data point: summaries are not link loads'
    """
    parts = []
    for reason, n in dropped.items():
        if not n:
            continue
        shown = sorted(names.get(reason, ()))
        more = f", +{len(shown) - _NAMES_SHOWN} more" if len(shown) > _NAMES_SHOWN else ""
        which = f" ({', '.join(shown[:_NAMES_SHOWN])}{more})" if shown else ""
        parts.append(f"{n} data point{'s' if n > 1 else ''}: {REASONS.get(reason, reason)}{which}")
    return "; ".join(parts)


def export_response(wire: Wire, rejected: Rejected) -> bytes:
    """An ``ExportMetricsServiceResponse``, ``partial_success`` set only if data points
    were rejected (the spec leaves it unset on full success)."""
    response = ExportMetricsServiceResponse()
    if rejected.count:
        response.partial_success.rejected_data_points = rejected.count
        response.partial_success.error_message = rejected.message
    return _encode(response, wire)


def status_body(wire: Wire, http_status: int, message: str) -> bytes:
    """A ``google.rpc.Status`` for an HTTP error status, in the request's encoding."""
    code = _CODES.get(http_status, code_pb2.UNKNOWN)
    return _encode(status_pb2.Status(code=code, message=message), wire)


def _encode(message: Any, wire: Wire) -> bytes:
    if wire == "protobuf":
        return bytes(message.SerializeToString())
    return json_format.MessageToJson(message, indent=None).encode("utf-8")
