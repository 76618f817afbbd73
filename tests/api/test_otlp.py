"""POST /v1/metrics: OTLP/HTTP from the OpenTelemetry SDK's exporter, by hand in JSON
and protobuf, gzip, and every kind of bad input (nothing stored)."""

from __future__ import annotations

import gzip
import json
import time
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from sqlalchemy import Engine, text

from api.main import create_app
from linkcast.settings import Settings
from tests.api.test_metrics import moved, scrape
from tests.conftest import auth
from tests.db_proxy import DbProxy

URL = "/v1/metrics"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
NS = 1_000_000_000


def now_minute() -> int:
    """A whole minute ten minutes ago, in seconds: safely in the past on any clock."""
    return (int(time.time()) // 60 - 10) * 60


def stored(engine: Engine) -> list[tuple[str, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.name, extract(epoch FROM s.ts)::float8, s.value_bps FROM sample s"
                " JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
            )
        )
        return [(n, float(t), float(v)) for n, t, v in rows]


def nothing_stored(engine: Engine) -> bool:
    with engine.connect() as conn:
        n = [conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("link", "sample")]
        readings = conn.scalar(text("SELECT count(*) FROM counter_state WHERE value IS NOT NULL"))
    return n == [0, 0] and readings == 0


def samples(client: TestClient | httpx.Client, token: str, link: str) -> list[dict]:
    r = client.get(f"/api/v1/links/{link}/samples", headers=auth(token))
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- The OpenTelemetry SDK's OTLP/HTTP exporter against a live linkcast ---------------


class Recording(OTLPMetricExporter):
    """The real exporter; keeps what it exported and how that went, so the test knows
    the timestamps the SDK gave each collection."""

    def __init__(self, endpoint: str, token: str, compression: Compression) -> None:
        headers = {"authorization": f"Bearer {token}"}
        super().__init__(endpoint=endpoint, headers=headers, compression=compression, timeout=10)
        self.exports: list[tuple[object, MetricExportResult]] = []

    def export(self, metrics_data, timeout_millis=10_000, **kw):  # type: ignore[no-untyped-def]
        result = super().export(metrics_data, timeout_millis, **kw)
        self.exports.append((metrics_data, result))
        return result


def point_time(metrics_data: object, name: str, **attributes: str) -> int:
    """The time_unix_nano the SDK gave the data point of ``name`` with ``attributes``."""
    (t,) = [
        p.time_unix_nano
        for rm in metrics_data.resource_metrics  # type: ignore[attr-defined]
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
        if attributes.items() <= dict(p.attributes).items()
    ]
    return int(t)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_pushes_a_counter_and_a_gauge(live_api, tokens, clean_db, compression):
    """hostmetrics' `system.network.io` (a byte counter: 8 x delta / elapsed between two
    exports) on link {host.name}:{device}, and linkcast's own gauge `link_load_bps`."""
    exporter = Recording(live_api.url + URL, tokens["write"], compression)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"host.name": "h1"}), metric_readers=[reader])
    load = {"value": 1.2e9}

    def observe(_: CallbackOptions) -> list[Observation]:
        return [Observation(load["value"], {"link": "A>B"})]

    try:
        meter = provider.get_meter("test_otlp")
        io = meter.create_counter("system.network.io", unit="By")
        meter.create_observable_gauge("link_load_bps", [observe], unit="bit/s")
        tx, rx = (
            {"device": "eth0", "direction": "transmit"},
            {"device": "eth0", "direction": "receive"},
        )
        io.add(1_000, tx)
        io.add(7, rx)  # no rule takes direction=receive: dropped, told in partial_success
        assert provider.force_flush()
        io.add(5_000, tx)
        load["value"] = 1.5e9
        assert provider.force_flush()

        assert [result for _, result in exporter.exports] == [MetricExportResult.SUCCESS] * 2
        (first, _), (second, _) = exporter.exports
        t1, t2 = (point_time(x, "system.network.io", **tx) for x in (first, second))
        g1, g2 = (point_time(x, "link_load_bps") for x in (first, second))
        with httpx.Client(base_url=live_api.url) as client:
            counter = samples(client, tokens["read"], "h1:eth0")
            gauge = samples(client, tokens["read"], "A>B")
            links = client.get("/api/v1/links", headers=auth(tokens["read"])).json()
    finally:
        provider.shutdown()

    # the first reading is the counter's base; the second gives the rate between them
    assert len(counter) == 1
    assert epoch(counter[0]["ts"]) == pytest.approx(t2 / NS, abs=1e-6)
    # elapsed from the timestamps in seconds, as linkcast keeps them (float8)
    assert counter[0]["value_bps"] == pytest.approx(8 * 5_000 / (t2 / NS - t1 / NS), rel=1e-9)
    assert [(d["value_bps"], d["quality"]) for d in gauge] == [(1.2e9, "ok"), (1.5e9, "ok")]
    assert [epoch(d["ts"]) for d in gauge] == pytest.approx([g1 / NS, g2 / NS], abs=1e-6)
    assert sorted(d["name"] for d in links["data"]) == ["A>B", "h1:eth0"]


# -- By hand: the spec's JSON shape, protobuf, gzip -------------------------------------


def attrs(**kv: object) -> list[dict]:
    def value(v: object) -> dict:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": v}

    return [{"key": k.replace("_", "."), "value": value(v)} for k, v in kv.items()]


def io_sum(t: int, value: int, temporality: object = 2, **labels: str) -> dict:
    return {
        "name": "system.network.io",
        "unit": "By",
        "sum": {
            "aggregationTemporality": temporality,
            "isMonotonic": True,
            "dataPoints": [
                {
                    "asInt": str(value),
                    "startTimeUnixNano": str((t - 3600) * NS),
                    "timeUnixNano": str(t * NS),
                    "attributes": attrs(device="eth0", direction="transmit", **labels),
                }
            ],
        },
    }


def json_request(t: int, io_bytes: int) -> dict:
    """The spec's OTLP/JSON shape (opentelemetry-proto examples/metrics.json)."""
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": attrs(host_name="h1", service_name="collector")},
                "scopeMetrics": [
                    {
                        "scope": {"name": "hostmetricsreceiver", "version": "1.0.0"},
                        "metrics": [
                            io_sum(t, io_bytes, "AGGREGATION_TEMPORALITY_CUMULATIVE"),
                            # the data point's host.name wins over the resource's
                            io_sum(t, io_bytes * 2, 2, host_name="h2"),
                            {
                                "name": "link_load_bps",
                                "unit": "bit/s",
                                "description": "linkcast's own gauge",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "asDouble": 2.5e8,
                                            "timeUnixNano": str(t * NS),
                                            "attributes": attrs(link="A>B"),
                                        },
                                        {  # as_int, and an attribute that is not a string
                                            "asInt": "300000000",
                                            "timeUnixNano": str(t * NS),
                                            "attributes": attrs(link="C>D", up=True),
                                        },
                                        {  # a series gone: skipped, not an error
                                            "flags": 1,
                                            "timeUnixNano": str(t * NS),
                                            "attributes": attrs(link="E>F"),
                                        },
                                    ]
                                },
                                "futureField": {"ignored": True},
                            },
                            {
                                "name": "system.cpu.utilization",
                                "gauge": {
                                    "dataPoints": [{"asDouble": 0.5, "timeUnixNano": str(t * NS)}]
                                },
                            },
                            {
                                "name": "http.server.duration",
                                "histogram": {
                                    "aggregationTemporality": 2,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(t * NS),
                                            "count": "2",
                                            "sum": 3.0,
                                            "bucketCounts": ["1", "1"],
                                            "explicitBounds": [1.0],
                                        }
                                    ],
                                },
                            },
                            io_sum(t, 99, 1, host_name="h3"),  # a delta sum: dropped
                        ],
                    }
                ],
            }
        ]
    }


def test_json_by_hand_stores_and_tells_what_was_dropped(client, tokens, clean_db):
    t = now_minute()
    h = auth(tokens["write"]) | JSON
    r = client.post(URL, content=json.dumps(json_request(t, 1_000)), headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    partial = r.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "3"  # int64 as a string, as OTLP/JSON has it
    message = partial["errorMessage"]
    for told in ("system.cpu.utilization", "http.server.duration", "delta", "no [[series]] rule"):
        assert told in message, message

    # a minute later the counters have moved: 75,000 and 150,000 bytes in 60 s
    r = client.post(URL, content=json.dumps(json_request(t + 60, 76_000)), headers=h)
    assert r.status_code == 200, r.text
    assert stored(clean_db) == [
        ("A>B", t, 2.5e8),
        ("A>B", t + 60, 2.5e8),
        ("C>D", t, 3e8),
        ("C>D", t + 60, 3e8),
        ("h1:eth0", t + 60, 8 * 75_000 / 60),
        ("h2:eth0", t + 60, 8 * 150_000 / 60),
    ]


def protobuf_gauge(t: int, *values: float, name: str = "link_load_bps") -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "host.name", "h1"
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = name
    for i, v in enumerate(values):
        dp = metric.gauge.data_points.add()
        dp.time_unix_nano, dp.as_double = (t + 60 * i) * NS, v
        a = dp.attributes.add()
        a.key, a.value.string_value = "link", "A>B"
    return req.SerializeToString()


def test_protobuf_and_gzip_full_success_leaves_partial_success_unset(client, tokens, clean_db):
    t = now_minute()
    h = auth(tokens["write"]) | PROTOBUF
    r = client.post(URL, content=protobuf_gauge(t, 1e6), headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    assert not ExportMetricsServiceResponse.FromString(r.content).HasField("partial_success")

    # gzip; two members, as a concatenating sender may write them
    body = gzip.compress(protobuf_gauge(t + 60, 2e6)) + gzip.compress(b"")
    r = client.post(URL, content=body, headers=h | {"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    body = gzip.compress(json.dumps(json_request(t + 120, 5)).encode())
    r = client.post(
        URL, content=body, headers=auth(tokens["write"]) | JSON | {"Content-Encoding": "GZIP"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedDataPoints"] == "3"
    assert [(n, v) for n, _, v in stored(clean_db) if n == "A>B"] == [
        ("A>B", 1e6),
        ("A>B", 2e6),
        ("A>B", 2.5e8),
    ]


def test_a_histogram_only_request_is_a_partial_success_in_protobuf(client, tokens, clean_db):
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "rpc.duration"
    metric.summary.data_points.add(time_unix_nano=now_minute() * NS, count=1, sum=2.0)
    metric.summary.data_points.add(time_unix_nano=now_minute() * NS, count=1, sum=2.0)
    before = scrape(client)
    r = client.post(URL, content=req.SerializeToString(), headers=auth(tokens["write"]) | PROTOBUF)
    assert r.status_code == 200, r.text
    partial = ExportMetricsServiceResponse.FromString(r.content).partial_success
    assert partial.rejected_data_points == 2
    assert "summaries are not link loads (rpc.duration)" in partial.error_message
    assert nothing_stored(clean_db)
    # and /metrics counts them by the same reason
    dropped = ("linkcast_series_dropped_total", {"format": "otlp", "reason": "summary"})
    assert moved(before, scrape(client), dropped[0], **dropped[1]) == 2


# -- Bad input: the right status, a google.rpc.Status saying what, nothing stored ------


def status_of(r: httpx.Response) -> status_pb2.Status:
    if r.headers["content-type"] == "application/x-protobuf":
        return status_pb2.Status.FromString(r.content)
    body = r.json()
    return status_pb2.Status(code=body.get("code", 0), message=body["message"])


def with_counter(body: dict, t: int | None = None, value: int = 1_000) -> dict:
    """``body`` with a reading of counter h1:eth0 (by default one after the test's base,
    so that a refused request would move the counter's state if it leaked)."""
    reading = io_sum(now_minute() if t is None else t, value)
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].insert(0, reading)
    return body


def no_metrics() -> dict:
    return {
        "resourceMetrics": [
            {"resource": {"attributes": attrs(host_name="h1")}, "scopeMetrics": [{"metrics": []}]}
        ]
    }


def gauge_json(*values: object, t: int | None = None) -> dict:
    """A request with a counter reading, then gauge points (value None: no value)."""
    time_ns = str(now_minute() * NS if t is None else t)
    points = [
        ({} if v is None else {"asDouble": v})
        | {"timeUnixNano": time_ns, "attributes": attrs(link="A>B")}
        for v in values
    ]
    body = with_counter(no_metrics())
    metrics = body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    metrics.append({"name": "link_load_bps", "gauge": {"dataPoints": points}})
    return body


def as_protobuf(body: dict) -> bytes:
    """An OTLP/JSON request as binary protobuf."""
    return json_format.ParseDict(body, ExportMetricsServiceRequest()).SerializeToString()


BAD = {
    "corrupt protobuf": (PROTOBUF, b"\x0a\x05abc", "protobuf"),
    "corrupt JSON": (JSON, b'{"resourceMetrics": [', "not JSON"),
    "JSON of the wrong shape": (JSON, b'{"resourceMetrics": "x"}', "resourceMetrics"),
    "a JSON array": (JSON, b"[]", "not an object"),
    "JSON not UTF-8": (JSON, b'{"a": "\xff"}', "UTF-8"),
    "NaN": (
        JSON,
        json.dumps(gauge_json(1.0, "NaN")).encode(),
        "metrics[1] (link_load_bps) data_points[1]: link_load_bps: value nan is not a finite",
    ),
    "negative gauge": (JSON, json.dumps(gauge_json(-1.0)).encode(), "is negative"),
    "a time in the future": (
        JSON,
        json.dumps(gauge_json(1.0, t=(int(time.time()) + 86_400) * NS)).encode(),
        "in the future",
    ),
    "no time": (JSON, json.dumps(gauge_json(1.0, t=0)).encode(), "time_unix_nano is missing"),
    "no value": (
        PROTOBUF,
        as_protobuf(gauge_json(None)),
        "metrics[1] (link_load_bps) data_points[0]: as_double or as_int is missing",
    ),
    "a negative counter": (
        PROTOBUF,
        as_protobuf(with_counter(no_metrics(), value=-5)),
        "metrics[0] (system.network.io) data_points[0]: system.network.io: value -5 is negative",
    ),
}


#: decoded fine, refused as link loads: counted `invalid`; the rest do not decode
INVALID_VALUES = {"NaN", "negative gauge", "a time in the future", "a negative counter"}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_400_naming_it_and_stores_nothing(client, tokens, clean_db, case):
    ctype, body, says = BAD[case]
    h = auth(tokens["write"])
    # a counter base first: a refused request must not move it
    base = json.dumps(with_counter(no_metrics(), now_minute() - 600, 10))
    r = client.post(URL, content=base, headers=h | JSON)
    assert r.status_code == 200, r.text
    with clean_db.begin() as conn:
        before = conn.execute(text("SELECT link, value, ts FROM counter_state")).all()

    scraped = scrape(client)
    r = client.post(URL, content=body, headers=h | ctype)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == ctype["Content-Type"]
    # counted once, by the reason the other formats give it
    reason = "invalid" if case in INVALID_VALUES else "malformed"
    after = scrape(client)
    refused = "linkcast_push_requests_refused_total"
    assert moved(scraped, after, refused, format="otlp", reason=reason) == 1
    other = "malformed" if reason == "invalid" else "invalid"
    assert moved(scraped, after, refused, format="otlp", reason=other) == 0
    status = status_of(r)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert says in status.message, status.message
    with clean_db.begin() as conn:
        assert conn.execute(text("SELECT link, value, ts FROM counter_state")).all() == before
        assert conn.scalar(text("SELECT count(*) FROM sample")) == 0


def test_gzip_errors_and_encodings(client, tokens, clean_db):
    h = auth(tokens["write"]) | PROTOBUF
    good = gzip.compress(protobuf_gauge(now_minute(), 1.0))
    cases = [
        ({"Content-Encoding": "gzip"}, b"not gzip at all", 400, "not gzip"),
        ({"Content-Encoding": "gzip"}, good[: len(good) // 2], 400, "cut short"),
        ({"Content-Encoding": "gzip"}, good + b"trailing junk", 400, "not gzip"),
        ({"Content-Encoding": "br"}, good, 415, "Content-Encoding 'br'"),
        ({"Content-Type": "text/plain"}, protobuf_gauge(now_minute(), 1.0), 415, "text/plain"),
        ({"Content-Type": ""}, protobuf_gauge(now_minute(), 1.0), 415, "no Content-Type"),
    ]
    for extra, body, code, says in cases:
        r = client.post(URL, content=body, headers=h | extra)
        assert r.status_code == code, (extra, r.text)
        assert says in status_of(r).message, status_of(r).message
    assert nothing_stored(clean_db)


def test_limits_are_413_before_anything_is_stored(database_url, tmp_path, tokens, clean_db):
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, max_body_bytes=4096, max_batch_samples=3
    )
    h = auth(tokens["write"]) | PROTOBUF
    with TestClient(create_app(settings)) as c:
        t = now_minute()
        assert c.post(URL, content=protobuf_gauge(t, 1, 2, 3), headers=h).status_code == 200
        r = c.post(URL, content=protobuf_gauge(t + 600, 1, 2, 3, 4), headers=h)
        assert r.status_code == 413 and "more than 3 data points" in status_of(r).message
        r = c.post(URL, content=b"\x0a\x00" * 4000, headers=h)
        assert r.status_code == 413 and "exceeds 4096 bytes" in status_of(r).message
        bomb = gzip.compress(b"\x0a\x00" * 100_000)  # small on the wire, 200 kB inflated
        assert len(bomb) < 4096
        r = c.post(URL, content=bomb, headers=h | {"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "once decompressed" in status_of(r).message
    assert len(stored(clean_db)) == 3


def test_tokens_are_checked_and_answered_as_status(client, tokens, clean_db):
    body = protobuf_gauge(now_minute(), 1.0)
    r = client.post(URL, content=body, headers=PROTOBUF)
    assert r.status_code == 401
    assert status_of(r).code == code_pb2.UNAUTHENTICATED and "bearer" in status_of(r).message
    r = client.post(URL, content=body, headers=PROTOBUF | auth("not-a-token"))
    assert r.status_code == 401 and "invalid" in status_of(r).message
    r = client.post(URL, content=json.dumps(gauge_json(1.0)), headers=JSON | auth(tokens["read"]))
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"
    assert status_of(r).code == code_pb2.PERMISSION_DENIED and "write" in status_of(r).message
    assert nothing_stored(clean_db)


def test_database_down_is_a_503_with_retry_after(database_url, tmp_path, tokens, clean_db):
    proxy = DbProxy(database_url)
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path)
    t = now_minute()
    h = auth(tokens["write"]) | PROTOBUF
    try:
        with TestClient(create_app(settings)) as c:
            assert c.post(URL, content=protobuf_gauge(t, 1.0), headers=h).status_code == 200
            proxy.stop()
            r = c.post(URL, content=protobuf_gauge(t + 60, 2.0), headers=h)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"].isdigit()
            status = status_of(r)
            assert status.code == code_pb2.UNAVAILABLE and "retry" in status.message
            assert [v for _, _, v in stored(clean_db)] == [1.0]
            proxy.start()
            r = c.post(URL, content=protobuf_gauge(t + 60, 2.0), headers=h)
            assert r.status_code == 200, r.text
            assert [v for _, _, v in stored(clean_db)] == [1.0, 2.0]
    finally:
        proxy.stop()


def test_the_route_is_in_the_openapi_document(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"][URL]["post"]
    assert set(post["requestBody"]["content"]) == {"application/x-protobuf", "application/json"}
    assert {"400", "401", "413", "415", "503"} <= set(post["responses"])
