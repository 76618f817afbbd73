"""Traffic: the sum-of-sines generator and the replay of CSV matrices."""

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

import simulator
from simulator.traffic import DAY_SECONDS, WEEK_SECONDS, Traffic, load_traffic_csv, sine_traffic

ABILENE_CSV = Path(simulator.__file__).parent / "data" / "abilene" / "abilene-tm-5min-2004.csv.gz"


def _csv_rows():
    with gzip.open(ABILENE_CSV, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def test_abilene_replay_reproduces_csv_totals():
    header, rows = _csv_rows()
    full = load_traffic_csv(ABILENE_CSV, contiguous=False)
    assert full.n_steps == len(rows) == 4896
    assert full.pair_names == tuple(header[1:])
    row_sums = np.array([sum(float(v) for v in row[1:]) for row in rows])
    np.testing.assert_allclose(full.demands_bps.sum(axis=1), row_sums * 1e6, rtol=1e-12)
    # One cell, exactly: first row, first pair, Mbit/s -> bit/s.
    assert full.demands_bps[0, 0] == float(rows[0][1]) * 1e6


def test_abilene_longest_contiguous_range(abilene_traffic):
    tr = abilene_traffic
    assert tr.n_steps == 14 * 288 and tr.step_seconds == 300
    assert set(np.diff(tr.timestamps)) == {300}
    assert str(np.datetime64(int(tr.timestamps[0]), "s")) == "2004-03-01T00:00:00"
    assert str(np.datetime64(int(tr.timestamps[-1]), "s")) == "2004-03-14T23:55:00"
    full = load_traffic_csv(ABILENE_CSV, contiguous=False)
    gaps = np.flatnonzero(np.diff(full.timestamps) != 300)
    assert len(gaps) == 1 and gaps[0] + 1 == tr.n_steps
    np.testing.assert_array_equal(full.demands_bps[: tr.n_steps], tr.demands_bps)


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


GOOD = "timestamp,a>b,b>a\n2024-01-01T00:00:00Z,1,2\n2024-01-01T00:05:00Z,3,4.5\n"


def test_small_csv_roundtrip(tmp_path):
    tr = load_traffic_csv(_write(tmp_path / "t.csv.gz", GOOD))
    assert tr.pairs == (("a", "b"), ("b", "a"))
    np.testing.assert_array_equal(tr.demands_bps, [[1e6, 2e6], [3e6, 4.5e6]])
    assert tr.step_seconds == 300
    assert tr.timestamps[0] == 1704067200


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,a>b\n2024-01-01T00:00:00Z,1\n", "no 'timestamp' column"),
        ("timestamp,ab\n2024-01-01T00:00:00Z,1\n", "column 'ab' is not a pair"),
        ("timestamp,a>b\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,lots\n", "'a>b', data row 2"),
        ("timestamp,a>b\n2024-01-01T00:00:00Z,\n", "'a>b', data row 1"),
        ("timestamp,a>b\n2024-01-01T00:00:00Z,-1\n", "negative"),
        ("timestamp,a>b\nyesterday,1\n", "bad timestamp"),
        ("timestamp,a>b\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:00Z,2\n", "duplicate timestamp"),
        ("timestamp,a>b,a>b\n2024-01-01T00:00:00Z,1,2\n", "duplicate columns"),
        ("timestamp\n2024-01-01T00:00:00Z\n", "no pair columns"),
    ],
)
def test_bad_csv_errors_are_clear(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_traffic_csv(_write(tmp_path / "bad.csv", text))


def test_csv_pairs_must_name_topology_nodes(tmp_path, abilene):
    path = _write(tmp_path / "t.csv", "timestamp,ATLAM5>Mars\n2024-01-01T00:00:00Z,1\n")
    with pytest.raises(ValueError, match="ATLAM5>Mars"):
        load_traffic_csv(path, topology=abilene)


def test_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_traffic_csv(tmp_path / "nope.csv.gz")


def test_sine_same_seed_same_traffic_other_seed_other(nobel):
    a = sine_traffic(nobel, n_steps=50, seed=1)
    b = sine_traffic(nobel, n_steps=50, seed=1)
    c = sine_traffic(nobel, n_steps=50, seed=2)
    np.testing.assert_array_equal(a.demands_bps, b.demands_bps)
    assert not np.allclose(a.demands_bps, c.demands_bps)


def test_sine_shape_scale_and_gravity(nobel):
    tr = sine_traffic(nobel, n_steps=2016, step_seconds=300, total_bps=5e10, seed=0)
    assert tr.demands_bps.shape == (2016, 28 * 27)
    assert (tr.demands_bps > 0).all()
    # One week covers whole daily and weekly periods: the mean total is the scale.
    assert tr.demands_bps.sum(axis=1).mean() == pytest.approx(5e10, rel=0.02)
    deg = nobel.degree()
    means = tr.demands_bps.mean(axis=0)
    heavy = [i for i, (s, d) in enumerate(tr.pairs) if deg[s] >= 4 and deg[d] >= 4]
    light = [i for i, (s, d) in enumerate(tr.pairs) if deg[s] == 2 and deg[d] == 2]
    assert means[heavy].mean() > 3 * means[light].mean()


def test_sine_periods_and_longitude_phase(abilene):
    step = 900
    week = sine_traffic(abilene, n_steps=2 * WEEK_SECONDS // step, step_seconds=step, noise=0.0)
    half = WEEK_SECONDS // step
    np.testing.assert_allclose(week.demands_bps[:half], week.demands_bps[half:], rtol=1e-9)
    lon = {n: abilene.positions[n][0] for n in abilene.nodes}
    west = [i for i, (s, d) in enumerate(week.pairs) if lon[s] < -110 and lon[d] < -110]
    east = [i for i, (s, d) in enumerate(week.pairs) if lon[s] > -90 and lon[d] > -90]

    def daily_peak_hour_utc(cols):
        # Phase of the daily Fourier component of the mean normalised profile.
        profile = (week.demands_bps[:, cols] / week.demands_bps[:, cols].mean(axis=0)).mean(axis=1)
        t = np.arange(profile.size) * step
        coef = np.sum(profile * np.exp(-2j * np.pi * t / DAY_SECONDS))
        return (-np.angle(coef) / (2 * np.pi) * 24) % 24

    # Evenings at 20:00 local time: Eastern pairs (UTC-5) peak near 01:00 UTC,
    # Pacific ones (UTC-8) about three hours later.
    east_peak, west_peak = daily_peak_hour_utc(east), daily_peak_hour_utc(west)
    assert 0 <= east_peak <= 2.5
    assert 1.5 <= (west_peak - east_peak) % 24 <= 4.5


def test_sine_rejects_bad_parameters(nobel):
    with pytest.raises(ValueError, match="n_steps"):
        sine_traffic(nobel, n_steps=0)
    with pytest.raises(ValueError, match="total_bps"):
        sine_traffic(nobel, total_bps=-1)
    with pytest.raises(ValueError, match="weights lack"):
        sine_traffic(nobel, weights={"Amsterdam": 1.0})


def test_traffic_validates_shapes():
    with pytest.raises(ValueError, match="shape"):
        Traffic(np.arange(3), np.zeros((2, 1)), (("a", "b"),), 60)
    with pytest.raises(ValueError, match="increasing"):
        Traffic(np.array([0, 0]), np.zeros((2, 1)), (("a", "b"),), 60)
