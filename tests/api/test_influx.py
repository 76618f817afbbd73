"""InfluxDB line protocol: POST /api/v2/write and /write (issue 13).

The real ``influxdb-client`` writes to a live server; Telegraf's SNMP interface table
is sent as Telegraf's influx serializer writes it; every refusal is checked to leave
the database as it was.
"""

from __future__ import annotations

import base64
import gzip
import time
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from sqlalchemy import Engine, text

from api.main import create_app
from api.routes import influx
from linkcast.settings import Settings
from tests.api.test_metrics import metric
from tests.conftest import auth
from tests.db_proxy import DbProxy

V2 = "/api/v2/write"
HOUR = 3600
T0 = (int(time.time()) // HOUR - 2) * HOUR  # two hours ago, on the hour
NS = 10**9


def samples(engine: Engine) -> list[tuple[str, float, float, str]]:
    """(link, ts seconds, bit/s, quality) of every stored sample."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.name, extract(epoch FROM s.ts)::float8, s.value_bps, s.quality"
                " FROM sample s JOIN link l ON l.id = s.link_id ORDER BY l.name, s.ts"
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def stored_anything(engine: Engine) -> tuple[int, int, int]:
    """Links, samples and counter readings in the database."""
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0)
            for t in ("link", "sample", "counter_state")
        )


def token_auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


# --- the real client, through its own write API, to a live server -------------------


@pytest.mark.parametrize("gzip_on", [False, True], ids=["plain", "gzip"])
def test_influxdb_client_writes_and_reads_back(live_api, tokens, clean_db, gzip_on, monkeypatch):
    unpacked: list[int] = []  # a spy on the route's gunzip: the client did send gzip
    real = influx.gunzip
    monkeypatch.setattr(influx, "gunzip", lambda d, limit: unpacked.append(1) or real(d, limit))
    points = [
        Point("link_load").tag("link", "ATLA>HSTN").field("bps", 1.25e9).time(T0 + i * 60, "s")
        for i in range(3)
    ] + [
        # a string field of the same point is no load: left out, not an error
        Point("link_load")
        .tag("link", "HSTN>ATLA")
        .field("bps", 7e8)
        .field("note", 'maintenance, "planned"')
        .time((T0 + 30) * 1000, WritePrecision.MS),
    ]
    with InfluxDBClient(
        url=live_api.url, token=tokens["write"], org="noc", enable_gzip=gzip_on
    ) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write("links", record=points[:3], write_precision=WritePrecision.S)
        write.write("links", record=points[3:], write_precision=WritePrecision.MS)

    got = httpx.get(f"{live_api.url}/api/v1/links/ATLA>HSTN/samples", headers=auth(tokens["read"]))
    assert got.status_code == 200, got.text
    assert got.json()["data"] == [
        {
            "ts": datetime.fromtimestamp(T0 + i * 60, UTC).isoformat().replace("+00:00", "Z"),
            "value_bps": 1.25e9,
            "quality": "ok",
        }
        for i in range(3)
    ]
    assert len(unpacked) == (2 if gzip_on else 0)
    assert samples(clean_db)[-1] == ("HSTN>ATLA", float(T0 + 30), 7e8, "ok")


def test_influxdb_client_sees_influx_errors(live_api, tokens, clean_db):
    bad = Point("link_load").tag("link", "A>B").field("bps", -3.0).time(T0, "s")
    with InfluxDBClient(url=live_api.url, token=tokens["write"], org="noc") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        with pytest.raises(ApiException) as exc:
            write.write("links", record=[bad], write_precision=WritePrecision.S)
    assert exc.value.status == 400
    assert "line 1" in exc.value.body and "negative" in exc.value.body
    with InfluxDBClient(url=live_api.url, token="lc_wrong", org="noc") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        with pytest.raises(ApiException) as exc:
            write.write("links", record="link_load,link=A>B bps=1", write_precision="s")
    assert exc.value.status == 401
    assert stored_anything(clean_db) == (0, 0, 0)


# --- Telegraf's inputs.snmp interface table ------------------------------------------


def snmp_poll(ts: int, out_octets: int, in_octets: int = 5) -> bytes:
    """One poll of an interface as Telegraf's influx serializer writes it (ns)."""
    return (
        "interface,agent_host=10.0.0.1,host=telegraf1,ifIndex=3,ifName=xe-0/0/1 "
        f'ifDescr="Uplink to \\"core\\"",ifHCInOctets={in_octets}u,'
        f"ifHCOutOctets={out_octets}u,ifHighSpeed=10000i,ifOperStatus=1i {ts * NS}\n"
        "# a comment, then a blank line\n\n"
        "interface,agent_host=10.0.0.1,host=telegraf1,ifIndex=1,ifName=lo0 "
        f"ifHCOutOctets=42u,ifHighSpeed=0i {ts * NS}\n"
    ).encode()


def test_telegraf_snmp_counters_give_rates_wrap_and_reset(client, tokens, clean_db):
    h = token_auth(tokens["write"])
    link = "10.0.0.1:xe-0/0/1"
    start = 2**64 - 7_500_000_000  # 64-bit counter two polls before its wrap

    def uplink() -> list[tuple[str, float, float, str]]:
        return [s for s in samples(clean_db) if s[0] == link]

    def poll(ts: int, octets: int) -> None:
        r = client.post(
            V2, params={"org": "noc", "bucket": "snmp"}, content=snmp_poll(ts, octets), headers=h
        )
        assert r.status_code == 204, r.text
        assert r.content == b""

    poll(T0, start)
    assert uplink() == []  # a first reading is a baseline, no rate yet
    poll(T0 + 30, start + 3_750_000_000)  # 8 x 3.75e9 / 30 s
    assert uplink() == [(link, T0 + 30.0, 1e9, "ok")]
    links = client.get("/api/v1/links", headers=auth(tokens["read"])).json()["data"]
    # ifHighSpeed 10000 Mbit/s; lo0 reports 0, a speed it does not know: no capacity
    assert {d["name"]: d["capacity_bps"] for d in links} == {link: 1e10, "10.0.0.1:lo0": None}

    poll(T0 + 60, start + 3_750_000_000 + 4_500_000_000 - 2**64)  # wrapped past 2**64 - 1
    assert uplink()[-1] == (link, T0 + 60.0, 1.2e9, "ok")

    poll(T0 + 90, 12_345)  # the router rebooted: no sample, no spike
    assert len(uplink()) == 2
    poll(T0 + 120, 12_345 + 375_000_000)
    assert uplink() == [
        (link, T0 + 30.0, 1e9, "ok"),
        (link, T0 + 60.0, 1.2e9, "ok"),
        (link, T0 + 120.0, 1e8, "ok"),
    ]
    assert {s[2] for s in samples(clean_db) if s[0] != link} == {0.0}  # lo0: 42 octets, always


# --- precision, the v1 route, timestamps --------------------------------------------


def test_every_precision_stores_the_same_instant(client, tokens, clean_db):
    ts = T0 + 0.25  # a quarter second: representable from ms down
    for precision, stamp in [("ms", (T0 * 1000) + 250), ("us", T0 * 10**6 + 250_000)]:
        r = client.post(
            V2,
            params={"precision": precision},
            content=f"link_load,link={precision} bps=1 {stamp}",
            headers=token_auth(tokens["write"]),
        )
        assert r.status_code == 204, r.text
    r = client.post(
        V2,
        content=f"link_load,link=ns bps=1 {T0 * NS + 250_000_000}",
        headers=auth(tokens["write"]),
    )  # ns is the default; Bearer works as well as Token
    assert r.status_code == 204, r.text
    r = client.post(
        V2,
        params={"precision": "s"},
        content=f"link_load,link=s bps=1 {T0}",
        headers=token_auth(tokens["write"]),
    )
    assert r.status_code == 204, r.text
    got = {name: stamp for name, stamp, _, _ in samples(clean_db)}
    assert got == {"ms": ts, "us": ts, "ns": ts, "s": float(T0)}


def test_v1_write_with_its_precisions_and_credentials(client, tokens, clean_db):
    token = tokens["write"]
    basic = base64.b64encode(f"telegraf:{token}".encode()).decode()
    cases = [
        ({"db": "telegraf", "precision": "s"}, {"Authorization": f"Basic {basic}"}, T0),
        ({"db": "telegraf", "precision": "m", "u": "x", "p": token}, {}, T0 // 60),
        ({"precision": "h"}, token_auth(token), T0 // HOUR),
        ({"precision": "n"}, auth(token), T0 * NS),
    ]
    for i, (params, headers, stamp) in enumerate(cases):
        body = f"link_load,link=v1-{i} bps=2e9 {stamp}\n".encode()
        r = client.post("/write", params=params, content=body, headers=headers)
        assert r.status_code == 204, (params, r.text)
    assert samples(clean_db) == [(f"v1-{i}", float(T0), 2e9, "ok") for i in range(4)]
    r = client.post("/write", params={"u": "x", "p": "lc_wrong"}, content=b"link_load,link=x bps=1")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    r = client.post(V2, params={"p": token}, content=b"link_load,link=x bps=1")
    assert r.status_code == 401, "the v2 API takes no token in its query string"
    assert "Authorization: Token" in r.json()["message"]


def test_a_point_without_timestamp_is_stored_at_the_servers_now(client, tokens, clean_db):
    before = time.time()
    r = client.post(
        V2,
        params={"precision": "s"},
        content=b"link_load,link=now bps=5",
        headers=auth(tokens["write"]),
    )
    after = time.time()
    assert r.status_code == 204, r.text
    [(_, ts, value, _)] = samples(clean_db)
    assert value == 5.0
    assert int(before) <= ts <= after and ts == int(ts)  # truncated to the precision


def test_escapes_tags_and_fields(client, tokens, clean_db):
    lines = [
        # an escaped space, comma and equals sign in a tag value
        r"link_load,link=A\ B\,C\=D bps=1 1767225600",
        # a backslash before anything else: literal
        r"link_load,link=Intel\Ethernet bps=2 1767225600",
        r"link_load,link=q,note=x bps=3,label=" + '"a \\"quoted\\" \\\\ string" 1767225600',
        # not the measurement link_load: no rule, dropped
        r"link\_load,link=other bps=4 1767225600",
        "link_load,link=big bps=1e9,flag=true 1767225600",
    ]
    r = client.post(
        V2, params={"precision": "s"}, content="\n".join(lines), headers=auth(tokens["write"])
    )
    assert r.status_code == 204, r.text
    assert {(n, v) for n, _, v, _ in samples(clean_db)} == {
        ("A B,C=D", 1.0),
        (r"Intel\Ethernet", 2.0),
        ("q", 3.0),
        ("big", 1e9),
    }


def test_unsigned_counters_keep_all_64_bits(client, tokens, clean_db):
    """A float would round 2**64 - 1001 to 2**64: the rate would be off by far."""
    h = auth(tokens["write"])
    for ts, octets in [(T0, 2**64 - 1001), (T0 + 10, 2**64 - 1)]:
        body = f"interface,agent_host=r,ifName=e ifHCOutOctets={octets}u {ts}"
        r = client.post(V2, params={"precision": "s"}, content=body, headers=h)
        assert r.status_code == 204, r.text
    assert samples(clean_db) == [("r:e", T0 + 10.0, 800.0, "ok")]  # 8 x 1000 / 10 s


# --- refusals: InfluxDB's answers, nothing stored -----------------------------------

GOOD = (  # two good lines, in ns (the default precision)
    f"link_load,link=A>B bps=1e9 {T0 * NS}\n"
    f"interface,agent_host=r,ifName=e ifHCOutOctets=5u {T0 * NS}\n"
)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        pytest.param("link_load,link=A>B", "parse", id="no-fields"),
        pytest.param("link_load,link=A>B bps=", "parse", id="no-value"),
        pytest.param("link_load,link=A>B bps=1 12abc", "timestamp", id="bad-timestamp"),
        pytest.param(r"link_load,link=A>B\ bps=1", "parse", id="escape-eats-separator"),
        pytest.param(r"link_load,link=A>B,t=x\ ", "parse", id="trailing-backslash"),
        pytest.param('interface,agent_host=r,ifName=e ifDescr="eth0', "parse", id="unterminated"),
        pytest.param("link_load,link=A>B bps=1.2.3", "parse", id="bad-number"),
        pytest.param("link_load,link=A>B bps=1.5u", "parse", id="fractional-unsigned"),
        pytest.param("link_load,link=A>B bps=-1u", "parse", id="negative-unsigned"),
        pytest.param("link_load,link=A>B bps=NaN", "parse", id="nan"),
        pytest.param("link_load,link=A>B bps=-5", "negative", id="negative"),
        pytest.param("interface,agent_host=r,ifName=e ifHCOutOctets=-5i", "negative", id="neg-ctr"),
        pytest.param(f"link_load,link=A>B bps=1 {4102444800 * NS}", "future", id="year-2100"),
        pytest.param(b"link_load,link=A\xff bps=1", "UTF-8", id="not-utf8"),
    ],
)
def test_a_bad_line_is_400_naming_it_and_nothing_is_stored(client, tokens, clean_db, bad, words):
    bad = bad if isinstance(bad, bytes) else bad.encode()
    body = GOOD.encode() + b"# comment\n" + bad + b"\n" + GOOD.encode()  # bad is line 4
    r = client.post(V2, content=body, headers=token_auth(tokens["write"]))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid"
    assert "line 4:" in r.json()["message"] and words in r.json()["message"]
    assert stored_anything(clean_db) == (0, 0, 0)


def test_unknown_precision_is_400(client, tokens, clean_db):
    for route, precision in [(V2, "m"), (V2, "seconds"), ("/write", "ps")]:
        r = client.post(
            route, params={"precision": precision}, content=GOOD, headers=auth(tokens["write"])
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid" and repr(precision) in r.json()["message"]
    assert stored_anything(clean_db) == (0, 0, 0)


def test_gzip_corrupt_or_cut_is_400(client, tokens, clean_db):
    packed = gzip.compress(GOOD.encode())
    h = token_auth(tokens["write"]) | {"Content-Encoding": "gzip"}
    for body in (b"not gzip at all", packed[:-6], packed[:12] + b"\0" * 8 + packed[20:]):
        r = client.post(V2, content=body, headers=h)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid" and "gzip" in r.json()["message"]
    r = client.post(
        V2, content=GOOD, headers=token_auth(tokens["write"]) | {"Content-Encoding": "br"}
    )
    assert r.status_code == 415
    assert stored_anything(clean_db) == (0, 0, 0)
    r = client.post(V2, content=packed, headers=h)  # and the same body whole is stored
    assert r.status_code == 204, r.text
    assert len(samples(clean_db)) == 1


def test_too_large_is_413(settings, clean_db, tokens):
    settings.max_body_bytes = 4096
    settings.max_batch_samples = 10
    h = token_auth(tokens["write"])
    bomb = gzip.compress(b"# padding\n" * 1000 + GOOD.encode())  # small packed, 10 kB open
    fields = ",".join(f"f{i}=1" for i in range(11))
    with TestClient(create_app(settings)) as c:
        for body, headers in [
            (b"#" * 4097, h),
            (bomb, h | {"Content-Encoding": "gzip"}),
            (f"link_load,link=A>B {fields} {T0}".encode(), h),
        ]:
            assert len(bomb) < 4096
            r = c.post(V2, content=body, headers=headers)
            assert r.status_code == 413, r.text
            assert r.json()["code"] == "request too large"
    assert stored_anything(clean_db) == (0, 0, 0)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Token lc_wrong"}, id="wrong-token"),
        pytest.param({"Authorization": "Token"}, id="empty-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwdw=="}, id="basic-on-v2"),
    ],
)
def test_wrong_token_is_401_and_stores_nothing(client, tokens, clean_db, headers):
    r = client.post(V2, content=GOOD, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert stored_anything(clean_db) == (0, 0, 0)


def test_read_scope_is_403(client, tokens, clean_db):
    for route in (V2, "/write"):
        r = client.post(route, content=GOOD, headers=token_auth(tokens["read"]))
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "forbidden" and "write" in r.json()["message"]
    assert stored_anything(clean_db) == (0, 0, 0)


def test_openapi_documents_both_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (V2, "/write"):
        op = paths[path]["post"]
        assert {"204", "400", "401", "403", "413", "503"} <= set(op["responses"])
        assert "text/plain" in op["requestBody"]["content"]
        assert "line" in op["description"]


def test_database_outage_is_503_and_a_retry_stores_once(database_url, tmp_path, clean_db, tokens):
    proxy = DbProxy(database_url)
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path)
    h = token_auth(tokens["write"])
    with TestClient(create_app(settings)) as c:
        assert c.post(V2, content=GOOD, headers=h).status_code == 204  # warms the token cache
        later = f"link_load,link=A>B bps=2e9 {(T0 + 60) * NS}\nlink_load,link=new bps=1 {T0 * NS}\n"
        proxy.stop()
        r = c.post(V2, content=later, headers=h)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit()
        assert stored_anything(clean_db) == (2, 1, 1)  # nothing of the refused request
        proxy.start()
        assert c.post(V2, content=later, headers=h).status_code == 204
        assert c.post(V2, content=later, headers=h).status_code == 204  # a retry: the same rows
        proxy.stop()
    assert [(n, v) for n, _, v, _ in samples(clean_db)] == [
        ("A>B", 1e9),
        ("A>B", 2e9),
        ("new", 1.0),
    ]


def test_pushes_and_refusals_are_counted_by_format_and_reason(client, tokens, clean_db):
    names = {
        "accepted": ("linkcast_samples_accepted_total", {}),
        "non_numeric": ("linkcast_series_dropped_total", {"reason": "non_numeric"}),
        "malformed": ("linkcast_push_requests_refused_total", {"reason": "malformed"}),
        "invalid": ("linkcast_push_requests_refused_total", {"reason": "invalid"}),
        "invalid_points": ("linkcast_samples_refused_total", {"reason": "invalid"}),
        "unauthorized": ("linkcast_push_requests_refused_total", {"reason": "unauthorized"}),
    }

    def counts() -> dict[str, float]:
        return {k: metric(client, n, format="influx", **lb) for k, (n, lb) in names.items()}

    h = token_auth(tokens["write"])
    before = counts()
    ok = f'link_load,link=A>B bps=1,note="x" {T0}\nlink_load,link=C>D bps=2 {T0}'
    assert client.post(V2, params={"precision": "s"}, content=ok, headers=h).status_code == 204
    neg = f"link_load,link=A>B bps=1 {T0}\nlink_load,link=A>B bps=-1 {T0}"
    assert client.post(V2, params={"precision": "s"}, content=neg, headers=h).status_code == 400
    assert client.post(V2, content=b"link_load bps=1.5u", headers=h).status_code == 400
    assert (
        client.post(V2, content=b"x", headers=h | {"Content-Encoding": "gzip"}).status_code == 400
    )
    assert client.post(V2, content=GOOD, headers=token_auth("lc_wrong")).status_code == 401
    delta = {k: v - before[k] for k, v in counts().items()}
    assert delta == {
        "accepted": 2,
        "non_numeric": 1,
        "malformed": 2,
        "invalid": 1,
        "invalid_points": 2,
        "unauthorized": 1,
    }


@pytest.mark.parametrize("path", ["/api/v2/write", "/write"])
def test_an_empty_write_is_refused_as_influxdb_refuses_it(
    client: TestClient, tokens: dict[str, str], path: str
) -> None:
    for body in (b"", b"\n  \n"):
        r = client.post(path, content=body, headers={"Authorization": f"Token {tokens['write']}"})
        assert r.status_code == 400
        assert r.json() == {"code": "invalid", "message": "writing requires points"}


def test_seconds_sent_as_the_default_nanoseconds_are_refused(client, tokens, clean_db):
    """curl and Telegraf users who forget ?precision=s: their times land in 1970, which
    is refused naming the line and the likely cause, never stored where no one looks."""
    now = int(time.time())
    body = f"link_load,link=A>B bps=1 {now}\nlink_load,link=A>B bps=2 {now}"
    r = client.post(V2, content=body, headers=auth(tokens["write"]))
    assert r.status_code == 400
    assert "line 1" in r.json()["message"] and "wrong unit" in r.json()["message"]
    assert samples(clean_db) == []
