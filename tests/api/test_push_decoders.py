"""The push decoders hand over what their libraries read, each series' labels one object.

Line protocol: a series' tags are kept from line to line and request to request
(api/line_protocol.py); on generated lines (plain ones, escapes, quotes, booleans,
out-of-range numbers, a field twice, odd whitespace, comments) parse() gives what
line-protocol-parser alone gives, the second time as the first. Remote write and OTLP:
a series' labels are decoded once and found again by their bytes; the same series in
a later request gives the same labels object, another series (another resource, one
attribute changed) its own.

Bounds: only series whose name a rule has are kept, by the decoders and by
SeriesMap.map (a flood of other series leaves every cache empty); a flood of ruled
series keeps each cache under its byte cap, the oldest series out first, and what is
decoded and mapped after an eviction is what an unbounded cache gives.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from line_protocol_parser import LineFormatError, parse_line
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from api import line_protocol as lp
from api import otlp
from api import remote_write as rw
from api.series import DEFAULT_RULES, Point, SeriesMap
from api.series_cache import SeriesCache


class _Every:
    """Every name: every series is kept."""

    def __contains__(self, name: object) -> bool:
        return True


EVERY_NAME = _Every()
RULED = SeriesMap(DEFAULT_RULES).metrics  # link_load_bps, ifHCOutOctets, ...


def rw_decode(body: bytes, metrics=RULED) -> rw.Decoded:
    return rw.decode(body, limit=1 << 20, max_samples=10_000, metrics=metrics)


def otlp_decode(body: bytes, wire: str = "protobuf", metrics=RULED) -> otlp.Decoded:
    return otlp.decode(
        body, wire=wire, content_encoding=None, limit=1 << 20, max_points=10_000, metrics=metrics
    )


SERIES = [
    b"link_load,link=A>B",
    b"interface,agent_host=10.0.0.1,ifName=xe-0/0/1",
    b"m",
    b"m,z=1,a=2",  # tags out of order: the parser sorts them
    b"m,a=b\\ c",  # an escaped space: the series text stops there; not kept
    b"m,a=b\\ d",  # ... and the same text before the first space, other tags
    b"m,a=b\\ c\\ x=1",  # ... or tags that look like a field
    b"m,a=",  # not line protocol
    b" m",  # leading space
    b" n",  # ... and the same (empty) text before the first space, another measurement
    b"#m",  # a comment
    b"m,a=\xe2\x82",  # not UTF-8 (a character cut short): the body is read line by line
    b"\xc2\xa0m",  # a no-break space first: not blank, not line protocol
]
VALUES = [
    b"1",
    b"-1.5",
    b"1.",
    b"1e9",
    b"1E-5",
    b"-0",
    b"0.0e5",
    b"1e400",
    b"1e-400",
    b"0.000000000000000000001e-300",
    b"+1",
    b".5",
    b"12i",
    b"-12i",
    b"9223372036854775807i",
    b"9223372036854775808i",
    b"-9223372036854775808i",
    b"18446744073709551615u",
    b"18446744073709551616u",
    b"-1u",
    b"1.5u",
    b"t",
    b"false",
    b'"text"',
    b'"a b"',
    b"NaN",
    b"inf",
    b"",
]
KEYS = [b"bps", b"x", b"ifHCOutOctets", b"time", b"-x", b"a.b", b"k\\ ey", b""]
STAMPS = [None, b"1500", b"0", b"-5", b"999999999999999999", b"9999999999999999999", b"1.5"]


def reference(body: bytes, unit: Fraction, now: float) -> list[tuple] | tuple:
    """What the parser alone makes of ``body``: the points, or the first bad line."""
    num, den = unit.numerator, unit.denominator
    default_ts = int(Fraction(now) / unit) * num / den
    out: list[tuple] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            point = parse_line(raw.decode("utf-8"))
        except (LineFormatError, UnicodeDecodeError):
            return ("error", number)
        if point is None:
            continue
        ts = default_ts if point["time"] is None else point["time"] * num / den
        for key, value in point["fields"].items():
            if not isinstance(value, bool | str):
                name = point["measurement"] + "_" + key
                out.append((name, point["tags"], ts, value, type(value), number))
    return out


def decoded(body: bytes, unit: Fraction, now: float) -> list[tuple] | tuple:
    try:
        parsed = lp.parse(body, unit=unit, now=now, max_points=10_000, metrics=EVERY_NAME)
    except lp.LineError as exc:
        return ("error", exc.line)
    return [
        (p.name, dict(p.labels), p.ts, p.value, type(p.value), line)
        for p, line in zip(parsed.points, parsed.lines, strict=True)
    ]


field = st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)).map(lambda kv: b"=".join(kv))
line = st.builds(
    lambda series, fields, stamp, end: (
        series + b" " + b",".join(fields) + (b"" if stamp is None else b" " + stamp) + end
    ),
    st.sampled_from(SERIES),
    st.lists(field, min_size=1, max_size=3),
    st.sampled_from(STAMPS),
    st.sampled_from([b"", b"", b"\r", b" "]),
)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(line | st.sampled_from([b"", b" \t", b"\x0b", b"\x1c"]), min_size=1, max_size=6)
)
def test_line_protocol_reads_as_the_parser_reads(lines: list[bytes]) -> None:
    unit, now = lp.PRECISIONS_V2["ms"], 1_700_000_000.5
    body = b"\n".join(lines)
    lp._SERIES.clear()
    first = decoded(body, unit, now)  # learns the series
    second = decoded(body, unit, now)  # finds their tags again
    expected = reference(body, unit, now)
    assert first == expected
    assert second == expected


@pytest.mark.parametrize(
    "lines",
    [
        [b"m,a=b\\ c x=1 1", b"m,a=b\\ d x=2 2"],  # one text before the first space
        [b" m x=1 1", b" n x=2 2"],  # the same (empty) text: a leading space
        [b"m\\ n x=1 1", b"m\\ o x=2 2"],  # an escaped space in the measurement
        [b"m,a=b x=1 1", b"m,a=b x=2,y=3i 2", b"m,a=b x=4u"],  # a plain series, kept
    ],
)
def test_a_kept_series_is_only_what_its_text_alone_says(lines) -> None:
    """A line of a known series has only its fields and timestamp parsed: never where
    the text before its first space does not alone give its measurement and tags."""
    unit, now = lp.PRECISIONS_V2["s"], 100.0
    lp._SERIES.clear()
    for body in (b"\n".join(lines), b"\n".join(lines[::-1])):
        expected = reference(body, unit, now)
        assert expected and expected[0] != "error"
        assert decoded(body, unit, now) == expected  # learns
        assert decoded(body, unit, now) == expected  # finds


def test_a_series_with_an_escaped_space_keeps_one_tags_object() -> None:
    """Telegraf's SNMP interface table has tags such as ifAlias=uplink\\ to\\ core: the
    text before the first space is cut short, so every line is parsed whole, and the
    series still has one tags object across lines and requests (one memo entry)."""
    unit = lp.PRECISIONS_V2["s"]
    lp._SERIES.clear()
    line = "interface,agent_host=r1,ifAlias=uplink\\ to\\ core,ifName=et1 ifHCOutOctets={}u {}"
    m = SeriesMap(DEFAULT_RULES)
    tags = set()
    for request in range(3):
        body = "\n".join(line.format(v, 60 * (request * 5 + v)) for v in range(1, 6))
        points = lp.parse(body.encode(), unit=unit, now=0.0, max_points=10, metrics=RULED).points
        assert [p.labels["ifAlias"] for p in points] == ["uplink to core"] * 5
        tags.update(id(p.labels) for p in points)
        m.map(points, latest=1e12)
    assert len(tags) == 1 and len(m._memo) == 1


def test_a_known_series_keeps_one_tags_object_across_requests() -> None:
    unit = lp.PRECISIONS_V2["s"]
    a = lp.parse(b"link_load,link=A>B bps=1 60\n", unit=unit, now=0.0, max_points=10, metrics=RULED)
    b = lp.parse(
        b"link_load,link=A>B bps=2 120\nlink_load,link=B>C bps=3 120",
        unit=unit,
        now=0.0,
        max_points=10,
        metrics=RULED,
    )
    assert a.points[0].labels is b.points[0].labels
    assert [(p.labels["link"], p.ts, p.value) for p in b.points] == [
        ("A>B", 120.0, 2.0),
        ("B>C", 120.0, 3.0),
    ]


def remote_write_body(*series: tuple[list[tuple[str, str]], list[tuple[float, int]]]) -> bytes:
    req = rw.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for value, stamp in samples:
            ts.samples.add(value=value, timestamp=stamp)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def test_remote_write_series_are_learnt_once_and_told_apart() -> None:
    ab = [("__name__", "link_load_bps"), ("link", "A>B")]
    bc = [("__name__", "link_load_bps"), ("link", "B>C")]
    first = rw_decode(remote_write_body((ab, [(1.0, 1000)])))
    second = rw_decode(remote_write_body((bc, [(2.0, 2000)]), (ab, [(3.0, 3000), (4.0, 4000)])))
    assert [(p.name, dict(p.labels), p.ts, p.value) for p in second.points] == [
        ("link_load_bps", {"link": "B>C"}, 2.0, 2.0),
        ("link_load_bps", {"link": "A>B"}, 3.0, 3.0),
        ("link_load_bps", {"link": "A>B"}, 4.0, 4.0),
    ]
    assert second.points[1].labels is first.points[0].labels


def _rw_reference(body: bytes) -> tuple[list[tuple], int]:
    """Every sample of a remote write body read from its own Sample message (the
    plain schema), as (name, labels, ts, value bits), and the staleness markers."""
    request = rw.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    out, stale = [], 0
    for s in request.timeseries:
        labels = {label.name: label.value for label in s.labels}
        name = labels.pop("__name__")
        for sample in s.samples:
            bits = struct.pack("<d", sample.value)
            if struct.unpack("<Q", bits)[0] == rw.STALE_NAN_BITS:
                stale += 1
                continue
            out.append((name, labels, sample.timestamp / 1000, bits))
    return out, stale


RW_VALUES = [0.0, -0.0, 1.5e9, 7.0, math.nan, rw.stale_nan(), math.inf, -3.0]
RW_STAMPS = [0, 1, 1_767_225_600_000, 2**40]
rw_series = st.tuples(
    st.sampled_from(["link_load_bps", "ifHCOutOctets", "other"]),
    st.sampled_from(["A>B", "B>C", "C>A"]),
    st.lists(st.tuples(st.sampled_from(RW_VALUES), st.sampled_from(RW_STAMPS)), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(series=st.lists(rw_series, max_size=6))
def test_remote_write_columns_read_as_each_sample_message(series) -> None:
    """The columns (one parse, values and timestamps as lists) give what each Sample
    message gives, in order: also where a value or timestamp of 0 is left out of the
    wire, a series has no sample or several, and NaNs and staleness markers mix."""
    body = remote_write_body(
        *(([("__name__", name), ("link", link)], samples) for name, link, samples in series)
    )
    want, stale = _rw_reference(body)
    got = rw_decode(body)
    points = [(p.name, dict(p.labels), p.ts, struct.pack("<d", p.value)) for p in got.points]
    assert (points, got.stale) == (want, stale)
    assert got.samples == sum(len(samples) for _, _, samples in series)


# Ways a sender may encode one TimeSeries, each valid protobuf that every parser reads
# alike: protobuf's own (canonical) encoding, and variants that are not it.
def _series_bytes(labels: list[tuple[str, str]], value: float, stamp: int, how: str) -> bytes:
    lab = rw.TimeSeries(labels=[rw.Label(name=k, value=v) for k, v in labels])
    one = rw.TimeSeries(samples=[rw.Sample(value=value, timestamp=stamp)])
    labels_part, sample_part = lab.SerializeToString(), one.SerializeToString()
    if how == "samples_first":
        return sample_part + labels_part
    if how == "exemplar":  # field 3, an empty Exemplar, after the sample
        return labels_part + sample_part + b"\x1a\x00"
    if how == "explicit_zero_stamp":  # a timestamp of 0 written out (proto3 leaves it off)
        sample = rw.Sample(value=value).SerializeToString() + b"\x10\x00"
        return labels_part + b"\x12" + bytes([len(sample)]) + sample
    if how == "two_samples":
        return labels_part + sample_part + sample_part
    return labels_part + sample_part


@settings(max_examples=200, deadline=None)
@given(
    series=st.lists(
        st.tuples(
            st.sampled_from(["A>B", "B>C", "C>A"]),
            st.sampled_from(RW_VALUES),
            st.sampled_from(RW_STAMPS),
            st.sampled_from(
                ["canonical"] * 4
                + ["samples_first", "exemplar", "explicit_zero_stamp", "two_samples"]
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_remote_write_series_encoded_any_way_read_as_each_message(series) -> None:
    """Whether each series is found by its label bytes (a canonical body, one sample a
    series) or read message by message (any other encoding), the points are what each
    Sample message gives, in order."""
    raw = rw._WriteRequestSeries(
        timeseries=[
            _series_bytes([("__name__", "link_load_bps"), ("link", link)], value, stamp, how)
            for link, value, stamp, how in series
        ]
    ).SerializeToString()
    body = bytes(cramjam.snappy.compress_raw(raw))
    want, stale = _rw_reference(body)
    got = rw_decode(body)
    points = [(p.name, dict(p.labels), p.ts, struct.pack("<d", p.value)) for p in got.points]
    assert (points, got.stale) == (want, stale)


def test_remote_write_series_are_found_by_their_label_bytes_only_when_safe(monkeypatch) -> None:
    """The shortcut is taken for Prometheus' shape (canonical, one sample a series) and
    not for a body it cannot read exactly: there every series is read as a message."""
    returned = []
    shortcut = rw._one_sample_each
    monkeypatch.setattr(
        rw, "_one_sample_each", lambda *a: returned.append(shortcut(*a)) or returned[-1]
    )
    labels = [("__name__", "link_load_bps"), ("link", "A>B")]
    for how, taken in [
        ("canonical", True),
        ("samples_first", False),
        ("exemplar", False),
        ("explicit_zero_stamp", False),
        ("two_samples", False),
    ]:
        returned.clear()
        raw = rw._WriteRequestSeries(
            timeseries=[_series_bytes(labels, 1.5, 1000, how)]
        ).SerializeToString()
        got = rw_decode(bytes(cramjam.snappy.compress_raw(raw)))
        assert [p.value for p in got.points] == [1.5] * (2 if how == "two_samples" else 1)
        assert any(r is not None for r in returned) is taken, how


def test_an_exemplar_that_ends_as_a_sample_does_not_move_a_sample() -> None:
    """A series of an exemplar only (Prometheus sends them with send_exemplars), whose
    bytes end as the next series' first sample does, and a next series of two samples:
    as many series as samples, each ending as its sample would. The cut before the
    "sample" is not where labels end, so the request is read message by message: both
    samples are the second series'."""
    labels = [
        rw.Label(name="__name__", value="link_load_bps").SerializeToString(),
        rw.Label(name="link", value="X>Y").SerializeToString(),
    ]
    first = rw.Sample(value=1e6, timestamp=1_767_225_600_000)
    second = rw.Sample(value=2e6, timestamp=1_767_225_601_000)
    encoded = first.SerializeToString()
    exemplar_only = rw._TimeSeriesWire(
        labels=labels, exemplars=[b"\x12" + bytes([len(encoded)]) + encoded]
    )
    ab = rw.TimeSeries(
        labels=[
            rw.Label(name="__name__", value="link_load_bps"),
            rw.Label(name="link", value="A>B"),
        ],
        samples=[first, second],
    )
    raw = rw._WriteRequestSeries(
        timeseries=[exemplar_only.SerializeToString(), ab.SerializeToString()]
    ).SerializeToString()
    body = bytes(cramjam.snappy.compress_raw(raw))
    got = rw_decode(body)
    assert [(dict(p.labels), p.ts, p.value) for p in got.points] == [
        ({"link": "A>B"}, 1_767_225_600.0, 1e6),
        ({"link": "A>B"}, 1_767_225_601.0, 2e6),
    ]
    assert got.series == 2


def test_a_timestamp_past_2_53_ms_is_divided_as_an_int() -> None:
    """Seconds as int / 1000 gives them (float64 holds ms exactly only below 2**53):
    the refusal names the time the sender wrote."""
    stamp = 8_935_386_591_105_771_273
    body = remote_write_body(([("__name__", "link_load_bps"), ("link", "A>B")], [(1.0, stamp)]))
    assert [p.ts for p in rw_decode(body).points] == [stamp / 1000]


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ([("link", "A>B")], "has no __name__ label"),
        ([("__name__", "x"), ("link", "A"), ("link", "B")], "label(s) link given more than once"),
    ],
)
def test_remote_write_bad_series_are_refused_every_time(labels, words) -> None:
    body = remote_write_body((labels, [(1.0, 1000)]))
    for _ in range(2):  # a refused series is not remembered
        with pytest.raises(rw.Refused, match=words.replace("(", r"\(").replace(")", r"\)")):
            rw.decode(body, limit=1 << 20, max_samples=10)


def test_remote_write_label_that_is_not_utf8_is_400() -> None:
    raw = rw.WriteRequest(
        timeseries=[
            rw.TimeSeries(
                labels=[rw.Label(name="__name__", value="m"), rw.Label(name="link", value="A>B")],
                samples=[rw.Sample(value=1.0, timestamp=1)],
            )
        ]
    ).SerializeToString()
    body = bytes(cramjam.snappy.compress_raw(raw.replace(b"A>B", b"A\xff\xfe")))
    with pytest.raises(rw.Refused, match="undecodable protobuf.*UTF-8") as err:
        rw.decode(body, limit=1 << 20, max_samples=10)
    assert err.value.status == 400


def otlp_body(
    resource: dict[str, str],
    points: list[tuple[dict[str, str], float]],
    name: str = "link_load_bps",
) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in resource.items():
        rm.resource.attributes.add(key=k).value.string_value = v
    metric = rm.scope_metrics.add().metrics.add(name=name)
    for attrs, value in points:
        dp = metric.gauge.data_points.add(time_unix_nano=60 * 10**9, as_double=value)
        for k, v in attrs.items():
            dp.attributes.add(key=k).value.string_value = v
    return req.SerializeToString()


def test_otlp_labels_are_learnt_once_per_resource_and_attributes() -> None:
    def decode(body: bytes) -> otlp.Decoded:
        return otlp_decode(body)

    first = decode(otlp_body({"host": "h1"}, [({"link": "A>B"}, 1.0)]))
    second = decode(
        otlp_body({"host": "h1"}, [({"link": "A>B"}, 2.0), ({"link": "A>B", "host": "h9"}, 3.0)])
    )
    third = decode(otlp_body({"host": "h2"}, [({"link": "A>B"}, 4.0)]))
    assert second.points[0].labels is first.points[0].labels
    assert [dict(p.labels) for p in [*second.points, *third.points]] == [
        {"host": "h1", "link": "A>B"},
        {"host": "h9", "link": "A>B"},  # the data point's attribute wins
        {"host": "h2", "link": "A>B"},
    ]
    # the JSON encoding reads through the same view
    as_json = otlp.parse(otlp_body({"host": "h1"}, [({"link": "A>B"}, 5.0)]), "protobuf")
    from google.protobuf import json_format

    body = json_format.MessageToJson(as_json).encode()
    again = otlp_decode(body, wire="json")
    assert again.points[0].labels is first.points[0].labels
    assert again.points[0].value == 5.0


def test_an_sdk_counters_series_is_kept_once_whatever_its_times_and_values(monkeypatch) -> None:
    """As an OTel SDK exports a counter: a cumulative sum of integers, a start time on
    every data point, several attributes. Read as columns, each series is kept once by
    its attributes alone: later times, start times and values find the same labels."""
    monkeypatch.setattr(otlp, "_LABELS", SeriesCache())
    monkeypatch.setattr(otlp, "_each_point", None)  # the columns, or a TypeError

    def body(t: int, values: list[int]) -> bytes:
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.add(key="host").value.string_value = "r1"
        metric = rm.scope_metrics.add().metrics.add(name="ifHCOutOctets")
        metric.sum.aggregation_temporality, metric.sum.is_monotonic = 2, True
        for k, v in enumerate(values):
            dp = metric.sum.data_points.add(
                start_time_unix_nano=t - 3600 * 10**9 + k, time_unix_nano=t, as_int=v
            )
            dp.attributes.add(key="instance").value.string_value = "r1"
            dp.attributes.add(key="ifName").value.string_value = f"xe-0/0/{k}"
        return req.SerializeToString()

    t0 = 1_767_225_600  # 2026-01-01, s
    first = otlp_decode(body(t0 * 10**9, [10, 20, 30]))
    later = otlp_decode(body((t0 + 60) * 10**9, [2**40, 0, 7]))
    assert len(otlp._LABELS) == 3  # a series each, not a series per time or value
    assert all(isinstance(attributes, bytes) for _, attributes in otlp._LABELS)  # by its bytes
    assert all(a.labels is b.labels for a, b in zip(first.points, later.points, strict=True))
    assert [dict(p.labels) for p in later.points] == [
        {"host": "r1", "instance": "r1", "ifName": f"xe-0/0/{k}"} for k in range(3)
    ]
    assert [(p.ts, p.value) for p in later.points] == [(t0 + 60.0, v) for v in (2**40, 0, 7)]


# An OTLP data point: (value kind: the request's own, the other or none; value, time
# ns, flags, link attribute, start time ns, further attributes, an exemplar or not).
# Mostly well-formed, so that the columns and the attributes' bytes are used.
otlp_point = st.tuples(
    st.sampled_from(["same"] * 8 + ["other", None]),
    st.sampled_from([0, 1, 7, -3, 10**12]),
    st.sampled_from([60 * 10**9] * 4 + [0, 1_767_225_600 * 10**9 + 1]),
    st.sampled_from([0] * 8 + [1]),  # 1: NO_RECORDED_VALUE
    st.sampled_from(["A>B", "B>C"]),
    st.sampled_from([0, 0, 30 * 10**9]),
    st.sampled_from([(), (), ("dir", "tx"), ("dir", "rx"), ("dir", "tx", "if", "xe-0/0/1")]),
    st.sampled_from([False] * 6 + [True]),
)
otlp_metric = st.tuples(
    st.sampled_from(["gauge", "sum", "delta", "histogram"]),
    st.sampled_from(["link_load_bps", "ifHCOutOctets", "other"]),
    st.lists(otlp_point, max_size=4),
)


def _otlp_request(resources: list[list[list]], same: str) -> bytes:
    other = {"as_double": "as_int", "as_int": "as_double"}[same]
    req = ExportMetricsServiceRequest()
    for h, scopes in enumerate(resources):
        rm = req.resource_metrics.add()
        rm.resource.attributes.add(key="host").value.string_value = f"h{h}"
        for metrics in scopes:
            sm = rm.scope_metrics.add()
            for kind, name, dps in metrics:
                metric = sm.metrics.add(name=name)
                if kind == "histogram":
                    metric.histogram.data_points.add(count=len(dps))
                    continue
                data = metric.gauge if kind == "gauge" else metric.sum
                if kind != "gauge":
                    data.aggregation_temporality = 2 if kind == "sum" else 1  # cumulative, delta
                for point in dps:  # the last three may be left off: 0, (), False
                    which, value, stamp, flags, link, start, more, exemplar = (
                        *point,
                        0,
                        (),
                        False,
                    )[:8]
                    dp = data.data_points.add(time_unix_nano=stamp, flags=flags)
                    dp.start_time_unix_nano = start
                    if which is not None:
                        setattr(dp, same if which == "same" else other, value)
                    dp.attributes.add(key="link").value.string_value = link
                    for key, text in zip(more[::2], more[1::2], strict=True):
                        dp.attributes.add(key=key).value.string_value = text
                    if exemplar:
                        dp.exemplars.add(time_unix_nano=stamp, as_double=1.0)
    return req.SerializeToString()


def _otlp_read(read) -> tuple:
    try:
        d = read()
    except otlp.Refused as exc:
        return ("refused", exc.status, exc.message)
    where = [d.locate(i) for i in range(len(d.points))]
    points = [(p.name, dict(p.labels), p.ts, p.value, type(p.value)) for p in d.points]
    return points, where, d.dropped, d.skipped


@settings(max_examples=400, deadline=None)
@given(
    resources=st.lists(st.lists(st.lists(otlp_metric, max_size=3), max_size=2), max_size=2),
    max_points=st.sampled_from([3, 10_000, 10_000]),
    same=st.sampled_from(["as_double", "as_int"]),
)
def test_otlp_columns_read_as_each_data_point(resources, max_points, same) -> None:
    """The columns (one parse, each kind's times and values as lists) give what each
    data point's own message gives: the same points, labels, places named in errors,
    drops and refusals, with as_int and as_double mixed, points flagged, without a
    value or a time, histograms and delta sums between them, and past the bound."""
    raw = _otlp_request(resources, same)
    view = otlp._RequestView.FromString(raw)
    columns = _otlp_read(
        lambda: otlp.points(view, max_points=max_points, metrics=EVERY_NAME, raw=raw)
    )
    each = _otlp_read(lambda: otlp.points(view, max_points=max_points, metrics=EVERY_NAME))
    assert columns == each
    # a series kept by its bytes is its attribute fields alone (field 7: tag 0x3a), not
    # a time or a value before them (the labels would be right, one entry per point)
    kept = [a for _, a in otlp._LABELS if isinstance(a, bytes)]
    assert all(a[:1] in (b"", b"\x3a") for a in kept), kept


def test_otlp_columns_skip_what_is_dropped_between_metrics_of_a_kind() -> None:
    """A delta sum's points sit in the sums' column before a cumulative sum's, a
    histogram's in none: each metric reads its own slice."""
    t = 60 * 10**9
    metrics = [
        ("sum", "link_load_bps", [("same", 1, t, 0, "A>B")]),
        ("delta", "link_load_bps", [("same", 2, t, 0, "A>B"), ("same", 3, t, 0, "B>C")]),
        ("histogram", "link_load_bps", [("same", 0, t, 0, "A>B")]),
        ("gauge", "link_load_bps", [("same", 4, t, 0, "A>B")]),
        ("sum", "link_load_bps", [("same", 5, t, 0, "B>C"), ("same", 6, t, 0, "A>B")]),
    ]
    raw = _otlp_request([[metrics]], "as_double")
    d = otlp.points(otlp._RequestView.FromString(raw), max_points=100, metrics=RULED, raw=raw)
    assert [p.value for p in d.points] == [1.0, 4.0, 5.0, 6.0]
    assert d.locate(3).endswith("metrics[4] (link_load_bps) data_points[1]")
    assert d.dropped == {"delta_sum": 2, "histogram": 1}


def _len(n: int) -> bytes:
    """A protobuf length prefix (varint)."""
    out = b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def _rw_body(*samples: bytes) -> bytes:
    """A remote write body of one series, link_load_bps{link="A>B"}, whose Sample
    messages are ``samples``, as given (bytes, so that they can be what no encoder
    writes)."""
    ab = [rw.Label(name="__name__", value="link_load_bps"), rw.Label(name="link", value="A>B")]
    labels = rw.TimeSeries(labels=ab).SerializeToString()
    series = labels + b"".join(b"\x12" + _len(len(x)) + x for x in samples)
    return bytes(cramjam.snappy.compress_raw(b"\x0a" + _len(len(series)) + series))


def _otlp_raw(*points: bytes) -> bytes:
    """An OTLP request of one gauge, link_load_bps, whose NumberDataPoint messages are
    ``points``, as given."""
    gauge = b"".join(b"\x0a" + _len(len(x)) + x for x in points)  # data_points = 1
    metric = metrics_pb2.Metric(name="link_load_bps").SerializeToString()
    metric += b"\x2a" + _len(len(gauge)) + gauge  # gauge = 5
    scope = b"\x12" + _len(len(metric)) + metric  # metrics = 2
    resource = b"\x12" + _len(len(scope)) + scope  # scope_metrics = 2
    return b"\x0a" + _len(len(resource)) + resource  # resource_metrics = 1


def test_remote_write_a_field_given_twice_reads_as_protobuf_reads_it() -> None:
    """Sample A carries its value twice (5, then 6), sample B none: protobuf keeps A's
    last value and reads B's as 0; the columns, 2 values for 2 samples, would give A 5
    and B 6. Such a body is not protobuf's own encoding of itself, so it is read
    sample by sample."""
    a = rw.Sample(value=5.0, timestamp=1000).SerializeToString()
    a += rw.Sample(value=6.0).SerializeToString()  # a second value field: merged, last wins
    b = rw.Sample(timestamp=2000).SerializeToString()  # value 0: not on the wire
    body = _rw_body(a, b)
    assert [(p.ts, p.value) for p in rw_decode(body).points] == [(1.0, 6.0), (2.0, 0.0)]


def test_a_value_with_the_wrong_wire_type_reads_as_protobuf_reads_it() -> None:
    """A value packed (two doubles under the tag of one) is, to protobuf, an unknown
    field: the sample's value is 0. In the columns it would be two values, the second
    one landing on the next sample, short of its own; so is a data point's as_double,
    whose point then has no value (400)."""
    packed = b"\x0a" + _len(16) + struct.pack("<dd", 1.0, 2.0)  # field 1, wire type 2
    a = packed + rw.Sample(timestamp=1000).SerializeToString()
    body = _rw_body(a, rw.Sample(timestamp=2000).SerializeToString())
    assert [(p.ts, p.value) for p in rw_decode(body).points] == [(1.0, 0.0), (2.0, 0.0)]

    point = metrics_pb2.NumberDataPoint
    as_double = b"\x22" + _len(16) + struct.pack("<dd", 1.0, 2.0)  # field 4, wire type 2
    first = point(time_unix_nano=60 * 10**9).SerializeToString() + as_double
    second = point(time_unix_nano=60 * 10**9).SerializeToString()
    with pytest.raises(otlp.Refused, match=r"data_points\[0\]: as_double or as_int is missing"):
        otlp_decode(_otlp_raw(first, second))


def test_plain_requests_are_read_as_columns(monkeypatch) -> None:
    """The column paths are the ones taken for what collectors send (the property
    tests above would pass as well if every request fell back)."""

    def no(*args, **kwargs):
        raise AssertionError("read message by message")

    monkeypatch.setattr(rw, "_per_sample", no)
    monkeypatch.setattr(otlp, "_each_point", no)
    ab = [("__name__", "link_load_bps"), ("link", "A>B")]
    body = remote_write_body((ab, [(1.0, 1000), (2.0, 2000)]), (ab, [(3.0, 3000)]))
    assert [p.value for p in rw_decode(body).points] == [1.0, 2.0, 3.0]
    # an idle interface's 0 bit/s (no value on the wire) and a timestamp of 0
    body = remote_write_body((ab, [(0.0, 1000), (2.0, 2000)]), (ab, [(3.0, 0), (0.0, 0)]))
    got = [(p.ts, p.value) for p in rw_decode(body).points]
    assert got == [(1.0, 0.0), (2.0, 2.0), (0.0, 3.0), (0.0, 0.0)]
    got = otlp_decode(otlp_body({"host": "h"}, [({"link": "A>B"}, 4.0), ({}, 5.0)]))
    assert [p.value for p in got.points] == [4.0, 5.0]
    # hostmetrics-like: one metric of integers, one of doubles, each its own columns
    req = ExportMetricsServiceRequest()
    scope = req.resource_metrics.add().scope_metrics.add()
    ints = scope.metrics.add(name="ifHCOutOctets").sum
    ints.aggregation_temporality, ints.is_monotonic = 2, True
    ints.data_points.add(time_unix_nano=60 * 10**9, as_int=7)
    scope.metrics.add(name="link_load_bps").gauge.data_points.add(
        time_unix_nano=60 * 10**9, as_double=0.0
    )
    got = otlp_decode(req.SerializeToString())
    assert [(p.value, type(p.value)) for p in got.points] == [(7, int), (0.0, float)]
    from google.protobuf import json_format  # the JSON encoding reads the same columns

    got = otlp_decode(json_format.MessageToJson(req).encode(), wire="json")
    assert [(p.value, type(p.value)) for p in got.points] == [(7, int), (0.0, float)]


def test_otlp_a_value_given_twice_is_read_point_by_point() -> None:
    """Data point 0 carries as_double twice, data point 1 none: the columns would hold
    2 values for 2 points; the body is read point by point, and refused as the point
    without a value."""
    point = metrics_pb2.NumberDataPoint
    twice = point(time_unix_nano=60 * 10**9, as_double=1.0).SerializeToString()
    twice += point(as_double=2.0).SerializeToString()
    none = point(time_unix_nano=60 * 10**9).SerializeToString()
    with pytest.raises(otlp.Refused, match=r"data_points\[1\]: as_double or as_int is missing"):
        otlp_decode(_otlp_raw(twice, none))


FLOOD = 3_000  # distinct series


def test_series_cache_counts_bytes_and_drops_the_oldest_first() -> None:
    c = SeriesCache(cap=100)
    for k in range(10):
        c.put(k, k, 10)
    c.put(3, "again", 10)  # replaced: counted once, now the newest
    assert (len(c), c.nbytes) == (10, 100)
    c.put(10, 10, 30)  # past the cap: the oldest go until 50 bytes are left
    assert list(c) == [6, 7, 8, 9, 3, 10] and c.nbytes == 80 and c[3] == "again"
    c.clear()
    assert (len(c), c.nbytes) == (0, 0)


def test_a_flood_of_series_no_rule_names_leaves_every_cache_empty() -> None:
    for cache in (rw._SERIES, otlp._LABELS, lp._SERIES):
        cache.clear()
    hosts = [f"h{k}" for k in range(FLOOD)]
    d_rw = rw_decode(
        remote_write_body(*[([("__name__", "up"), ("instance", h)], [(1.0, 1000)]) for h in hosts])
    )
    d_otlp = otlp_decode(otlp_body({"job": "node"}, [({"host": h}, 1.0) for h in hosts], "up"))
    body = "\n".join(f"cpu,host={h} usage=1,link=2 60" for h in hosts).encode()
    d_lp = lp.parse(body, unit=lp.PRECISIONS_V2["s"], now=0.0, max_points=10_000, metrics=RULED)
    assert [len(d.points) for d in (d_rw, d_otlp, d_lp)] == [FLOOD, FLOOD, 2 * FLOOD]
    assert [dict(p.labels) for p in d_rw.points[:2]] == [{"instance": "h0"}, {"instance": "h1"}]
    assert {p.name for p in d_lp.points} == {"cpu_usage", "cpu_link"}
    for cache in (rw._SERIES, otlp._LABELS, lp._SERIES):
        assert (len(cache), cache.nbytes) == (0, 0)
    m = SeriesMap(DEFAULT_RULES)
    out = m.map([*d_rw.points, *d_otlp.points, *d_lp.points], latest=1e12)
    assert out.dropped == {"no_rule": 4 * FLOOD}
    assert not len(out.gauges) and not out.counters and not out.capacities
    assert (len(m._memo), m._memo.nbytes) == (0, 0)


CAP = 4_096  # bytes: a few dozen series of the flood below


def test_a_flood_of_ruled_series_stays_under_the_byte_cap(monkeypatch) -> None:
    caches = {name: SeriesCache(cap=CAP) for name in ("rw", "otlp", "lp")}
    monkeypatch.setattr(rw, "_SERIES", caches["rw"])
    monkeypatch.setattr(otlp, "_LABELS", caches["otlp"])
    monkeypatch.setattr(lp, "_SERIES", caches["lp"])
    links = [f"r{k}>r{k + 1}" for k in range(FLOOD)]
    first: dict[str, object] = {}
    for start in range(0, FLOOD, 500):
        batch = links[start : start + 500]
        d_rw = rw_decode(
            remote_write_body(
                *[([("__name__", "link_load_bps"), ("link", x)], [(1.0, 1000)]) for x in batch]
            )
        )
        d_otlp = otlp_decode(otlp_body({"job": "snmp"}, [({"link": x}, 1.0) for x in batch]))
        body = "\n".join(f"link,link={x} load_bps=1 60" for x in batch).encode()
        d_lp = lp.parse(body, unit=lp.PRECISIONS_V2["s"], now=0.0, max_points=1_000, metrics=RULED)
        for name, d in (("rw", d_rw), ("otlp", d_otlp), ("lp", d_lp)):
            assert [p.labels["link"] for p in d.points] == batch
            first.setdefault(name, d.points[0].labels)
        for cache in caches.values():
            assert 0 < cache.nbytes <= CAP
    sizes = {
        "rw": len,
        # a data point's attributes: the bytes of the whole field, as a plain request
        # is read (api.otlp._attributes_at), else a tuple of KeyValue bytes
        "otlp": lambda key: (
            sum(map(len, key[0]))
            + (len(key[1]) if isinstance(key[1], bytes) else sum(map(len, key[1])))
        ),
        "lp": len,
    }
    for name, cache in caches.items():
        assert len(cache) < FLOOD  # it has evicted
        assert cache.nbytes == sum(map(sizes[name], cache))  # the bytes of what it holds
    # after the eviction: the first series is decoded again (equal labels, a new
    # object), the last is still kept (the same object)
    again = rw_decode(
        remote_write_body(
            *[([("__name__", "link_load_bps"), ("link", x)], [(2.0, 2000)]) for x in links]
        )
    )
    assert [dict(p.labels) for p in again.points] == [{"link": x} for x in links]
    assert again.points[0].labels is not first["rw"]
    assert again.points[0].labels == first["rw"]
    last = rw_decode(
        remote_write_body(([("__name__", "link_load_bps"), ("link", links[-1])], [(3.0, 3000)]))
    )
    assert last.points[0].labels is again.points[-1].labels


def test_series_map_after_eviction_maps_as_an_unbounded_one() -> None:
    bounded, reference = SeriesMap(DEFAULT_RULES), SeriesMap(DEFAULT_RULES)
    bounded._memo = SeriesCache(cap=CAP)
    series = []
    for k in range(600):  # a counter, a gauge, a capacity and a series missing a label
        host = {"instance": f"r{k}", "ifName": f"xe-0/0/{k}"}
        series += [
            ("ifHCOutOctets", host),
            ("link_load_bps", {"link": f"a{k}>b{k}"}),
            ("ifHighSpeed", host),
            ("ifHCOutOctets", {"instance": f"r{k}"}),
        ]
    for round_ in range(3):  # the same series, same labels objects, in repeating order
        points = [Point(n, labels, 60.0 * (round_ + 1), 10 * round_ + 1) for n, labels in series]
        for start in range(0, len(points), 400):
            chunk = points[start : start + 400]
            got = bounded.map(chunk, latest=1e12)
            want = reference.map(chunk, latest=1e12)
            assert (got.gauges.rows(), got.counters, got.capacities, got.dropped) == (
                want.gauges.rows(),
                want.counters,
                want.capacities,
                want.dropped,
            )
            assert 0 < bounded._memo.nbytes <= CAP
    assert len(bounded._memo) < len(series) <= len(reference._memo)
