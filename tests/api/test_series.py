"""The series file (LINKCAST_SERIES_FILE): rules, their errors, and the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.series import DEFAULT_RULES, BadPoint, Point, SeriesFileError, SeriesMap
from linkcast.settings import Settings

FILE = """
[[series]]
metric = "system.network.io"
link = "{host.name}:{device}"
unit = "bytes"
match = { direction = "transmit" }

[[series]]
metric = "if_out_bps"
link = "{router}>{peer}"
unit = "Mbit/s"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "series.toml"
    path.write_text(text)
    return path


def test_a_file_replaces_the_defaults_and_matches_labels(tmp_path: Path) -> None:
    m = SeriesMap.load(write(tmp_path, FILE))
    host = {"host.name": "edge1", "device": "eth0"}
    out = m.map(
        [
            Point("system.network.io", {**host, "direction": "transmit"}, 10.0, 5),
            Point("system.network.io", {**host, "direction": "receive"}, 10.0, 7),
            Point("if_out_bps", {"router": "r1", "peer": "r2"}, 10.0, 2.5),
            Point("ifHCOutOctets", {"instance": "r1", "ifName": "et1"}, 10.0, 1),  # a default
        ],
        latest=1e10,
    )
    series = 'system.network.io{device="eth0",direction="transmit",host.name="edge1"}'
    assert out.counters == [(series, "edge1:eth0", 10.0, 5, 8.0, 64)]
    assert out.gauges == [("r1>r2", 10.0, 2.5e6)]
    assert out.dropped == {"no_rule": 2}  # the receive direction, and a default metric


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[[series]]\nmetric = 'x'\nlink = '{a}'\nunit = 'octet'\n", ["#1", "unit 'octet'"]),
        ("[[series]]\nmetric = 'x'\n", ["#1", "'link' is required"]),
        ("[[series]]\nmetric = 'x'\nlink = 'no labels'\n", ["names no label"]),
        ("[[series]]\nmetric = 'x'\nlink = '{a'\n", ["brace"]),
        ("[[series]]\nmetric = 'x'\nlink = '{a}'\ncounter_bits = 16\n", ["32 or 64"]),
        ("[[series]]\nmetric = 'x'\nlink = '{a}'\nrole = 'capacity'\nunit = 'octets'\n", ["gauge"]),
        ("[[series]]\nmetric = 'x'\nlink = '{a}'\nlnk = 1\n", ["unknown field", "lnk"]),
        ("[[rule]]\nmetric = 'x'\n", ["unknown key", "rule"]),
        ("[[series]\n", ["not TOML"]),
        ("", ["no [[series]] table"]),
    ],
)
def test_a_bad_file_is_refused_naming_the_rule_and_field(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SeriesFileError) as err:
        SeriesMap.load(path)
    for name in [str(path), *names]:
        assert name in str(err.value)


def test_settings_fail_at_start_on_a_bad_or_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKCAST_SERIES_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ValidationError, match="absent.toml: No such file"):
        Settings()
    monkeypatch.setenv("LINKCAST_SERIES_FILE", str(write(tmp_path, FILE)))
    assert Settings().series_map.rules[1].metric == "if_out_bps"


def test_the_defaults_name_the_collectors_links() -> None:
    m = SeriesMap(DEFAULT_RULES)
    cases = {
        ("ifHCOutOctets", ("instance", "r1"), ("ifName", "xe-0/0/1")): "r1:xe-0/0/1",
        ("node_network_transmit_bytes_total", ("instance", "h:1"), ("device", "lo")): "h:1:lo",
        ("interface_ifHCOutOctets", ("agent_host", "10.0.0.1"), ("ifName", "et1")): "10.0.0.1:et1",
        ("net_bytes_sent", ("host", "h1"), ("interface", "eth0")): "h1:eth0",
    }
    for (name, *labels), link in cases.items():
        out = m.map([Point(name, dict(labels), 1.0, 1)], latest=1e10)
        assert [c[1] for c in out.counters] == [link], name


@pytest.mark.parametrize(
    ("value", "ts", "problem"),
    [
        (float("nan"), 1.0, "not a finite number"),
        (float("inf"), 1.0, "not a finite number"),
        (-1.0, 1.0, "negative"),
        (1.0, -5.0, "before 1970"),
        (1.0, 2e10, "in the future"),
    ],
)
def test_bad_values_and_times_name_the_point(value: float, ts: float, problem: str) -> None:
    good = Point("link_load_bps", {"link": "A>B"}, 1.0, 1.0)
    with pytest.raises(BadPoint, match=problem) as err:
        bad = Point("link_load_bps", {"link": "A>B"}, ts, value)
        SeriesMap(DEFAULT_RULES).map([good, bad], latest=1e10)
    assert err.value.index == 1
    # a series no rule takes is dropped whatever its value: never an error for the request
    out = SeriesMap(DEFAULT_RULES).map([Point("up", {}, ts, value)], latest=1e10)
    assert out.dropped == {"no_rule": 1}
