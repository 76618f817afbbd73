"""Prometheus remote write 1.0: a snappy-compressed protobuf ``WriteRequest`` to points.

The spec: https://prometheus.io/docs/specs/prw/remote_write_spec/ . A sender POSTs a
``prometheus.WriteRequest``, serialised with protobuf and compressed with snappy's
*block* format (no framing), with ``Content-Type: application/x-protobuf``,
``Content-Encoding: snappy`` and ``X-Prometheus-Remote-Write-Version: 0.1.0``. Each
series' ``__name__`` label is the :class:`api.series.Point`'s name, its other labels
are the point's labels; timestamps go from milliseconds to seconds.

Kept free of FastAPI (the route, ``api/routes/remote_write.py``, turns :class:`Refused`
into its status). Checked here, before anything is stored: the body's snappy length
header against the size bound (a few bytes may declare gigabytes: the bound is
checked before a byte is decompressed), the snappy stream, the protobuf message, that
every series has a ``__name__`` and no label twice, and the number of samples.
Prometheus' staleness markers (a NaN with the bit pattern ``0x7ff0000000000002``,
written when a series disappears, for example while its exporter restarts) are
skipped and counted, never refused. Values and timestamps of the series that are
link loads are judged by :meth:`api.series.SeriesMap.map_batch`, which the route calls.

The messages are described here, at import time, as a ``FileDescriptorProto`` built
with ``descriptor_pb2`` and turned into classes by ``message_factory`` in a pool of
our own, rather than compiled from a ``.proto`` into a ``_pb2`` module:

- a generated module is tied to the protobuf runtime it was generated for (protobuf
  5 and later check the generated code's version at import), so it would need
  regenerating, with grpcio-tools (not a dependency), on every major upgrade; the
  descriptor is data and works with any runtime;
- the four messages a receiver reads fit in a table (:data:`_MESSAGES`), each field
  number next to the spec's; what a receiver of link loads never reads (exemplars,
  native histograms) is declared as bytes in the views it parses, never decoded, so
  that a series carrying them is still read as columns
  (:func:`api.proto_views.canonical`);
- a private pool cannot clash with another library that registers the same names
  (``prometheus.WriteRequest``) in protobuf's default pool. The wire format knows
  field numbers and types only, so the package name is ours (``linkcast.prw1``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Container
from dataclasses import dataclass, field
from math import isnan
from operator import attrgetter, getitem
from typing import Any

import cramjam
import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from api.proto_views import F, canonical, message_classes
from api.series import Point, SeriesBatch, escaped
from api.series_cache import SeriesCache

CONTENT_TYPE = "application/x-protobuf"
CONTENT_ENCODING = "snappy"
VERSION = "0.1.0"  # what 1.0 senders put in X-Prometheus-Remote-Write-Version
PROTO = "prometheus.WriteRequest"  # the `proto=` parameter remote write 2.0 senders use
STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus' staleness marker (value.StaleNaN)
# The stream identifier chunk that opens snappy's framing format (framing_format.txt),
# which senders that compress with a stream API write instead of a block.
SNAPPY_FRAMED = b"\xff\x06\x00\x00sNaPpY"

# message -> (field, number, type, repeated). Spec 1.0: WriteRequest{repeated TimeSeries
# timeseries = 1; reserved 2; repeated MetricMetadata metadata = 3}; TimeSeries{repeated
# Label labels = 1; repeated Sample samples = 2; (exemplars = 3, histograms = 4: not
# read)}; Label{string name = 1; string value = 2}; Sample{double value = 1; int64
# timestamp = 2 (ms)}; MetricMetadata{MetricType type = 1 (an enum: an int on the wire);
# string metric_family_name = 2; string help = 4; string unit = 5}.
_MESSAGES: dict[str, tuple[tuple[str, int, int | str, bool], ...]] = {
    "WriteRequest": (
        ("timeseries", 1, "TimeSeries", True),
        ("metadata", 3, "MetricMetadata", True),
    ),
    "TimeSeries": (("labels", 1, "Label", True), ("samples", 2, "Sample", True)),
    "Label": (("name", 1, F.TYPE_STRING, False), ("value", 2, F.TYPE_STRING, False)),
    "Sample": (("value", 1, F.TYPE_DOUBLE, False), ("timestamp", 2, F.TYPE_INT64, False)),
    "MetricMetadata": (
        ("type", 1, F.TYPE_INT32, False),
        ("metric_family_name", 2, F.TYPE_STRING, False),
        ("help", 4, F.TYPE_STRING, False),
        ("unit", 5, F.TYPE_STRING, False),
    ),
    # What the receiver parses: the same wire, each series' labels left as the bytes of
    # their Label messages (a length-delimited field reads as bytes or as a message
    # alike). A series' label bytes are its identity: decoded into names and values
    # once (:func:`_series_labels`) and looked up by those bytes in later requests,
    # instead of a message object, a name and a value made per label of every series.
    "WriteRequestWire": (
        ("timeseries", 1, "TimeSeriesWire", True),
        ("metadata", 3, "MetricMetadata", True),
    ),
    # Exemplars and native histograms are declared (as bytes, never read) so that a
    # series carrying them is still protobuf's own encoding of itself
    # (api.proto_views.canonical).
    "TimeSeriesWire": (
        ("labels", 1, F.TYPE_BYTES, True),
        ("samples", 2, "Sample", True),
        ("exemplars", 3, F.TYPE_BYTES, True),
        ("histograms", 4, F.TYPE_BYTES, True),
    ),
    # The same wire once more, read into columns: ``timeseries`` and ``samples``
    # declared singular, so that protobuf's parser merges every occurrence into one
    # message and concatenates their repeated fields (the encoding guide: "repeated
    # fields are concatenated" when a singular message field appears more than once).
    # One parse then gives every sample's value and timestamp, in order, as two lists
    # (:func:`_columns`), instead of a message object per sample.
    # (Labels, metadata, exemplars and histograms are declared, as bytes, only so as
    # not to be kept as unknown fields.)
    "WriteRequestColumns": (
        ("timeseries", 1, "TimeSeriesColumns", False),
        ("metadata", 3, F.TYPE_BYTES, True),
    ),
    "TimeSeriesColumns": (
        ("labels", 1, F.TYPE_BYTES, True),
        ("samples", 2, "SampleColumns", False),
        ("exemplars", 3, F.TYPE_BYTES, True),
        ("histograms", 4, F.TYPE_BYTES, True),
    ),
    "SampleColumns": (
        ("value", 1, F.TYPE_DOUBLE, True),
        ("timestamp", 2, F.TYPE_INT64, True),
    ),
    # Each series as its bytes, to find its labels' bytes without a message per series
    # (:func:`_label_keys`).
    "WriteRequestSeries": (
        ("timeseries", 1, F.TYPE_BYTES, True),
        ("metadata", 3, F.TYPE_BYTES, True),
    ),
    # And once more where a column came out short: every Sample left as its bytes, in
    # order, to tell which samples have a value and a timestamp on the wire
    # (:func:`_filled`). Labels, exemplars and histograms declared singular bytes: each
    # series' occurrence replaces the last, nothing accumulates.
    "WriteRequestSamples": (
        ("timeseries", 1, "TimeSeriesSamples", False),
        ("metadata", 3, F.TYPE_BYTES, True),
    ),
    "TimeSeriesSamples": (
        ("labels", 1, F.TYPE_BYTES, False),
        ("samples", 2, F.TYPE_BYTES, True),
        ("exemplars", 3, F.TYPE_BYTES, False),
        ("histograms", 4, F.TYPE_BYTES, False),
    ),
}


_CLASSES = message_classes("linkcast.prw1", _MESSAGES)
WriteRequest: Any = _CLASSES["WriteRequest"]
TimeSeries: Any = _CLASSES["TimeSeries"]
Label: Any = _CLASSES["Label"]
Sample: Any = _CLASSES["Sample"]
MetricMetadata: Any = _CLASSES["MetricMetadata"]
_WriteRequestWire: Any = _CLASSES["WriteRequestWire"]
_WriteRequestColumns: Any = _CLASSES["WriteRequestColumns"]
_WriteRequestSamples: Any = _CLASSES["WriteRequestSamples"]
_WriteRequestSeries: Any = _CLASSES["WriteRequestSeries"]
_TimeSeriesWire: Any = _CLASSES["TimeSeriesWire"]


class Refused(Exception):
    """The request is refused as a whole, nothing stored: HTTP ``status`` and why.

    400: bad data (Prometheus never retries a 4xx but 429); 413: too large; 415: not
    a remote write 1.0 body. ``reason``: ``invalid`` for data that decoded but cannot
    be stored, None to let the status say; ``samples``: how many the request carried,
    when known (both for the self-monitoring counts, api/metrics.py).
    """

    def __init__(
        self, status: int, message: str, *, reason: str | None = None, samples: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.samples = samples


@dataclass
class Decoded:
    """A request's samples as columns over its series (:class:`api.series.SeriesBatch`),
    in order, and what was skipped.

    ``series``: time series in the request; ``stale``: staleness markers skipped;
    ``metadata``: metadata entries (read, never stored).
    """

    batch: SeriesBatch = field(default_factory=SeriesBatch.empty)
    series: int = 0
    stale: int = 0
    metadata: int = 0

    @property
    def points(self) -> list[Point]:
        """The samples as points, in order."""
        return self.batch.points()

    @property
    def samples(self) -> int:
        """Samples in the request: those kept plus staleness markers."""
        return len(self.batch) + self.stale


def check_headers(content_type: str | None, content_encoding: str | None) -> None:
    """Raise :class:`Refused` (415) unless the headers name remote write 1.0's body.

    ``application/x-protobuf`` with no ``proto`` parameter, or with
    ``proto=prometheus.WriteRequest``, and ``snappy``; remote write 2.0's
    ``proto=io.prometheus.write.v2.Request`` is refused with a 415, as the 2.0 spec
    asks of a receiver that does not speak it, so that a sender can fall back.

    >>> check_headers("application/x-protobuf", "snappy")
    >>> try:
    ...     check_headers("application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy")
    ... except Refused as exc:
    ...     print(exc.status, exc.message.split(": ")[1])
    415 only remote write 1.0 is taken (application/x-protobuf, proto=prometheus.WriteRequest); ...
    """
    expected = f"{CONTENT_TYPE} (remote write 1.0, proto={PROTO})"
    media, *params = (content_type or "").split(";")
    if media.strip().lower() != CONTENT_TYPE:
        got = content_type or "none"
        raise Refused(415, f"Content-Type {got} is not supported; expected {expected}")
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto" and value.strip().strip('"') != PROTO:
            raise Refused(
                415,
                f"Content-Type {content_type}: only remote write 1.0 is taken ({CONTENT_TYPE},"
                f" proto={PROTO}); set protobuf_message: {PROTO} in the sender's remote_write",
            )
    if (content_encoding or "").strip().lower() != CONTENT_ENCODING:
        got = content_encoding or "none"
        raise Refused(
            415,
            f"Content-Encoding {got} is not supported; expected {CONTENT_ENCODING}"
            " (the body snappy block-compressed, as remote write 1.0 sends it)",
        )


def snappy_length(body: bytes) -> int:
    """The decompressed length a snappy block declares: its leading varint.

    >>> snappy_length(bytes(cramjam.snappy.compress_raw(b"x" * 300)))
    300
    >>> snappy_length(b"\\xff\\xff")
    Traceback (most recent call last):
    ...
    api.remote_write.Refused: corrupt snappy: the length header is cut short
    """
    length = 0
    for i, byte in enumerate(body[:5]):  # a 32-bit length: at most 5 bytes
        length |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if length >= 2**32:
                break
            return length
    if len(body) < 5:
        raise Refused(400, "corrupt snappy: the length header is cut short")
    raise Refused(400, "corrupt snappy: the length header is not a 32-bit varint")


def decompress(body: bytes, *, limit: int) -> bytes:
    """The snappy block ``body`` decompressed; :class:`Refused` 413 if it declares more
    than ``limit`` bytes (checked before decompressing), 400 if it is not snappy."""
    if not body:
        raise Refused(400, "empty body: expected a snappy-compressed WriteRequest")
    if body.startswith(SNAPPY_FRAMED):
        raise Refused(
            400,
            "a snappy framed stream: remote write sends snappy's block format, unframed"
            " (Go: snappy.Encode; Python: cramjam.snappy.compress_raw)",
        )
    declared = snappy_length(body)
    if declared > limit:
        raise Refused(413, f"decompressed body of {declared} bytes exceeds {limit} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        # cramjam says "snappy: corrupt input (...)" for a cut or damaged block
        raise Refused(400, f"corrupt or truncated snappy block: {exc}") from None


def parse(raw: bytes) -> Any:
    """The ``WriteRequest`` in ``raw``, its labels as bytes (``WriteRequestWire``: each
    Label is decoded by :func:`points`); :class:`Refused` 400 if it is not one.

    A message whose top level has fields a 1.0 ``WriteRequest`` has not (for example a
    remote write 2.0 request, whose series are field 5) is refused rather than read as
    an empty request, which would lose its samples without a word.
    """
    try:
        request = _WriteRequestWire.FromString(raw)
    except DecodeError as exc:
        why = str(exc).rsplit(": ", 1)[-1]  # upb: "Error parsing message with type '..': why"
        raise Refused(400, f"undecodable protobuf: not a prometheus.WriteRequest ({why})") from None
    unknown = sorted({f.field_number for f in UnknownFieldSet(request)})
    if unknown:
        numbers = ", ".join(map(str, unknown))
        raise Refused(
            400,
            f"not a remote write 1.0 prometheus.WriteRequest: unknown top-level field(s) "
            f"{numbers} (1.0 has timeseries = 1 and metadata = 3)",
        )
    return request


def selector(name: str | None, labels: dict[str, str], limit: int = 300) -> str:
    """A series as PromQL writes it, for error messages (cut at ``limit`` characters).

    >>> selector("link_load_bps", {"link": "A>B"})
    'link_load_bps{link="A>B"}'
    >>> selector(None, {"job": "node"})
    '{job="node"}'
    """
    inner = ", ".join(f'{k}="{escaped(v)}"' for k, v in labels.items())
    text = f"{name or ''}{{{inner}}}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def points(
    request: Any, raw: bytes, *, max_samples: int, metrics: Container[str] = frozenset()
) -> Decoded:
    """The samples of ``request`` (``raw`` parsed as a ``WriteRequestWire``) as columns
    over their series, in order, staleness markers skipped and counted.

    ``metrics``: the names whose series are kept from request to request (those of the
    app's series rules, :attr:`api.series.SeriesMap.metrics`); any other series is
    decoded again each time, never kept.

    Where the body is protobuf's own encoding of what it holds
    (:func:`api.proto_views.canonical`; Prometheus' encoder writes such bodies), the
    samples are read as columns (:func:`_columns`), and, when each series has one
    sample (as Prometheus sends them), each series' identity is the bytes of its labels
    (:func:`_label_keys`), found without a message object per series: a series seen
    before costs a bytes object, a slice and a lookup, no decoding. Proto3 leaves a
    value of 0 and a timestamp of 0 out of the wire, so a sample of 0 bit/s is missing
    from the value column: the samples' bytes then say where (:func:`_filled`). A canonical body of
    another shape is read series by series, its samples still as columns; any other
    body series by series and sample by sample.

    Raises :class:`Refused`: 413 for more than ``max_samples`` samples; 400 naming the
    series for a series with no ``__name__``, with a label name twice, or with a Label
    that is not one (not protobuf, a name or value not UTF-8).
    """
    out = Decoded(metadata=len(request.metadata))
    is_canonical = canonical(request, raw)
    fast = _one_sample_each(raw, max_samples) if is_canonical else None
    if fast is not None:
        keys, values, stamps = fast
        counts = None
        found = list(map(_SERIES.get, keys))
        if None in found:  # a key not seen before must be labels alone
            new = (key for key, f in zip(keys, found, strict=True) if f is None)
            if not all(map(_only_labels, new)):  # a cut through more than labels
                fast = None
    if fast is None:
        series = list(request.timeseries)  # one message object per series, read twice
        keys = [_label_fields(s.labels) for s in series]  # the keys _label_keys finds
        counts = list(map(len, map(_SAMPLES, series)))
        total = sum(counts)
        _check_count(total, max_samples)
        columns = _columns(raw, total) if is_canonical else None
        values, stamps = columns or _per_sample(series)
        found = list(map(_SERIES.get, keys))
    total = len(values)
    if None in found:  # looked up again in order, as series are learnt (and evicted)
        get = _SERIES.get
        found = [get(key) or _series_labels(key, total, metrics) for key in keys]
    out.series = len(found)
    of = None
    if counts is not None and (len(counts) != total or counts.count(1) != total):
        of = np.repeat(np.arange(len(counts)), counts)  # each sample's series
    ts = _seconds(stamps)
    if any(map(isnan, values)):  # NaNs: some may be staleness markers
        stale = np.array(values, np.float64).view(np.uint64) == STALE_NAN_BITS
        out.stale = int(stale.sum())
        if out.stale:
            keep = ~stale
            of = (np.arange(total) if of is None else of)[keep]
            ts, values = ts[keep], [v for v, k in zip(values, keep.tolist(), strict=True) if k]
    out.batch = SeriesBatch(found, of, ts, values)
    return out


def _one_sample_each(
    raw: bytes, max_samples: int
) -> tuple[list[bytes], list[float], list[int]] | None:
    """For a canonical ``raw`` with as many series as samples, each series' bytes ending
    as its one sample would: each series' bytes before that sample (its label bytes,
    once the caller has checked each new one with :func:`_only_labels`), and the
    samples' values and timestamps (ms), in order; None for any other request.
    :class:`Refused` 413 past ``max_samples`` samples."""
    series = _WriteRequestSeries.FromString(raw).timeseries
    samples = _WriteRequestSamples.FromString(raw).timeseries.samples
    _check_count(len(samples), max_samples)
    if len(series) != len(samples):
        return None
    keys = _label_keys(list(series), list(samples))
    if keys is None:
        return None
    columns = _columns(raw, len(samples), samples)
    if columns is None:
        return None
    return keys, *columns


def _label_fields(labels: Any) -> bytes:
    """A series' Label messages (bytes each) as its label fields are encoded: the
    identity :func:`_label_keys` finds in a canonical body."""
    encoded: bytes = _TimeSeriesWire(labels=labels).SerializeToString()
    return encoded


def _check_count(total: int, max_samples: int) -> None:
    """:class:`Refused` 413 for a request of more than ``max_samples`` samples."""
    if total > max_samples:
        message = f"{total} samples in one request; at most {max_samples}"
        raise Refused(413, message, samples=total)


def _only_labels(key: bytes) -> bool:
    """Whether ``key`` is a series' label fields and nothing else, as protobuf encodes
    them (what :func:`_label_fields` gives): the check that a cut made by
    :func:`_label_keys` fell where the labels end."""
    try:
        labels_only = _TimeSeriesWire.FromString(key)
    except DecodeError:
        return False
    plain = not (labels_only.samples or labels_only.exemplars or labels_only.histograms)
    return plain and canonical(labels_only, key)


def _seconds(stamps: list[int]) -> np.ndarray:
    """Timestamps in ms as float64 seconds, each the int division correctly rounded
    (as ``stamp / 1000``: float64 is exact only below 2**53 ms, so those beyond, far
    past any plausible time, are divided as ints)."""
    ts = np.array(stamps, np.float64) / 1000
    beyond = np.flatnonzero(np.abs(ts) >= 2**53 / 1000)
    if len(beyond):
        ts[beyond] = [stamps[i] / 1000 for i in beyond.tolist()]
    return ts


# A canonical TimeSeries whose one Sample comes last: its Label fields (field 1), then
# the Sample as field 2, length-delimited: tag 0x12, a one-byte length (a Sample is at
# most 20 bytes), the Sample's bytes.
_SAMPLE_TAG = 0x12


def _label_keys(series: list[bytes], samples: list[bytes]) -> list[bytes] | None:
    """Each series' bytes up to its sample: the encoding of its labels, its identity.

    For ``series[i]`` the bytes of a canonical TimeSeries whose one Sample's bytes are
    ``samples[i]`` (every Sample of the request, in order). Checked here, for every
    series at once with numpy: that each series ends with tag 0x12, the length of
    ``samples[i]`` and those bytes; None if one does not. What this does not prove is
    that the bytes before are labels alone (an exemplar-only series' bytes may end as a
    sample would, with the next series holding two): the caller checks each key it has
    not seen before with :func:`_only_labels`, and only then are the samples known to
    be one a series, in order."""
    n = len(series)
    if n == 0:
        return []
    s_len = np.fromiter(map(len, series), np.int64, n)
    e_len = np.fromiter(map(len, samples), np.int64, n)
    key_len = s_len - 2 - e_len  # what comes before the sample's tag and length
    if key_len.min() < 0 or e_len.max() >= 0x80:
        return None
    joined = np.frombuffer(b"".join(series), np.uint8)
    at = np.cumsum(s_len) - s_len + key_len  # where each sample's tag is in `joined`
    if not ((joined[at] == _SAMPLE_TAG).all() and (joined[at + 1] == e_len).all()):
        return None
    # the positions of every sample's own bytes within `joined`, in order
    first = np.repeat(at + 2 - (np.cumsum(e_len) - e_len), e_len)
    inside = first + np.arange(int(e_len.sum()))
    if not np.array_equal(joined[inside], np.frombuffer(b"".join(samples), np.uint8)):
        return None
    return list(map(getitem, series, map(slice, key_len.tolist())))


_SAMPLES = attrgetter("samples")


def _columns(raw: bytes, total: int, samples: Any = None) -> tuple[list[float], list[int]] | None:
    """Every sample's value and timestamp (ms) in ``raw``, in order, as two lists.

    ``raw`` must be canonical (:func:`api.proto_views.canonical`). Proto3 does not
    write a value or a timestamp of 0, so where a column is shorter than ``total`` (an
    idle interface's 0 bit/s), the samples' own bytes say which ones it skipped
    (:func:`_filled`; ``samples``: those bytes, if already parsed). None if they do not
    account for the columns (not expected of a canonical body)."""
    columns = _WriteRequestColumns.FromString(raw).timeseries.samples
    values, stamps = list(columns.value), list(columns.timestamp)
    if len(values) == total and len(stamps) == total:
        return values, stamps
    return _filled(raw, total, values, stamps, samples)


# A canonical Sample's bytes: its value, if not 0, as field 1 of wire type 64-bit (tag
# 0x09 and 8 bytes), then its timestamp, if not 0, as field 2, a varint (tag 0x10).
_VALUE_TAG, _VALUE_FIELD_BYTES = 0x09, 9


def _filled(
    raw: bytes, total: int, values: list[float], stamps: list[int], encoded: Any = None
) -> tuple[list[float], list[int]] | None:
    """The columns ``values`` and ``stamps``, short of the zeros proto3 leaves out,
    with 0 put back where each sample's bytes have no value or no timestamp; None if
    the bytes do not account for the columns' lengths.

    One more parse of ``raw`` (``WriteRequestSamples``: a bytes object per sample) and
    C loops, against a message object per sample (:func:`_per_sample`)."""
    if encoded is None:
        encoded = _WriteRequestSamples.FromString(raw).timeseries.samples
    if len(encoded) != total:
        return None
    lengths = np.fromiter(map(len, encoded), np.int64, total)
    joined = np.frombuffer(b"".join(encoded), np.uint8)
    firsts = (np.cumsum(lengths) - lengths)[lengths > 0]  # where each sample's bytes start
    has_value = np.zeros(total, bool)
    has_value[lengths > 0] = joined[firsts] == _VALUE_TAG
    has_stamp = lengths > _VALUE_FIELD_BYTES * has_value
    if has_value.sum() != len(values) or has_stamp.sum() != len(stamps):
        return None
    value_column = np.zeros(total, np.float64)
    value_column[has_value] = values
    stamp_column = np.zeros(total, np.int64)
    stamp_column[has_stamp] = stamps
    return value_column.tolist(), stamp_column.tolist()


def _per_sample(series: Any) -> tuple[list[float], list[int]]:
    """Every sample's value and timestamp (ms), read from each Sample message (a value
    or timestamp the wire leaves out reads as 0)."""
    samples = [sample for s in series for sample in s.samples]
    return [x.value for x in samples], [x.timestamp for x in samples]


# A series' label fields (bytes) -> its name and labels, shared by the threads of a
# process. The same labels object for every request of a series lets
# api.series.SeriesMap.map_batch match it once. Only series some rule names; bounded by
# their label bytes (oldest out first).
_SERIES: SeriesCache = SeriesCache()


def _series_labels(key: bytes, total: int, metrics: Container[str]) -> tuple[str, dict[str, str]]:
    """The name and other labels of a series whose label fields are ``key`` (the
    encoding of its Label messages); checked (a Label that decodes, a ``__name__``, no
    label twice) and, if ``metrics`` holds its name, remembered."""
    try:
        encoded = _TimeSeriesWire.FromString(key).labels
        pairs = [(label.name, label.value) for label in map(Label.FromString, encoded)]
    except DecodeError as exc:
        why = str(exc).rsplit(": ", 1)[-1]
        raise Refused(
            400,
            f"undecodable protobuf: not a prometheus.WriteRequest (a series' Label: {why})",
        ) from None
    labels = dict(pairs)
    name = labels.pop("__name__", None)
    if len(labels) + (name is not None) != len(pairs):
        twice = sorted({k for k, _ in pairs if sum(1 for n, _ in pairs if n == k) > 1})
        raise Refused(
            400,
            f"series {selector(name, labels)}: label(s) {', '.join(twice)} given more than once",
            reason="invalid",
            samples=total,
        )
    if not name:
        message = f"series {selector(None, labels)} has no __name__ label"
        raise Refused(400, message, reason="invalid", samples=total)
    if name in metrics:
        _SERIES.put(key, (name, labels), len(key))
    return name, labels


def decode(
    body: bytes, *, limit: int, max_samples: int, metrics: Container[str] = frozenset()
) -> Decoded:
    """A remote write 1.0 body (snappy block of a ``WriteRequest``) as a batch of
    samples over their series (:class:`Decoded`).

    ``limit`` bounds the body after decompression (in bytes), ``max_samples`` the
    samples; ``metrics``: the series names worth keeping (:func:`points`). Raises
    :class:`Refused` (400, 413) naming what was wrong.

    >>> ts = TimeSeries(labels=[Label(name="__name__", value="link_load_bps"),
    ...                         Label(name="link", value="A>B")],
    ...                 samples=[Sample(value=1.5e9, timestamp=1_767_225_600_000),
    ...                          Sample(value=stale_nan(), timestamp=1_767_225_601_000)])
    >>> body = bytes(cramjam.snappy.compress_raw(WriteRequest(timeseries=[ts]).SerializeToString()))
    >>> d = decode(body, limit=1 << 20, max_samples=10)
    >>> d.points, d.stale
    ([Point(name='link_load_bps', labels={'link': 'A>B'}, ts=1767225600.0, value=1500000000.0)], 1)
    """
    raw = decompress(body, limit=limit)
    return points(parse(raw), raw, max_samples=max_samples, metrics=metrics)


def stale_nan() -> float:
    """Prometheus' staleness marker as a float (for senders and tests)."""
    value: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
    assert math.isnan(value)
    return value
