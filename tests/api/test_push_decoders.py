"""The push decoders hand over what their libraries read, each series' labels one object.

Line protocol: a series' tags are kept from line to line and request to request
(api/line_protocol.py); on generated lines (plain ones, escapes, quotes, booleans,
out-of-range numbers, a field twice, odd whitespace, comments) parse() gives what
line-protocol-parser alone gives, the second time as the first. Remote write and OTLP:
a series' labels are decoded once and found again by their bytes; the same series in
a later request gives the same labels object, another series (another resource, one
attribute changed) its own.
"""

from __future__ import annotations

from fractions import Fraction

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from line_protocol_parser import LineFormatError, parse_line
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from api import line_protocol as lp
from api import otlp
from api import remote_write as rw

SERIES = [
    b"link_load,link=A>B",
    b"interface,agent_host=10.0.0.1,ifName=xe-0/0/1",
    b"m",
    b"m,z=1,a=2",  # tags out of order: the parser sorts them
    b"m,a=b\\ c",  # an escape: never remembered
    b"m,a=",  # not line protocol
    b" m",  # leading space
    b"#m",  # a comment
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
        parsed = lp.parse(body, unit=unit, now=now, max_points=10_000)
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
@given(lines=st.lists(line, min_size=1, max_size=6))
def test_line_protocol_reads_as_the_parser_reads(lines: list[bytes]) -> None:
    unit, now = lp.PRECISIONS_V2["ms"], 1_700_000_000.5
    body = b"\n".join(lines)
    lp._TAGS.clear()
    first = decoded(body, unit, now)  # learns the series
    second = decoded(body, unit, now)  # finds their tags again
    expected = reference(body, unit, now)
    assert first == expected
    assert second == expected


def test_a_known_series_keeps_one_tags_object_across_requests() -> None:
    unit = lp.PRECISIONS_V2["s"]
    a = lp.parse(b"link_load,link=A>B bps=1 60\n", unit=unit, now=0.0, max_points=10)
    b = lp.parse(
        b"link_load,link=A>B bps=2 120\nlink_load,link=B>C bps=3 120",
        unit=unit,
        now=0.0,
        max_points=10,
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
    first = rw.decode(remote_write_body((ab, [(1.0, 1000)])), limit=1 << 20, max_samples=10)
    second = rw.decode(
        remote_write_body((bc, [(2.0, 2000)]), (ab, [(3.0, 3000), (4.0, 4000)])),
        limit=1 << 20,
        max_samples=10,
    )
    assert [(p.name, dict(p.labels), p.ts, p.value) for p in second.points] == [
        ("link_load_bps", {"link": "B>C"}, 2.0, 2.0),
        ("link_load_bps", {"link": "A>B"}, 3.0, 3.0),
        ("link_load_bps", {"link": "A>B"}, 4.0, 4.0),
    ]
    assert second.points[1].labels is first.points[0].labels


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


def otlp_body(resource: dict[str, str], points: list[tuple[dict[str, str], float]]) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in resource.items():
        rm.resource.attributes.add(key=k).value.string_value = v
    metric = rm.scope_metrics.add().metrics.add(name="link_load_bps")
    for attrs, value in points:
        dp = metric.gauge.data_points.add(time_unix_nano=60 * 10**9, as_double=value)
        for k, v in attrs.items():
            dp.attributes.add(key=k).value.string_value = v
    return req.SerializeToString()


def test_otlp_labels_are_learnt_once_per_resource_and_attributes() -> None:
    def decode(body: bytes) -> otlp.Decoded:
        return otlp.decode(
            body, wire="protobuf", content_encoding=None, limit=1 << 20, max_points=10
        )

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
    again = otlp.decode(body, wire="json", content_encoding=None, limit=1 << 20, max_points=10)
    assert again.points[0].labels is first.points[0].labels
    assert again.points[0].value == 5.0
