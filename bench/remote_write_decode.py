"""CPU per sample of decoding remote write requests, as columns and message by message.

Builds remote write 1.0 requests shaped as Prometheus sends node_exporter's interface
counters (``node_network_transmit_bytes_total{device, instance}``, one sample per
series, a share of them exactly 0, as idle interfaces report), and times
:func:`api.remote_write.decode` on them in one process: as shipped (the samples read as
columns, the zeros that proto3 leaves off the wire put back from each sample's bytes),
and with every sample read from its own message (the reference, in the same rounds).
Rounds alternate between the two; each figure is the median of the rounds' process CPU
time (user + system), in µs per sample. The reference is what the shipped code does
for a body that is not protobuf's own encoding (its encoding check, then a message per
sample); the code before the zeros were put back also parsed the columns first, so it
was slower than this reference. The series are known to the decoder (its cache
warmed), as they are after a worker's first request.

    python bench/remote_write_decode.py --series 2000 --zeros 0 0.02 0.3 --rounds 9
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from unittest.mock import patch

import cramjam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import remote_write as rw  # noqa: E402

METRIC = "node_network_transmit_bytes_total"


def request_body(series: int, zeros: float, rng: random.Random) -> bytes:
    """A snappy-compressed WriteRequest: ``series`` series of one sample each, a share
    ``zeros`` of them 0, the others up to 10 Gbit/s in bytes."""
    req = rw.WriteRequest()
    t0 = 1_767_225_600_000  # ms
    for i in range(series):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=METRIC)
        ts.labels.add(name="device", value=f"eth{i}")
        ts.labels.add(name="instance", value=f"host{i // 64}:9100")
        value = 0.0 if rng.random() < zeros else float(rng.randrange(1, 10**12))
        ts.samples.add(value=value, timestamp=t0 + i)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


@contextmanager
def message_by_message() -> Iterator[None]:
    """While it lasts, :func:`api.remote_write.decode` reads every sample from its own
    message (the reference)."""
    with (
        patch.object(rw, "_one_sample_each", lambda raw, max_samples: None),
        patch.object(rw, "_columns", lambda raw, total, samples=None: None),
    ):
        yield


def decode(body: bytes) -> rw.Decoded:
    """The points of ``body``, its series known to the decoder (as after a worker's
    first request)."""
    return rw.decode(body, limit=1 << 26, max_samples=10**6, metrics={METRIC})


def cpu_per_sample(body: bytes, series: int, repeat: int, *, columns: bool) -> float:
    """Process CPU time of one decode of ``body``, in µs per sample (``repeat`` decodes)."""
    with nullcontext() if columns else message_by_message():
        start = time.process_time()
        for _ in range(repeat):
            decode(body)
        return (time.process_time() - start) / repeat / series * 1e6


def read_as_columns(body: bytes) -> list | None:
    """The points of ``body`` as shipped, or None unless its series were found by their
    label bytes and its samples read as columns."""
    shortcut = rw._one_sample_each
    taken: list[bool] = []

    def watched(raw: bytes, max_samples: int) -> tuple | None:
        found = shortcut(raw, max_samples)
        taken.append(found is not None)
        return found

    with (
        patch.object(rw, "_per_sample", wraps=rw._per_sample) as per_sample,
        patch.object(rw, "_one_sample_each", watched),
    ):
        points = decode(body).points
    return None if per_sample.called or taken != [True] else points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--series", type=int, default=2000, help="series (samples) per request")
    parser.add_argument(
        "--zeros",
        type=float,
        nargs="+",
        default=[0.0, 0.02, 0.3],
        help="shares of samples that are exactly 0, one request shape each",
    )
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per shape")
    parser.add_argument("--repeat", type=int, default=10, help="decodes per round")
    parser.add_argument("--seed", type=int, default=0, help="draws of values and zeros")
    args = parser.parse_args(argv)
    if args.series < 1 or args.rounds < 1 or args.repeat < 1:
        parser.error("--series, --rounds and --repeat must be at least 1")
    if any(not 0 <= z <= 1 for z in args.zeros):
        parser.error("--zeros are shares, from 0 to 1")
    rng = random.Random(args.seed)
    print(f"{args.series} series of 1 sample per request; median of {args.rounds} rounds")
    print("| zeros | columns (µs/sample) | message by message (µs/sample) | ratio |")
    print("|---|---|---|---|")
    for zeros in args.zeros:
        body = request_body(args.series, zeros, rng)
        want = read_as_columns(body)
        if want is None:  # else both timings would be of the message-by-message read
            raise SystemExit(f"{zeros:.0%} zeros: the request was not read as columns")
        with message_by_message():  # the two reads agree before either is timed
            assert want == decode(body).points
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for columns in (True, False):
                times[columns].append(
                    cpu_per_sample(body, args.series, args.repeat, columns=columns)
                )
        col, msg = statistics.median(times[True]), statistics.median(times[False])
        print(f"| {zeros:.0%} | {col:.2f} | {msg:.2f} | {col / msg:.2f} |", flush=True)


if __name__ == "__main__":
    main()
