"""The series file (LINKCAST_SERIES_FILE): rules, their errors, and the defaults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.series import (
    DEFAULT_RULES,
    BadPoint,
    Point,
    Rule,
    SeriesBatch,
    SeriesFileError,
    SeriesMap,
)
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
    assert out.gauges.rows() == [("r1>r2", 10.0, 2.5e6)]
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


# --- map_batch against a point-by-point reading of the rules --------------------------

# the defaults and a gauge in Mbit/s (a value in range can be out of range in bit/s)
RULES = (*DEFAULT_RULES, Rule("if_out_mbps", "{router}", "Mbit/s"))
SERIES = [
    ("link_load_bps", {"link": "A>B"}),
    ("link_load_bps", {"link": "B>C"}),
    ("link_load_bps", {}),  # missing_label
    ("if_out_mbps", {"router": "r1"}),
    ("ifHCOutOctets", {"instance": "r1", "ifName": "et1"}),  # a counter
    ("ifHighSpeed", {"instance": "r1", "ifName": "et1"}),  # a capacity
    ("up", {"instance": "r1"}),  # no rule
]
VALUES = [0.0, -0.0, 1.0, 2.5e9, 1e10, 2**63, 2**64 - 1, -1.0, math.nan, math.inf, 1e300]
TIMES = [946_684_800.0, 1_767_225_600.5, 1e10, -1.0, math.nan, math.inf, 100.0]


def problem(p: Point, latest: float, earliest: float) -> str:
    """What is wrong with a value or time, in the words the API answers with."""
    if isinstance(p.value, float) and not math.isfinite(p.value):
        return f"{p.name}: value {p.value!r} is not a finite number"
    if p.value < 0:
        return f"{p.name}: value {p.value!r} is negative"
    if not math.isfinite(p.ts) or p.ts < 0:
        return f"{p.name}: timestamp {p.ts!r} s is before 1970"
    if p.ts > latest:
        return f"{p.name}: timestamp {p.ts!r} s is in the future"
    assert p.ts < earliest
    return f"{p.name}: timestamp"  # then the date: the start of the message is enough


def reference_map(points, rules, latest, earliest):
    """What the rules make of ``points``, one point at a time (the contract of
    SeriesMap.map_batch, written out plainly): (gauges, counters, capacities, dropped)
    or the BadPoint (index, message) of the first bad point."""
    gauges, counters, capacities, dropped = [], [], {}, {}
    m = SeriesMap(rules)
    for i, p in enumerate(points):
        rule = m.rule(p.name, p.labels)
        link, why = (None, "no_rule") if rule is None else rule.link_or_reason(p.labels)
        if why:
            dropped[why] = dropped.get(why, 0) + 1
            continue
        capacity = rule.role == "capacity"
        if capacity and not 0 < p.value < math.inf:
            dropped["unknown_capacity"] = dropped.get("unknown_capacity", 0) + 1
            continue
        if not (0 <= p.value < math.inf and earliest <= p.ts <= latest):
            return ("bad", i, problem(p, latest, earliest))
        if rule.kind == "counter":
            counters.append((link, p.ts, p.value))
            continue
        bps = float(p.value) * rule.scale
        if not bps <= 1e15:
            return ("bad", i, f"{p.name}: {p.value!r} {rule.unit} exceeds 1e+15 bit/s")
        if capacity:
            capacities[link] = bps
        else:
            gauges.append((link, p.ts, bps))
    return gauges, counters, capacities, dropped


@settings(max_examples=300, deadline=None)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, len(SERIES) - 1),
            st.sampled_from(VALUES),
            st.sampled_from(TIMES[:2] * 4 + TIMES[2:]),
        ),
        max_size=12,
    ),
    grouped=st.booleans(),
)
def test_map_batch_does_what_the_rules_say_point_by_point(picks, grouped) -> None:
    """Gauges sorted and checked as columns, counters and capacities one by one: the
    same gauges, counters, capacities and drops as reading every point on its own, or
    a BadPoint for the same first bad point; with each sample its own series, or the
    samples of a series pointing at it (``of``)."""
    latest, earliest = 2e9, 946_684_800.0
    points = [Point(*SERIES[k], ts, value) for k, value, ts in picks]
    want = reference_map(points, RULES, latest, earliest)
    if grouped:  # every distinct series once, the samples pointing at it
        order = sorted({k for k, _, _ in picks})
        batch = SeriesBatch(
            [SERIES[k] for k in order],
            np.array([order.index(k) for k, _, _ in picks], np.int64),
            np.array([ts for _, _, ts in picks], np.float64),
            [value for _, value, _ in picks],
        )
    else:
        batch = SeriesBatch.of_points(points)
    m = SeriesMap(RULES)
    learnt = []
    learn = m._learn
    m._learn = lambda name, labels: learnt.append(name) or learn(name, labels)
    try:
        out = m.map_batch(batch, latest=latest, earliest=earliest)
    except BadPoint as exc:
        assert want[:2] == ("bad", exc.index)
        assert exc.msg.startswith(want[2])
    else:
        counters = [(link, ts, value) for _, link, ts, value, _, _ in out.counters]
        assert (out.gauges.rows(), counters, out.capacities, out.dropped) == want
    # each series some rule names is learnt once, even where it comes more than once
    ruled = {k for k, _, _ in picks if SERIES[k][0] in m.metrics}
    assert len(learnt) == len(ruled)
