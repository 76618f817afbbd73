"""Traffic: origin-destination demands over time, synthetic or replayed.

A :class:`Traffic` holds one demand series per ordered node pair, in bit/s, on a
regular step grid with UTC epoch-second timestamps.

Two sources:

* :func:`sine_traffic`, the generator of the paper behind linkcast (Ayoub,
  Andreoletti et al., arXiv 2404.05304): each pair is a sum of sines with daily
  and weekly periods, phase-shifted by the local time of its end nodes, around a
  gravity-model mean, with multiplicative noise.
* :func:`load_traffic_csv` (and :func:`load_abilene` for the shipped data), the
  replay of measured traffic matrices from a gzipped CSV with a ``timestamp``
  column and one ``SRC>DST`` column per pair in Mbit/s.

Examples
--------
>>> from simulator.topology import load_topology
>>> topo = load_topology("abilene")
>>> tr = sine_traffic(topo, n_steps=288, step_seconds=300, total_bps=1e10, seed=1)
>>> tr.demands_bps.shape, tr.step_seconds
((288, 132), 300)
>>> bool(abs(tr.demands_bps.sum(axis=1).mean() / 1e10 - 1) < 0.2)
True
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.topology import Topology, _data_path

__all__ = [
    "ABILENE_CSV",
    "DAY_SECONDS",
    "WEEK_SECONDS",
    "Traffic",
    "load_abilene",
    "load_traffic_csv",
    "sine_traffic",
]

DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS
#: Path of the shipped Abilene traffic matrices (relative to the package).
ABILENE_CSV = "data/abilene/abilene-tm-5min-2004.csv.gz"
# 1970-01-05 00:00 UTC was a Monday: weekly phases are measured from it.
_MONDAY_EPOCH = 4 * DAY_SECONDS


@dataclass(frozen=True)
class Traffic:
    """Demands of origin-destination pairs over time.

    Parameters
    ----------
    timestamps : numpy.ndarray
        ``(T,)`` int64 UTC epoch seconds, strictly increasing.
    demands_bps : numpy.ndarray
        ``(T, P)`` float64 demand of each pair in bit/s, finite and >= 0.
    pairs : tuple of (str, str)
        ``(src, dst)`` of each column. A pair with ``src == dst`` is local
        traffic: it never enters a link.
    step_seconds : int
        The regular step of the grid. Replayed data may have gaps (see
        :func:`load_traffic_csv`); the simulation treats rows as consecutive steps.
    """

    timestamps: np.ndarray
    demands_bps: np.ndarray
    pairs: tuple[tuple[str, str], ...]
    step_seconds: int

    def __post_init__(self) -> None:
        ts = np.asarray(self.timestamps, dtype=np.int64)
        dem = np.asarray(self.demands_bps, dtype=float)
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "demands_bps", dem)
        object.__setattr__(self, "pairs", tuple((str(s), str(d)) for s, d in self.pairs))
        if dem.ndim != 2 or dem.shape != (ts.shape[0], len(self.pairs)):
            raise ValueError(
                f"demands_bps has shape {dem.shape}; expected ({ts.shape[0]}, {len(self.pairs)})"
            )
        if not np.all(np.isfinite(dem)) or (dem < 0).any():
            raise ValueError("demands_bps must be finite and >= 0")
        if ts.size > 1 and (np.diff(ts) <= 0).any():
            raise ValueError("timestamps must be strictly increasing")
        if self.step_seconds <= 0:
            raise ValueError(f"step_seconds must be > 0, got {self.step_seconds}")

    @property
    def n_steps(self) -> int:
        """Number of steps ``T``."""
        return int(self.timestamps.shape[0])

    @property
    def pair_names(self) -> tuple[str, ...]:
        """Pair names ``SRC>DST`` in column order."""
        return tuple(f"{s}>{d}" for s, d in self.pairs)

    def slice(self, start: int | None = None, stop: int | None = None) -> Traffic:
        """The steps ``start:stop`` as a new :class:`Traffic`."""
        sl = slice(start, stop)
        return Traffic(self.timestamps[sl], self.demands_bps[sl], self.pairs, self.step_seconds)

    def check_nodes(self, topology: Topology) -> None:
        """Raise ``ValueError`` if a pair names a node the topology lacks.

        The message names the first offending pairs and the topology's nodes.
        """
        known = set(topology.nodes)
        bad = [f"{s}>{d}" for s, d in self.pairs if s not in known or d not in known]
        if bad:
            raise ValueError(
                f"{len(bad)} traffic pairs name nodes that topology {topology.name!r} lacks, "
                f"e.g. {bad[:3]}; its nodes are {sorted(known)}"
            )


def _epoch(start: str | int | datetime) -> int:
    if isinstance(start, datetime):
        dt = start if start.tzinfo else start.replace(tzinfo=UTC)
        return int(dt.timestamp())
    if isinstance(start, str):
        return _epoch(datetime.fromisoformat(start))
    return int(start)


def sine_traffic(
    topology: Topology,
    *,
    n_steps: int = 2016,
    step_seconds: int = 300,
    total_bps: float = 1e11,
    seed: int | np.random.Generator = 0,
    start: str | int | datetime = "2026-01-05T00:00:00Z",
    noise: float = 0.05,
    weights: Mapping[str, float] | None = None,
) -> Traffic:
    """Synthetic traffic: sums of sines around a gravity-model mean.

    For pair ``(s, d)`` at UTC time ``t`` (after arXiv 2404.05304)::

        mean_sd  = total_bps * w_s * w_d / sum_{a != b} w_a * w_b
        u        = t + 3600 * (lon_s + lon_d) / 2 / 15       # pair's local time
        shape(u) = 1 + A_d sin(2 pi (u - phi_d) / day)        # daily
                     + A_h sin(4 pi (u - phi_h) / day)        # half-daily harmonic
                     + A_w sin(2 pi (u - phi_w) / week)       # weekly
        demand   = mean_sd * shape(u) * exp(noise * N(0, 1) - noise**2 / 2)

    with ``A_d ~ U(0.3, 0.5)``, ``A_h ~ U(0.05, 0.15)``, ``A_w ~ U(0.1, 0.2)``
    drawn per pair, the daily peak at 20:00 local time +- N(0, 1 h), the weekly
    peak on Wednesday noon (trough Sunday), ``phi_h`` uniform. The shape stays
    above 0.15, so demands are positive and average about ``mean_sd``. Node
    weights ``w`` default to the node degree (a population proxy topohub lacks).
    Without coordinates all nodes share UTC.

    Parameters
    ----------
    topology : Topology
    n_steps : int
        Number of steps ``T``.
    step_seconds : int
        Seconds between steps.
    total_bps : float
        Mean total demand of all pairs together, bit/s.
    seed : int or numpy.random.Generator
        Same seed, same traffic.
    start : str, int or datetime
        First timestamp (RFC 3339 string, epoch seconds, or datetime; naive = UTC).
    noise : float
        Standard deviation of the log-normal multiplicative noise.
    weights : mapping of str to float, optional
        Gravity weight per node (e.g. population), instead of degrees.

    Returns
    -------
    Traffic
        All ordered pairs of distinct nodes, in node order.

    Examples
    --------
    >>> from simulator.topology import load_topology
    >>> topo = load_topology("nobel-eu")
    >>> a = sine_traffic(topo, n_steps=10, seed=3)
    >>> b = sine_traffic(topo, n_steps=10, seed=3)
    >>> bool((a.demands_bps == b.demands_bps).all())
    True
    """
    if n_steps <= 0 or step_seconds <= 0:
        raise ValueError(f"n_steps and step_seconds must be > 0, got {n_steps}, {step_seconds}")
    if total_bps <= 0:
        raise ValueError(f"total_bps must be > 0, got {total_bps}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pairs = topology.pairs
    if not pairs:
        raise ValueError(f"topology {topology.name!r} has fewer than two nodes")
    deg = topology.degree()
    if weights is None:
        w = {n: float(max(deg[n], 1)) for n in topology.nodes}
    else:
        missing = [n for n in topology.nodes if n not in weights]
        if missing:
            raise ValueError(f"weights lack nodes {missing[:5]}")
        w = {n: float(weights[n]) for n in topology.nodes}
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
    src = np.array([w[s] for s, _ in pairs])
    dst = np.array([w[d] for _, d in pairs])
    gravity = src * dst
    mean = total_bps * gravity / gravity.sum()

    lon = {n: topology.positions.get(n, (0.0, 0.0))[0] for n in topology.nodes}
    offset = np.array([(lon[s] + lon[d]) / 2 / 15 * 3600 for s, d in pairs])

    n_pairs = len(pairs)
    amp_day = rng.uniform(0.3, 0.5, n_pairs)
    amp_half = rng.uniform(0.05, 0.15, n_pairs)
    amp_week = rng.uniform(0.1, 0.2, n_pairs)
    # sin peaks a quarter period after its phase: daily peak at 20:00 local.
    phi_day = (20 - 6) * 3600 + rng.normal(0, 3600, n_pairs)
    phi_half = rng.uniform(0, DAY_SECONDS / 2, n_pairs)
    # weekly peak on Wednesday 12:00 local = 2.5 days after Monday 00:00.
    phi_week = 2.5 * DAY_SECONDS - WEEK_SECONDS / 4

    t0 = _epoch(start)
    timestamps = t0 + step_seconds * np.arange(n_steps, dtype=np.int64)
    u = (timestamps - _MONDAY_EPOCH)[:, None].astype(float) + offset[None, :]
    shape = (
        1
        + amp_day * np.sin(2 * np.pi * (u - phi_day) / DAY_SECONDS)
        + amp_half * np.sin(4 * np.pi * (u - phi_half) / DAY_SECONDS)
        + amp_week * np.sin(2 * np.pi * (u - phi_week) / WEEK_SECONDS)
    )
    jitter = np.exp(noise * rng.standard_normal((n_steps, n_pairs)) - noise**2 / 2)
    demands = mean * np.maximum(shape, 0.0) * jitter
    return Traffic(timestamps, demands, pairs, int(step_seconds))


def _read_header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: cannot read a CSV header ({exc})") from exc


def _longest_run(timestamps: np.ndarray, step: int) -> slice:
    """The longest run of rows spaced exactly ``step`` apart (first one on ties)."""
    breaks = np.flatnonzero(np.diff(timestamps) != step) + 1
    bounds = np.concatenate([[0], breaks, [timestamps.size]])
    lengths = np.diff(bounds)
    i = int(np.argmax(lengths))
    return slice(int(bounds[i]), int(bounds[i + 1]))


def load_traffic_csv(
    path: str | Path,
    *,
    topology: Topology | None = None,
    contiguous: bool = True,
) -> Traffic:
    """Replay measured traffic matrices from a (gzipped) CSV.

    The format of the Abilene data shipped in ``simulator/data/abilene``: a
    ``timestamp`` column (ISO 8601 / RFC 3339, UTC; naive times are taken as
    UTC) and one column per origin-destination pair named ``SRC>DST``, values
    in Mbit/s (converted to bit/s). Rows are sorted by time if they are not.

    Measurements may have gaps (the Abilene file has two ranges: 14 days in
    March and 3 days in April 2004). The step is the most common spacing of the
    timestamps. With ``contiguous=True`` (default) only the longest run of rows
    spaced exactly one step apart is kept (the first one on ties), so a
    simulation never jumps across a gap; with ``contiguous=False`` every row is
    kept, rows are treated as consecutive steps, and ``timestamps`` keep the gap.

    Parameters
    ----------
    path : str or Path
        The ``.csv`` or ``.csv.gz`` file.
    topology : Topology, optional
        When given, every pair must name nodes of this topology.
    contiguous : bool
        Keep only the longest gap-free range (see above).

    Returns
    -------
    Traffic

    Raises
    ------
    ValueError
        If the file has no ``timestamp`` column, no pair column, a column that
        is not ``SRC>DST``, a duplicate column, a bad timestamp, duplicate
        timestamps, a missing, non-numeric, negative or infinite value (the
        message names the column and row), or pairs naming nodes unknown to
        ``topology``.
    FileNotFoundError
        If the file does not exist.

    Examples
    --------
    >>> tr = load_abilene()
    >>> tr.n_steps, len(tr.pairs), tr.step_seconds
    (4032, 132, 300)
    >>> str(pd.Timestamp(tr.timestamps[0], unit="s"))
    '2004-03-01 00:00:00'
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"traffic file {path} does not exist")
    header = _read_header(path)
    if "timestamp" not in header:
        raise ValueError(
            f"{path}: no 'timestamp' column; the header starts {header[:4]} "
            "(expected 'timestamp' and one 'SRC>DST' column per pair, in Mbit/s)"
        )
    dups = sorted({c for c in header if header.count(c) > 1})
    if dups:
        raise ValueError(f"{path}: duplicate columns {dups[:5]}")
    pair_cols = [c for c in header if c != "timestamp"]
    if not pair_cols:
        raise ValueError(f"{path}: no pair columns besides 'timestamp'")
    pairs: list[tuple[str, str]] = []
    for col in pair_cols:
        parts = col.split(">")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}: column {col!r} is not a pair named 'SRC>DST'")
        pairs.append((parts[0].strip(), parts[1].strip()))

    try:
        frame = pd.read_csv(path, dtype={"timestamp": str}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{path}: cannot parse as CSV ({exc})") from exc
    if frame.empty:
        raise ValueError(f"{path}: no rows")

    try:
        times = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: bad timestamp ({exc})") from exc
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise ValueError(f"{path}: missing timestamp in data row {row + 1}")
    epoch = times.dt.tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64)

    values = np.empty((len(frame), len(pair_cols)), dtype=float)
    for j, col in enumerate(pair_cols):
        raw = frame[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(num) | (num < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{path}: column {col!r}, data row {row + 1}: value {raw.iloc[row]!r} is "
                "missing, not a number, negative or infinite (expected Mbit/s >= 0)"
            )
        values[:, j] = num

    order = np.argsort(epoch, kind="stable")
    epoch, values = epoch[order], values[order]
    if epoch.size > 1 and (np.diff(epoch) == 0).any():
        i = int(np.flatnonzero(np.diff(epoch) == 0)[0])
        stamp = pd.Timestamp(int(epoch[i]), unit="s", tz="UTC").isoformat()
        raise ValueError(f"{path}: duplicate timestamp {stamp}")
    if epoch.size > 1:
        diffs, counts = np.unique(np.diff(epoch), return_counts=True)
        step = int(diffs[np.argmax(counts)])
    else:
        step = 300
    if contiguous and epoch.size > 1:
        run = _longest_run(epoch, step)
        epoch, values = epoch[run], values[run]
    traffic = Traffic(epoch, values * 1e6, tuple(pairs), step)
    if topology is not None:
        traffic.check_nodes(topology)
    return traffic


def load_abilene(*, contiguous: bool = True, topology: Topology | None = None) -> Traffic:
    """The shipped Abilene 2004 traffic matrices (5-minute steps, 132 pairs).

    With ``contiguous=True`` this is 2004-03-01 to 2004-03-14 (4,032 steps);
    with ``contiguous=False`` all 4,896 matrices including April 2 to 4.
    See :func:`load_traffic_csv`.
    """
    return load_traffic_csv(_data_path(ABILENE_CSV), topology=topology, contiguous=contiguous)
