"""CPU per data point of decoding OTLP metrics requests: each data point's attributes
found by their bytes, and read from the data point's own message (the reference).

Builds ExportMetricsServiceRequests (protobuf) shaped as collectors send interface
loads: a gauge ``link_load_bps`` with one attribute ``link`` (bench/ingest.py's
shape), and an SDK-style counter ``ifHCOutOctets`` (a cumulative sum of integers, a
start time on every data point, attributes ``instance`` and ``ifName``), and times
:func:`api.otlp.decode` on them in one process, its series known (the labels cache
warmed, as after a worker's first request). Rounds alternate between the shipped read
(:func:`api.otlp._attributes_at`: a slice of each data point's bytes) and the
reference (a message object and a tuple of attribute bytes per data point, what the
code did before and still does for a data point with exemplars, flags or a start time
on only some points); each figure is the median of the rounds' process CPU time (user
+ system), in µs per data point, with the range of the rounds' ratios. The garbage
collector is tuned as ``linkcast api`` tunes it in a worker
(:func:`linkcast.cli.served_app`).

    python bench/otlp_decode.py --points 5000 --rounds 9
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest.mock import patch

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import otlp  # noqa: E402
from linkcast.cli import GC_YOUNG_THRESHOLD  # noqa: E402

T0 = 1_767_225_600  # 2026-01-01, s


def gauge_body(points: int) -> bytes:
    """bench/ingest.py's shape: ``link_load_bps`` gauges, attribute ``link``."""
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name="link_load_bps")
    for i in range(points):
        dp = metric.gauge.data_points.add(time_unix_nano=T0 * 10**9, as_double=1e9 + i)
        dp.attributes.add(key="link").value.string_value = f"bench{i}>x"
    return req.SerializeToString()


def counter_body(points: int) -> bytes:
    """An SDK's counter: ``ifHCOutOctets`` as a cumulative sum of integers, a start
    time on every data point, attributes ``instance`` and ``ifName``, a resource."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "snmp"
    metric = rm.scope_metrics.add().metrics.add(name="ifHCOutOctets", unit="By")
    metric.sum.aggregation_temporality, metric.sum.is_monotonic = 2, True
    for i in range(points):
        dp = metric.sum.data_points.add(
            start_time_unix_nano=(T0 - 86_400) * 10**9, time_unix_nano=T0 * 10**9, as_int=10**9 + i
        )
        dp.attributes.add(key="instance").value.string_value = f"r{i // 48}"
        dp.attributes.add(key="ifName").value.string_value = f"xe-0/0/{i % 48}"
    return req.SerializeToString()


def decode(body: bytes) -> otlp.Decoded:
    metrics = {"link_load_bps", "ifHCOutOctets"}
    return otlp.decode(
        body, wire="protobuf", content_encoding=None, limit=1 << 28, max_points=10**6,
        metrics=metrics,
    )  # fmt: skip


def by_message() -> object:
    """While it lasts, every data point's attributes are read from its own message."""
    return patch.object(otlp, "_attributes_at", lambda *args: None)


def cpu_per_point(body: bytes, points: int, repeat: int, *, by_bytes: bool) -> float:
    """Process CPU time of one decode of ``body``, in µs per data point."""
    with nullcontext() if by_bytes else by_message():
        start = time.process_time()
        for _ in range(repeat):
            decode(body)
        return (time.process_time() - start) / repeat / points * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--points", type=int, default=5000, help="data points per request")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per shape")
    parser.add_argument("--repeat", type=int, default=10, help="decodes per round")
    args = parser.parse_args(argv)
    if args.points < 1 or args.rounds < 1 or args.repeat < 1:
        parser.error("--points, --rounds and --repeat must be at least 1")
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    print(f"{args.points} data points per request; median of {args.rounds} rounds")
    print("| request | by bytes (µs/point) | by message (µs/point) | ratio | ratio, range |")
    print("|---|---|---|---|---|")
    for name, make in (("gauge, 1 attribute", gauge_body), ("counter, 2 + start", counter_body)):
        body = make(args.points)
        want = decode(body).points
        with by_message():  # the two reads agree before either is timed
            assert [p[1:] for p in want] == [p[1:] for p in decode(body).points]
        keys = list(otlp._LABELS)
        if not any(isinstance(attributes, bytes) for _, attributes in keys):
            raise SystemExit(f"{name}: the data points were not found by their bytes")
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for by_bytes in (True, False):
                times[by_bytes].append(
                    cpu_per_point(body, args.points, args.repeat, by_bytes=by_bytes)
                )
        fast, ref = statistics.median(times[True]), statistics.median(times[False])
        rounds = [a / b for a, b in zip(times[True], times[False], strict=True)]
        spread = f"{min(rounds):.2f} to {max(rounds):.2f}"
        print(f"| {name} | {fast:.2f} | {ref:.2f} | {fast / ref:.2f} | {spread} |", flush=True)


if __name__ == "__main__":
    main()
