"""POST /api/v1/write (Prometheus remote write 1.0): payloads built from our protobuf
messages; storage, counters, staleness markers, and every kind of bad input.

The test with the real Prometheus and node_exporter is test_remote_write_prometheus.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence

import cramjam
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import remote_write as rw
from api.main import create_app
from linkcast.settings import Settings
from tests.api.test_metrics import metric
from tests.conftest import auth
from tests.db_proxy import DbProxy

URL = "/api/v1/write"
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "Prometheus/2.42.0",
}
IF = {"instance": "r1", "ifName": "xe-0/0/1"}


def series(name: str | None, labels: dict[str, str], samples: Iterable[tuple[int, float]]):
    """A TimeSeries: ``samples`` are (ms after T0, value); labels sorted as senders do."""
    everything = ({"__name__": name} if name is not None else {}) | labels
    return rw.TimeSeries(
        labels=[rw.Label(name=k, value=v) for k, v in sorted(everything.items())],
        samples=[rw.Sample(value=v, timestamp=T0_MS + ms) for ms, v in samples],
    )


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def request(*timeseries, metadata: Sequence = ()) -> bytes:
    return snappy(rw.WriteRequest(timeseries=timeseries, metadata=metadata).SerializeToString())


def write(client: TestClient, token: str | None, body: bytes, headers: dict | None = None):
    """POST ``body`` as Prometheus does; ``headers`` replace its own ("" removes one)."""
    h = HEADERS | (auth(token) if token else {}) | (headers or {})
    return client.post(URL, content=body, headers={k: v for k, v in h.items() if v})


def pushed(r) -> dict:
    assert r.status_code == 204, r.text
    assert r.content == b""
    return json.loads(r.headers["x-linkcast-pushed"])


def stored(engine: Engine) -> list[tuple[str, float, float]]:
    """(link, seconds after T0, bit/s) of every sample."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.name, extract(epoch FROM s.ts) * 1000 - :t0, s.value_bps FROM sample s"
                " JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
            ),
            {"t0": T0_MS},
        )
        return [(name, float(ms) / 1000, v) for name, ms, v in rows]


def nothing_stored(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not any(
            conn.scalar(text(f"SELECT count(*) FROM {t}"))
            for t in ("link", "sample", "counter_state")
        )


def test_gauges_are_stored_in_bit_per_second(client, tokens, clean_db):
    body = request(
        series("link_load_bps", {"link": "A>B"}, [(0, 1.5e9), (15_000, 1.6e9), (30_000, 0.0)]),
        series("link_load_bps", {"link": "r1:xe-0/0/1"}, [(0, 2.5)]),
    )
    info = pushed(write(client, tokens["write"], body))
    assert info["samples"] == 4 and info["stored"] == 4 and info["dropped"] == {}
    assert stored(clean_db) == [
        ("A>B", 0.0, 1.5e9),
        ("A>B", 15.0, 1.6e9),
        ("A>B", 30.0, 0.0),
        ("r1:xe-0/0/1", 0.0, 2.5),
    ]
    r = client.get("/api/v1/links/A>B/samples", headers=auth(tokens["read"]))
    assert [d["value_bps"] for d in r.json()["data"]] == [1.5e9, 1.6e9, 0.0]
    # The same request again (a sender's retry) changes nothing.
    pushed(write(client, tokens["write"], body))
    assert len(stored(clean_db)) == 4


def test_counters_become_rates_a_reset_gives_no_sample_and_ifhighspeed_is_capacity(
    client, tokens, clean_db
):
    h = tokens["write"]
    first = request(
        series("ifHCOutOctets", IF, [(0, 1e6), (10_000, 1e6 + 1.25e9)]),
        series("ifHighSpeed", IF, [(0, 10_000.0)]),  # Mbit/s
    )
    info = pushed(write(client, h, first))
    assert info["counter_events"] == {"baseline": 1} and info["capacities"] == 1
    assert stored(clean_db) == [("r1:xe-0/0/1", 10.0, 1e9)]  # 8 x 1.25e9 B / 10 s
    link = client.get("/api/v1/links", headers=auth(tokens["read"])).json()["data"][0]
    assert link["capacity_bps"] == 1e10

    # The router reboots: its counter restarts near 0. That reading is a new base and
    # gives no sample; the next one is a rate from it. Never a spike.
    then = request(series("ifHCOutOctets", IF, [(20_000, 5e3), (30_000, 5e3 + 2.5e8)]))
    info = pushed(write(client, h, then))
    assert info["counter_events"] == {"reset": 1} and info["stored"] == 1
    assert stored(clean_db) == [("r1:xe-0/0/1", 10.0, 1e9), ("r1:xe-0/0/1", 30.0, 2e8)]


def test_staleness_markers_are_skipped_and_a_counter_spans_them(client, tokens, clean_db):
    stale = rw.stale_nan()
    body = request(
        series("link_load_bps", {"link": "A>B"}, [(0, 1.0), (1000, stale), (2000, 3.0)]),
        series(
            "node_network_transmit_bytes_total",
            {"instance": "h:9100", "device": "eth0", "job": "node"},
            [(0, 1000.0), (1000, stale), (2000, stale), (5000, 6000.0)],
        ),
    )
    info = pushed(write(client, tokens["write"], body))
    assert info["samples"] == 7 and info["dropped"] == {"staleness_marker": 3}
    assert stored(clean_db) == [
        ("A>B", 0.0, 1.0),
        ("A>B", 2.0, 3.0),
        ("h:9100:eth0", 5.0, 8 * 5000 / 5),  # the mean over the exporter's absence
    ]


def test_series_that_are_not_link_loads_are_counted_and_dropped_never_refused(
    client, tokens, clean_db
):
    node = {"instance": "h:9100", "job": "node"}
    body = request(
        series("up", node, [(0, 1.0)]),
        series("go_gc_duration_seconds", node | {"quantile": "0.5"}, [(0, math.nan)]),
        series("node_timex_offset_seconds", node, [(0, -0.002)]),
        series("node_network_speed_bytes", node | {"device": "eth0"}, [(0, -125000.0)]),
        series("link_load_bps", {"job": "x"}, [(0, 1.0)]),  # no `link` label
        series("link_load_bps", {"link": "A>\x00"}, [(0, 1.0)]),  # a name with a NUL
        series("link_load_bps", {"link": "A>B"}, [(0, 7.0)]),
        metadata=[rw.MetricMetadata(type=1, metric_family_name="up", help="h", unit="")],
    )
    info = pushed(write(client, tokens["write"], body))
    dropped = {"no_rule": 3, "unknown_capacity": 1, "missing_label": 1, "bad_link_name": 1}
    assert info["dropped"] == dropped
    assert stored(clean_db) == [("A>B", 0.0, 7.0)]
    link = client.get("/api/v1/links", headers=auth(tokens["read"])).json()["data"]
    assert [x["name"] for x in link] == ["A>B"]


def test_a_metadata_only_request_is_accepted(client, tokens, clean_db):
    meta = [rw.MetricMetadata(type=2, metric_family_name="link_load_bps", help="load", unit="")]
    info = pushed(write(client, tokens["write"], request(metadata=meta)))
    assert info["samples"] == 0 and nothing_stored(clean_db)


GOOD = series("link_load_bps", {"link": "A>B"}, [(0, 1.0)])
COUNTER = series("ifHCOutOctets", IF, [(0, 1e6), (10_000, 2e6)])
VALID = request(GOOD, COUNTER)


def _corrupt(body: bytes) -> bytes:
    header = len(body) - len(body.lstrip(bytes(range(0x80, 0x100))))  # varint bytes
    return body[: header + 1] + b"\x01\x00" + body[header + 3 :]  # a copy from offset 0


BAD_BODIES = {
    "truncated snappy": (VALID[:-7], 400, "corrupt or truncated snappy"),
    "corrupt snappy": (_corrupt(VALID), 400, "corrupt or truncated snappy"),
    "cut length header": (b"\xff\xff", 400, "length header"),
    "snappy framed, not a block": (
        bytes(cramjam.snappy.compress(bytes(cramjam.snappy.decompress_raw(VALID)))),
        400,
        "a snappy framed stream: remote write sends snappy's block format",
    ),
    "empty body": (b"", 400, "empty body"),
    "garbage protobuf": (snappy(b"\x0a\xff\x01garbage"), 400, "undecodable protobuf"),
    "remote write 2.0 body": (snappy(b"\x22\x01a\x2a\x00"), 400, "unknown top-level field"),
    "NaN": (
        request(GOOD, COUNTER, series("link_load_bps", {"link": "C>D"}, [(0, math.nan)])),
        400,
        'series link_load_bps{link="C>D"}: sample at 1767225600.000 s: value nan is not a finite',
    ),
    "infinity": (
        request(GOOD, COUNTER, series("link_load_bps", {"link": "C>D"}, [(0, math.inf)])),
        400,
        'link_load_bps{link="C>D"}: sample at 1767225600.000 s: value inf is not a finite',
    ),
    "negative": (
        request(COUNTER, series("ifHCOutOctets", IF | {"ifName": "et2"}, [(0, -1.0)])),
        400,
        'ifHCOutOctets{ifName="et2", instance="r1"}: sample at 1767225600.000 s: value -1.0 is'
        " negative",
    ),
    "missing __name__": (
        request(GOOD, series(None, {"link": "C>D"}, [(0, 1.0)])),
        400,
        'series {link="C>D"} has no __name__ label',
    ),
    "label twice": (
        snappy(
            rw.WriteRequest(
                timeseries=[
                    GOOD,
                    rw.TimeSeries(
                        labels=[
                            rw.Label(name="__name__", value="link_load_bps"),
                            rw.Label(name="link", value="C>D"),
                            rw.Label(name="link", value="E>F"),
                        ],
                        samples=[rw.Sample(value=1.0, timestamp=T0_MS)],
                    ),
                ]
            ).SerializeToString()
        ),
        400,
        "label(s) link given more than once",
    ),
    "timestamp in the future": (
        request(COUNTER, series("link_load_bps", {"link": "C>D"}, [(10**12, 1.0)])),
        400,
        'link_load_bps{link="C>D"}: sample at 2767225600.000 s: timestamp 2767225600.0 s is in'
        " the future",
    ),
    # seconds where remote write's milliseconds belong: 1970-01-21, no hint at line protocol
    "timestamp in seconds": (
        request(GOOD, series("link_load_bps", {"link": "C>D"}, [(T0_MS // 1000 - T0_MS, 1.0)])),
        400,
        'link_load_bps{link="C>D"}: sample at 1767225.600 s: timestamp 1970-01-21T10:53:45.600000'
        "+00:00 is before 2000, too old for a link load: a timestamp in the wrong unit (seconds"
        " sent where the format expects ms or ns)?",
    ),
    "timestamp before 1970": (
        request(GOOD, series("link_load_bps", {"link": "C>D"}, [(-T0_MS - 1000, 1.0)])),
        400,
        "is before 1970",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_data_is_400_naming_it_and_nothing_is_stored(client, tokens, clean_db, case):
    body, status, message = BAD_BODIES[case]
    r = write(client, tokens["write"], body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()
    assert nothing_stored(clean_db)
    # The same series sent right afterwards are stored: the counter starts from its first
    # reading, as if the refused request had never been.
    info = pushed(write(client, tokens["write"], VALID))
    assert info["counter_events"] == {"baseline": 1} and info["stored"] == 2


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Content-Type": "application/json"}, "Content-Type application/json is not supported"),
        ({"Content-Type": ""}, "Content-Type none is not supported; expected application/x-pr"),
        (
            {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
            "only remote write 1.0 is taken",
        ),
        ({"Content-Encoding": "gzip"}, "Content-Encoding gzip is not supported; expected snappy"),
        ({"Content-Encoding": ""}, "Content-Encoding none is not supported; expected snappy"),
    ],
)
def test_other_media_types_are_415_naming_what_is_expected(
    client, tokens, clean_db, headers, message
):
    r = write(client, tokens["write"], VALID, headers)
    assert r.status_code == 415, r.text
    assert message in r.json()["detail"]
    assert nothing_stored(clean_db)


def test_1_0_with_its_proto_parameter_and_no_version_header_is_accepted(client, tokens, clean_db):
    r = write(
        client,
        tokens["write"],
        VALID,
        {
            "Content-Type": "application/x-protobuf; proto=prometheus.WriteRequest",
            "X-Prometheus-Remote-Write-Version": "",
        },
    )
    assert pushed(r)["stored"] == 2


def test_no_token_is_401_and_a_read_token_403(client, tokens, clean_db):
    r = write(client, None, VALID)
    assert r.status_code == 401 and "bearer" in r.json()["detail"]
    r = write(client, tokens["read"], VALID)
    assert r.status_code == 403 and "write" in r.json()["detail"]
    assert nothing_stored(clean_db)


def test_too_large_is_413_compressed_decompressed_or_in_samples(database_url, tmp_path, tokens):
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, max_body_bytes=4096, max_batch_samples=100
    )
    many = series("link_load_bps", {"link": "A>B"}, [(i * 1000, float(i)) for i in range(101)])
    # A snappy block that declares 2 GiB: refused from its 6-byte header, never inflated.
    bomb = b"\x80\x80\x80\x80\x08" + b"\x00"
    incompressible = snappy(bytes(range(256)) * 40)  # over 4096 bytes as sent
    cases = {
        "over": (incompressible, "body of"),
        "bomb": (bomb, "decompressed body of 2147483648 bytes exceeds 4096 bytes"),
        "inflates": (snappy(b"\x00" * 5000), "decompressed body of 5000 bytes exceeds 4096"),
        "samples": (request(many), "101 samples in one request; at most 100"),
    }
    with TestClient(create_app(settings)) as c:
        for name, (body, message) in cases.items():
            r = write(c, tokens["write"], body)
            assert r.status_code == 413, (name, r.text)
            assert message in r.json()["detail"], (name, r.json())
        pushed(write(c, tokens["write"], VALID))  # still fine under the bounds


def test_database_outage_is_503_with_retry_after_then_the_retry_stores(
    database_url, tmp_path, clean_db, tokens
):
    proxy = DbProxy(database_url)
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as c:
        pushed(write(c, tokens["write"], request(COUNTER)))  # warms the pool and token cache
        later = request(
            series("ifHCOutOctets", IF, [(20_000, 3e6)]),
            series("link_load_bps", {"link": "A>B"}, [(0, 1.0)]),
        )
        proxy.stop()
        r = write(c, tokens["write"], later)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit() and "retry" in r.json()["detail"]
        proxy.start()
        info = pushed(write(c, tokens["write"], later))  # Prometheus retries a 5xx as it was
        assert info["stored"] == 2 and info["counter_events"] == {}
        proxy.stop()
    assert stored(clean_db) == [
        ("A>B", 0.0, 1.0),
        ("r1:xe-0/0/1", 10.0, 8e5),
        ("r1:xe-0/0/1", 20.0, 8e5),
    ]


def test_openapi_documents_the_route(client):
    op = client.get("/openapi.json").json()["paths"]["/api/v1/write"]["post"]
    assert op["requestBody"]["content"] == {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"204", "400", "401", "403", "413", "415", "503"} <= set(op["responses"])
    assert "x-linkcast-pushed" in orjson.dumps(op["responses"]["204"]).decode().lower()
    assert "Content-Encoding" in {p["name"] for p in op["parameters"]}


def test_pushes_and_refusals_are_counted_on_metrics(client, tokens, clean_db):
    names = {
        "accepted": ("linkcast_samples_accepted_total", {}),
        "stale": ("linkcast_series_dropped_total", {"reason": "staleness_marker"}),
        "no_rule": ("linkcast_series_dropped_total", {"reason": "no_rule"}),
        "baseline": ("linkcast_counter_readings_total", {"event": "baseline"}),
        "malformed": ("linkcast_push_requests_refused_total", {"reason": "malformed"}),
        "invalid": ("linkcast_push_requests_refused_total", {"reason": "invalid"}),
        "invalid_samples": ("linkcast_samples_refused_total", {"reason": "invalid"}),
        "unsupported": ("linkcast_push_requests_refused_total", {"reason": "unsupported"}),
        "unauthorized": ("linkcast_push_requests_refused_total", {"reason": "unauthorized"}),
    }

    def counts() -> dict[str, float]:
        return {k: metric(client, n, format="remote_write", **lb) for k, (n, lb) in names.items()}

    before = counts()
    h = tokens["write"]
    ok = request(
        COUNTER,
        series("link_load_bps", {"link": "A>B"}, [(0, 1.0), (1000, rw.stale_nan())]),
        series("up", {"job": "node"}, [(0, 1.0)]),
    )
    pushed(write(client, h, ok))
    assert write(client, h, BAD_BODIES["NaN"][0]).status_code == 400  # 4 samples
    assert write(client, h, BAD_BODIES["corrupt snappy"][0]).status_code == 400
    assert write(client, h, VALID, {"Content-Encoding": "gzip"}).status_code == 415
    assert write(client, None, VALID).status_code == 401
    delta = {k: v - before[k] for k, v in counts().items()}
    assert delta == {
        "accepted": 2,  # the gauge and one counter rate
        "stale": 1,
        "no_rule": 1,
        "baseline": 1,
        "malformed": 1,
        "invalid": 1,
        "invalid_samples": 4,
        "unsupported": 1,
        "unauthorized": 1,
    }


def test_a_nul_in_a_counter_series_label_is_stored_not_a_500(client, tokens, clean_db):
    """A NUL in a label that is not the link's (an ifAlias) used to reach PostgreSQL in
    the counter's identity and come back as a 500, which Prometheus retries for ever:
    the shard stuck. Now it is escaped, and the series gives its rates."""
    labels = {**IF, "ifAlias": "core\x00uplink"}
    h = tokens["write"]
    info = pushed(write(client, h, request(series("ifHCOutOctets", labels, [(0, 1e6)]))))
    assert info["counter_events"] == {"baseline": 1}
    pushed(write(client, h, request(series("ifHCOutOctets", labels, [(10_000, 1e6 + 1.25e9)]))))
    assert stored(clean_db) == [("r1:xe-0/0/1", 10.0, 1e9)]


def test_a_transaction_the_database_rolled_back_is_503_saying_so(
    client, tokens, clean_db, monkeypatch
):
    """A deadlock (or serialization failure, SQLSTATE class 40) rolls the push back: a
    503 with Retry-After that says so, not "database unreachable" while it is up.
    The database's error is raised where the push is stored (fault injection; the rest
    runs on the real database)."""
    import psycopg

    def deadlocked(*args, **kwargs):
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    monkeypatch.setattr("api.push.write_series", deadlocked)
    r = write(client, tokens["write"], VALID)
    assert r.status_code == 503 and r.headers["retry-after"].isdigit(), r.text
    assert r.json()["detail"].startswith("database conflict (a deadlock")
    assert nothing_stored(clean_db)
