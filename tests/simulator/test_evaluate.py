"""``linkcast evaluate``: seeds, protocol sizing, statistics and well-formed outputs.

The runs here are small on purpose: a user's own traffic file of 3.35 days of
15-minute matrices for six pairs on the Abilene topology (the shape that was once
refused), run quick over two seeds in two worker processes, and once with the full
protocol sized to it.
"""

from __future__ import annotations

import gzip
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import simulator.evaluate as evaluate
from linkcast.cli import app
from network.reroute import failure_shift, scale_shift
from network.routing import route
from simulator.estimation import ESTIMATION_COLUMNS
from simulator.evaluate import (
    DETECTED_MODELS,
    MODELS,
    REROUTE_MODELS,
    RESULT_COLUMNS,
    SCENARIOS,
    Protocol,
    SeedTask,
    build_scenarios,
    parse_seeds,
    run_evaluation,
)
from simulator.report import SUMMARY_COLUMNS, summarize, t_interval, win_counts, with_skill
from simulator.topology import load_sndlib_xml, load_topology
from simulator.traffic import load_traffic_csv, sine_traffic

DATA = Path(__file__).resolve().parents[2] / "simulator" / "data" / "abilene"
TOPOLOGY_XML = DATA / "abilene-topology.xml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A few pairs across the network: enough for drastic and mixed failures, none moderate.
USER_PAIRS = (
    "NYCMng>LOSAng",
    "LOSAng>NYCMng",
    "SNVAng>WASHng",
    "ATLAng>STTLng",
    "HSTNng>CHINng",
    "DNVRng>ATLAM5",
)
USER_STEPS, USER_STEP_SECONDS = 322, 900
TOTALS = ("fitted", "measured")  # 3.35 days of 15-minute matrices


def _write_traffic_csv(path: Path, n_steps: int, step_seconds: int) -> Path:
    """A user's traffic file: timestamp, then one SRC>DST column per pair in Mbit/s."""
    topo = load_sndlib_xml(TOPOLOGY_XML)
    tr = sine_traffic(topo, n_steps=n_steps, step_seconds=step_seconds, seed=11, total_bps=1e11)
    cols = [tr.pair_names.index(p) for p in USER_PAIRS]
    frame = pd.DataFrame(tr.demands_bps[:, cols] / 1e6, columns=list(USER_PAIRS))
    frame.insert(0, "timestamp", pd.to_datetime(tr.timestamps, unit="s", utc=True))
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False, date_format="%Y-%m-%dT%H:%M:%SZ", float_format="%.3f")
    return path


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traffic") / "user-15min.csv.gz"
    return _write_traffic_csv(path, USER_STEPS, USER_STEP_SECONDS)


@pytest.fixture(scope="module")
def multi_seed(tmp_path_factory: pytest.TempPathFactory, user_csv: Path):
    """``linkcast evaluate --quick --seeds 0-1 --workers 2`` as a user runs it."""
    out = tmp_path_factory.mktemp("multi")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "linkcast.cli",
            "evaluate",
            "--quick",
            "--topology-file",
            str(TOPOLOGY_XML),
            "--traffic-file",
            str(user_csv),
            "--seeds",
            "0-1",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, proc


# -- protocol ---------------------------------------------------------------------------


def test_protocol_windows_are_fixed_durations():
    full, quick = Protocol.for_run(300, quick=False), Protocol.for_run(300, quick=True)
    assert (full.warmup_steps, full.pre_steps, full.post_steps) == (1728, 288, 288)
    assert full.failure_step == 2016 and full.n_steps == 2304
    assert (quick.failure_step, quick.n_steps) == (288, 360)
    assert Protocol.for_run(60, quick=False).pre_steps == 1440
    # a long file gets the standard protocol: 8 days of it per seed
    assert Protocol.fit(300, 4032) == Protocol(300, 1728, 288, 288, False, 4032)
    assert not Protocol.fit(300, 4032).shortened


@pytest.mark.parametrize(
    ("step_seconds", "available", "expected"),
    [
        (900, 322, (130, 96, 96)),  # 3.35 days of 15 min: 1-day windows, the rest warm-up
        (900, 240, (96, 72, 72)),  # exactly 2.5 days: one season of warm-up, 18-hour windows
        (300, 720, (288, 216, 216)),
        (300, 2000, (1424, 288, 288)),  # 6.9 days: 1-day windows, 4.9 days of warm-up
        (300, 2304, (1728, 288, 288)),  # 8 days: the standard protocol
    ],
)
def test_protocol_is_sized_to_a_short_file(step_seconds, available, expected):
    p = Protocol.fit(step_seconds, available)
    assert (p.warmup_steps, p.pre_steps, p.post_steps) == expected
    assert p.n_steps <= available
    assert p.pre_steps == p.post_steps <= p.season_steps
    assert p.warmup_steps >= p.season_steps
    assert p.shortened == (available < 2304 * 300 // step_seconds)
    # every incremental schedule and its window fit in the warm-up
    assert all(p.retrain_every(b) <= p.warmup_steps for b in evaluate.RETRAIN_BATCHES)
    assert p.retrain_window <= p.warmup_steps
    if p.shortened:
        assert f"{available} steps" in p.describe() and "sized to the traffic" in p.describe()
    # a file with less than a day to spare is one window, the same for every seed
    if available - p.n_steps < p.season_steps:
        assert {p.window_start(s) for s in range(10)} == {0}


def test_retrain_schedules_scale_only_when_the_warmup_is_short():
    full = Protocol.for_run(300, quick=False)
    assert full.retrain_scale == 1
    assert [full.retrain_every(b) for b in (72, 288, 1008)] == [72, 288, 1008]
    assert full.retrain_window == 576 and "scaled" not in full.describe_retrain()
    short = Protocol.fit(900, 322)
    assert [short.retrain_every(b) for b in (72, 288, 1008)] == [9, 37, 130]
    assert short.retrain_window == 74
    assert "scaled by 0.129" in short.describe_retrain()


def test_too_short_traffic_is_a_clear_error():
    assert Protocol.minimum_steps(900) == 240 and Protocol.minimum_steps(300) == 720
    with pytest.raises(ValueError) as err:
        Protocol.fit(900, 239)
    msg = str(err.value)
    for needle in ("has 239 steps of 900 s", "at least 240 steps", "2.5 days", "2.5 seasons"):
        assert needle in msg, msg
    with pytest.raises(ValueError, match="a quick run needs 120 steps"):
        Protocol.fit(900, 100, quick=True)


def test_models_are_the_suites_in_its_order():
    suite = evaluate._make_suite(3, Protocol.fit(900, 322), seed=0)
    names = evaluate.result_models(suite.model_names)
    assert (*names, *REROUTE_MODELS, *DETECTED_MODELS) == MODELS
    assert MODELS[0] == "liquid"
    assert MODELS[-4:] == ("hybrid", "reroute", "reroute_persistence", "detected")
    assert [m for m in MODELS if m.startswith("incremental_b")] == [
        "incremental_b72",
        "incremental_b288",
        "incremental_b1008",
    ]


# -- seeds ------------------------------------------------------------------------------


def test_parse_seeds():
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,3,5-7") == [0, 3, 5, 6, 7]
    assert parse_seeds(" 4 ") == [4]
    assert parse_seeds("2,1-3") == [2, 1, 3]
    for bad in ("", "a", "3-1", "-2", "1,,2", "1.5"):
        with pytest.raises(ValueError, match="bad seeds"):
            parse_seeds(bad)


def test_two_seeds_draw_different_traffic_and_failures():
    topo = load_topology("abilene")
    p = Protocol.for_run(300, quick=True)
    tasks = [SeedTask(s, topo, None, ("drastic",), p) for s in (0, 1)]
    a, b = (t.traffic_for_seed() for t in tasks)
    assert a.demands_bps.shape == b.demands_bps.shape == (p.n_steps, len(topo.pairs))
    assert not np.allclose(a.demands_bps, b.demands_bps)
    assert np.array_equal(tasks[0].traffic_for_seed().demands_bps, a.demands_bps)
    failed = [
        build_scenarios(topo, t.traffic_for_seed(), t.scenarios, t.seed, p)[0]["drastic"]
        .scenario.events[0]
        .link
        for t in tasks
    ]
    assert failed[0] != failed[1]
    # a traffic file just the protocol's length is the same for every seed
    file_tr = sine_traffic(topo, n_steps=p.n_steps, seed=5)
    same = [SeedTask(s, topo, file_tr, ("drastic",), p).traffic_for_seed() for s in (0, 1)]
    assert np.array_equal(same[0].demands_bps, file_tr.demands_bps)
    assert np.array_equal(same[1].demands_bps, file_tr.demands_bps)


def test_seeds_take_their_own_whole_day_windows_of_longer_measured_traffic():
    topo = load_topology("abilene")
    quick = Protocol.for_run(300, quick=True)
    day = quick.season_steps
    long_tr = sine_traffic(topo, n_steps=quick.n_steps + 2 * day + day // 2, seed=5)
    p = Protocol.fit(300, long_tr.n_steps, quick=True)  # 2.5 days to spare: 3 windows
    starts = []
    for seed in range(5):
        tr = SeedTask(seed, topo, long_tr, ("drastic",), p).traffic_for_seed()
        assert tr.n_steps == p.n_steps
        start = int(np.searchsorted(long_tr.timestamps, tr.timestamps[0]))
        assert np.array_equal(tr.demands_bps, long_tr.demands_bps[start : start + p.n_steps])
        starts.append(start // day)
    assert starts == [0, 1, 2, 0, 1]


# -- statistics -------------------------------------------------------------------------

# t quantile 0.975 with 2 degrees of freedom (tables)
T975_DF2 = 4.302652729911275


def _tiny_frame() -> pd.DataFrame:
    rows = []
    # rmse_post per seed: liquid 4, 6, 5; incremental_b72 5, 6, 9; persistence 5, 5, 10
    post = {
        "liquid": (4.0, 6.0, 5.0),
        "incremental_b72": (5.0, 6.0, 9.0),
        "persistence": (5.0, 5.0, 10.0),
    }
    ttc = {"liquid": (3, None, 2), "incremental_b72": (4, None, 1), "persistence": (3, 8, None)}
    for seed in range(3):
        for model in post:
            row = {c: 1.0 for c in RESULT_COLUMNS}
            row.update(seed=seed, scenario="drastic", model=model)
            row["rmse_post"] = post[model][seed]
            row["rmse_pre"] = 2.0 + seed
            row["ttc_steps"] = ttc[model][seed]
            row["coverage"] = 0.8 + 0.05 * seed
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return frame.astype({"ttc_steps": "Int64"})


def test_t_interval_matches_a_hand_computation():
    x = np.array([4.0, 6.0, 5.0])
    half = T975_DF2 * x.std(ddof=1) / math.sqrt(3)
    mean, low, high, n = t_interval(x)
    assert n == 3 and mean == pytest.approx(5.0)
    assert (low, high) == pytest.approx((5.0 - half, 5.0 + half))
    assert (low, high) == pytest.approx((2.5158, 7.4842), abs=1e-4)
    assert t_interval([2.0, 2.0]) == (2.0, 2.0, 2.0, 2)
    m, lo, hi, n = t_interval([None, 3.0, float("nan")])
    assert (m, n) == (3.0, 1) and math.isnan(lo) and math.isnan(hi)


def test_summary_aggregates_over_seeds():
    summary = summarize(_tiny_frame())
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert list(dict.fromkeys(summary["model"])) == ["liquid", "incremental_b72", "persistence"]
    s = summary.set_index(["model", "metric", "horizon"])

    liquid = s.loc[("liquid", "rmse_post", 1)]
    half = T975_DF2 * 1.0 / math.sqrt(3)  # sd of 4, 6, 5 is 1
    assert (liquid["mean"], liquid["n_seeds"]) == (pytest.approx(5.0), 3)
    assert (liquid["ci_low"], liquid["ci_high"]) == pytest.approx((5 - half, 5 + half))

    # skill is paired per seed: 1 - 4/5, 1 - 6/5, 1 - 5/10 = 0.2, -0.2, 0.5
    skill = s.loc[("liquid", "skill_post", 1)]
    paired = np.array([0.2, -0.2, 0.5])
    half = T975_DF2 * paired.std(ddof=1) / math.sqrt(3)
    assert skill["mean"] == pytest.approx(paired.mean())  # 0.1667, not 1 - 5 / 6.67 = 0.25
    assert (skill["ci_low"], skill["ci_high"]) == pytest.approx(
        (paired.mean() - half, paired.mean() + half)
    )
    assert s.loc[("persistence", "skill_post", 1), "mean"] == 0

    # ttc over the seeds that converged; coverage as given
    ttc = s.loc[("liquid", "ttc_steps", 1)]
    assert (ttc["mean"], ttc["n_seeds"]) == (pytest.approx(2.5), 2)
    assert s.loc[("liquid", "coverage", 1), "mean"] == pytest.approx(0.85)
    # every metric at the horizons it has
    for metric in ("rmse_pre", "rmse_post", "skill_pre", "skill_post"):
        assert {h for (m, k, h) in s.index if m == "liquid" and k == metric} == {1, 6, 12}
    assert {k for (m, k, h) in s.index if m == "liquid"} >= {
        "ttc_steps",
        "ttc_minutes",
        "coverage",
        "coverage_pre",
    }


def test_skill_needs_the_same_seed_and_scenario():
    frame = _tiny_frame()
    # drop persistence for seed 2: that seed has no skill, the others keep theirs
    frame = frame[~((frame["seed"] == 2) & (frame["model"] == "persistence"))]
    skill = with_skill(frame).set_index(["seed", "model"])["skill_post"]
    assert skill[(0, "liquid")] == pytest.approx(0.2)
    assert math.isnan(skill[(2, "liquid")])


def test_win_counts_are_strict_and_paired():
    wins = win_counts(_tiny_frame()).set_index(["opponent", "metric"])
    assert list(dict.fromkeys(wins.index.get_level_values(0))) == [
        "incremental_b72",
        "persistence",
    ]
    # rmse_post liquid 4, 6, 5 against 5, 6, 9: two wins and a tie
    row = wins.loc[("incremental_b72", "rmse_post")]
    assert (row["wins"], row["ties"], row["losses"], row["n_seeds"]) == (2, 1, 0, 3)
    # ttc liquid 3, -, 2 against 3, 8, -: a missing ttc is worse than any
    row = wins.loc[("persistence", "ttc_steps")]
    assert (row["wins"], row["ties"], row["losses"]) == (1, 1, 1)
    # against incremental_b72: 3 vs 4 win, both missing tie, 2 vs 1 loss
    row = wins.loc[("incremental_b72", "ttc_steps")]
    assert (row["wins"], row["ties"], row["losses"]) == (1, 1, 1)


# -- runs -------------------------------------------------------------------------------


def test_multi_seed_quick_run_in_workers(multi_seed):
    out, proc = multi_seed
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # progress on stderr: a bar and a line per seed
    assert "evaluate 2 seeds" in proc.stderr
    assert "seed 0 done in" in proc.stderr and "seed 1 done in" in proc.stderr
    assert "summary.csv" in proc.stdout

    frame = pd.read_csv(out / "results.csv")
    assert tuple(frame.columns) == RESULT_COLUMNS
    # moderate: no failure of this file's pairs gives it, skipped for both seeds
    expected = [(s, sc, m) for s in (0, 1) for sc in ("drastic", "mixed") for m in MODELS]
    assert list(zip(frame["seed"], frame["scenario"], frame["model"], strict=True)) == expected
    for col in ("rmse_pre", "rmse_pre_h6", "rmse_pre_h12", "rmse_post", "rmse_post_h12"):
        assert frame[col].map(math.isfinite).all(), col
        assert (frame[col] >= 0).all(), col
    assert frame["coverage"].between(0, 1).all()
    ttc = frame["ttc_steps"].dropna()
    assert ((ttc >= 0) & (ttc == ttc.round())).all()
    inc = frame[frame["model"].str.startswith("incremental_b")]
    assert inc["retrain_every"].notna().all() and (inc["n_fits"] > 0).all()
    # the seeds are different repetitions (model initialisation, failures)
    liquid = frame[(frame["model"] == "liquid") & (frame["scenario"] == "drastic")]
    assert liquid["rmse_pre"].nunique() == 2
    # the re-route-aware copy is the same suite until the failure is known
    by = frame.set_index(["seed", "scenario", "model"])
    for (seed, scenario), _ in frame.groupby(["seed", "scenario"]):
        for aware, plain in (("reroute", "hybrid"), ("reroute_persistence", "persistence")):
            for col in ("rmse_pre", "rmse_pre_h12", "coverage_pre"):
                assert by.loc[(seed, scenario, aware), col] == by.loc[(seed, scenario, plain), col]

    summary = pd.read_csv(out / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert (summary.loc[summary["metric"] == "rmse_post", "n_seeds"] == 2).all()
    row = summary[
        (summary["scenario"] == "drastic")
        & (summary["model"] == "liquid")
        & (summary["metric"] == "rmse_pre")
        & (summary["horizon"] == 1)
    ].iloc[0]
    assert row["mean"] == pytest.approx(liquid["rmse_pre"].mean(), rel=1e-3)
    assert row["ci_low"] < row["mean"] < row["ci_high"]

    est = pd.read_csv(out / "estimation.csv")
    assert tuple(est.columns) == ESTIMATION_COLUMNS
    expected = [(s, sc, t) for s in (0, 1) for sc in ("drastic", "mixed") for t in TOTALS]
    assert list(zip(est["seed"], est["scenario"], est["totals"], strict=True)) == expected
    figures = est[["demand_error", "load_error", "prior_load_error", "ahead_load_error"]]
    assert figures.map(math.isfinite).all().all() and (figures >= 0).all().all()
    assert (est["n_steps"] == 4).all() and (est["n_links"] > 0).all()

    report = (out / "report.md").read_text()
    for needle in (
        "## Demand estimation (tomogravity)",
        "| drastic | measured | 2 |",
        "- edge links: measured (the re-route's tomogravity takes",
        "seeds: 0-1",
        "in 2 worker processes",
        "quick run",
        "`moderate` skipped for seeds 0-1",
        "% of the link mean load",
        "Skill against persistence",
        "ttc, steps",
        "ttc, minutes",
        "Wins of liquid",
        "First hour after the failure",
        "ratio to persistence",
        "| reroute |",
        "| reroute_persistence |",
        "**Known failure**",
        "| incremental_b1008 |",
        "### drastic",
        "### mixed",
    ):
        assert needle in report, needle
    for scenario in ("drastic", "mixed"):
        for kind in ("error", "link"):
            png = out / f"{kind}_{scenario}.png"
            assert f"({png.name})" in report
            assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 10_000


def test_a_short_user_file_runs_the_full_protocol(tmp_path: Path, user_csv: Path):
    tr = load_traffic_csv(user_csv)
    assert (tr.n_steps, tr.step_seconds, len(tr.pairs)) == (322, 900, 6)
    ev = run_evaluation(
        topology=None,
        topology_file=TOPOLOGY_XML,
        traffic_file=user_csv,
        scenarios=["drastic"],
        seeds=[3],
        out=tmp_path,
        progress=False,
        edge_links=False,
    )
    assert ev.ok and ev.seeds == (3,)
    frame = pd.read_csv(ev.results_csv)
    assert set(frame["seed"]) == {3} and list(frame["model"]) == list(MODELS)
    inc = frame.set_index("model")
    # the scaled schedules fit the 130-step warm-up: every variant was fitted
    assert inc.loc["incremental_b72", "retrain_every"] == 9
    assert (inc.loc[[m for m in MODELS if m.startswith("incremental_b")], "n_fits"] >= 2).all()
    report = ev.report_md.read_text()
    for needle in (
        "full run, sized to the traffic (322 steps",
        "- edge links: not measured (`--no-edge-links`",
        "warm-up 32.5 hours (130 steps",
        "pre window 1 day (96 steps)",
        "post window 1 day (96 steps)",
        "scaled by 0.129",
        "seeds: 3",
    ):
        assert needle in report, needle


def test_a_failed_seed_keeps_the_others(tmp_path: Path, user_csv: Path, monkeypatch):
    real = evaluate.run_models

    def flaky(results, protocol, seed, **kw):
        if seed == 1:
            raise RuntimeError("out of luck")
        return real(results, protocol, seed, **kw)

    monkeypatch.setattr(evaluate, "run_models", flaky)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--quick",
            "--topology-file",
            str(TOPOLOGY_XML),
            "--traffic-file",
            str(user_csv),
            "--scenario",
            "drastic",
            "--seeds",
            "0,1",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, output
    assert "seed 1 failed: RuntimeError: out of luck" in output
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["seed"]) == {0} and len(frame) == len(MODELS)
    report = (out / "report.md").read_text()
    assert "failed seeds: 1" in report and "out of luck" in report


# -- command line -----------------------------------------------------------------------


def _short_csv(path: Path) -> Path:
    rows = ["timestamp,ATLAng>CHINng,CHINng>ATLAng"]
    rows += [f"2004-03-01T{h:02d}:{m:02d}:00Z,10.0,12.5" for h in range(2) for m in range(0, 60, 5)]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topology", "atlantis"], "unknown topology 'atlantis'"),
        (["--topology", "abilene", "--scenario", "catastrophic"], "'catastrophic'; choose"),
        (
            ["--topology", "nobel-eu", "--traffic-file", str(DATA / "abilene-tm-5min-2004.csv.gz")],
            "nobel-eu",
        ),
        (["--topology", "nobel-eu", "--traffic", "abilene"], "nobel-eu"),
        (["--topology", "abilene", "--traffic", "zipf"], "unknown traffic 'zipf'"),
        (["--topology-file", str(TOPOLOGY_XML), "--traffic-file", "SHORT"], "at least 720 steps"),
        (["--topology", "abilene", "--seeds", "3-1"], "range 3-1 is empty"),
        (["--topology", "abilene", "--seeds", "x"], "bad seeds 'x'"),
        (["--topology", "abilene", "--seeds", "0-2", "--seed", "1"], "not both"),
    ],
    ids=[
        "topology",
        "scenario",
        "traffic-file",
        "traffic-abilene",
        "traffic-kind",
        "too-short",
        "seeds-empty",
        "seeds-bad",
        "seed-and-seeds",
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path: Path, args: list[str], message: str):
    args = [str(_short_csv(tmp_path / "short.csv.gz")) if a == "SHORT" else a for a in args]
    result = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path / "o"), *args])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    assert message in output
    assert not (tmp_path / "o" / "results.csv").exists()


def test_run_evaluation_rejects_unknown_scenario(tmp_path: Path):
    with pytest.raises(ValueError, match="valid: drastic, moderate, mixed"):
        run_evaluation(topology="abilene", scenarios=["sideways"], out=tmp_path, quick=True)
    assert SCENARIOS == ("drastic", "moderate", "mixed")


# -- the failure known at t = 0 (issue 10) ------------------------------------------------


@pytest.fixture(scope="module")
def known_runs() -> list[tuple[evaluate.ScenarioRun, evaluate.KnownFailure]]:
    """Quick drastic runs on Abilene with sine traffic, seeds 0-2, with the failure known."""
    topo = load_topology("abilene")
    p = Protocol.for_run(300, quick=True)
    out = []
    for seed in range(3):
        tr = SeedTask(seed, topo, None, ("drastic",), p).traffic_for_seed()
        results, _ = build_scenarios(topo, tr, ("drastic",), seed, p)
        known = {k: evaluate.KnownFailure.of(r, topo, tr.pairs) for k, r in results.items()}
        found = {k: evaluate.KnownFailure.detected(r, topo, tr.pairs) for k, r in results.items()}
        runs = evaluate.run_models(results, p, seed, known=known, detected=found)
        out.append((runs["drastic"], known["drastic"], found["drastic"]))
    return out


class _Told:
    """Stands in for the suite: keeps what a KnownFailure tells it."""

    def __init__(self) -> None:
        self.shift = self.down = None

    def set_reroute(self, shift, down, reissue=True):  # noqa: ANN001
        self.shift, self.down = shift, down


class _Stop(Exception):
    pass


@pytest.mark.parametrize("edge_links", [True, False])
def test_a_seed_gives_its_copies_the_edge_links_or_not(monkeypatch, edge_links):
    """``run_seed`` hands each scenario's KnownFailure copies the node totals through that
    scenario (``--edge-links``, the default) or none (``--no-edge-links``)."""
    topo = load_topology("abilene")
    p = Protocol.for_run(300, quick=True)
    task = SeedTask(0, topo, None, ("drastic", "moderate"), p, edge_links=edge_links)
    seen = {}

    def capture(results, protocol, seed, tick=None, known=None, detected=None):  # noqa: ANN001
        seen.update(results=results, known=known, detected=detected)
        raise _Stop

    calls = []
    real = evaluate.edge_loads

    def edge_loads(topology, traffic, scenario=None):  # noqa: ANN001, ANN202
        calls.append(scenario)
        return real(topology, traffic, scenario)

    monkeypatch.setattr(evaluate, "run_models", capture)
    monkeypatch.setattr(evaluate, "edge_loads", edge_loads)
    with pytest.raises(_Stop):
        evaluate.run_seed(task)
    tr = task.traffic_for_seed()
    # each scenario's own states decide what arrives (a stranded node's egress)
    want_calls = [r.scenario for r in seen["results"].values()] if edge_links else []
    assert calls == want_calls
    for name, result in seen["results"].items():
        for copy in (seen["known"][name], seen["detected"][name]):
            if not edge_links:
                assert copy.totals_at is None
                continue
            want = real(topo, tr, result.scenario)
            np.testing.assert_array_equal(copy.totals_at[0], want[0])
            np.testing.assert_array_equal(copy.totals_at[1], want[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_links_give_the_shift_the_traffics_node_totals(seed):
    """``--edge-links`` (the default): the shift is tomogravity's with the traffic entering
    and leaving at each node in the step before the failure as its prior's totals."""
    topo = load_topology("abilene")
    p = Protocol.for_run(300, quick=True)
    f = p.failure_step
    tr = SeedTask(seed, topo, None, ("drastic",), p).traffic_for_seed()
    res = build_scenarios(topo, tr, ("drastic",), seed, p)[0]["drastic"]
    out, inn = evaluate.edge_loads(topo, tr, res.scenario)
    n = len(topo.nodes)
    assert out.shape == inn.shape == (tr.n_steps, n)
    s = [topo.nodes.index(a) for a, _ in tr.pairs]
    d = [topo.nodes.index(b) for _, b in tr.pairs]
    np.testing.assert_allclose(out[f - 1], np.bincount(s, tr.demands_bps[f - 1], n))
    np.testing.assert_allclose(inn[f - 1], np.bincount(d, tr.demands_bps[f - 1], n))
    told, fitted = _Told(), _Told()
    evaluate.KnownFailure.of(res, topo, tr.pairs, (out, inn)).update(told, res.loads_bps, f)
    evaluate.KnownFailure.of(res, topo, tr.pairs).update(fitted, res.loads_bps, f)
    routing = route(topo.network, tr.pairs)
    failed = np.flatnonzero(told.down).tolist()
    want = failure_shift(routing, res.loads_bps[f - 1], failed, totals_bps=(out[f - 1], inn[f - 1]))
    np.testing.assert_allclose(told.shift, want.shift_bps, rtol=1e-9, atol=1e-3)
    assert not np.allclose(fitted.shift, told.shift, rtol=1e-3)  # the totals matter


def test_the_copy_is_told_of_the_failure_at_its_instant(known_runs):
    p = Protocol.for_run(300, quick=True)
    f = p.failure_step
    for run, known, _ in known_runs:
        assert run.models[-3:] == (*REROUTE_MODELS, *DETECTED_MODELS)
        res = run.result
        aware, plain = run.traces["reroute_persistence"], run.traces["persistence"]
        # before the failure the copy is the main suite
        np.testing.assert_array_equal(aware.forecast1[:f], plain.forecast1[:f])
        np.testing.assert_array_equal(aware.residual[:f], plain.residual[:f])
        # at the failure instant the forecast of step f is re-issued: the last load before
        # the failure plus the shift predicted from it (failed links 0)
        down = np.flatnonzero(known.down_at[f])
        fs = failure_shift(known.routing, res.loads_bps[f - 1], down.tolist())
        expect = np.where(fs.down, 0.0, np.maximum(res.loads_bps[f - 1] + fs.shift_bps, 0.0))
        np.testing.assert_allclose(aware.forecast1[f], expect, rtol=2e-3, atol=1.0)
        np.testing.assert_allclose(plain.forecast1[f], res.loads_bps[f - 1], rtol=2e-3)
        # as in the engine, the shift is estimated once and scaled to each step measured
        # under the failure: the forecast of f + 1 is the load of f, less the shift it
        # was seen with, plus the shift scaled by the total load of f
        post = len(range(f, p.n_steps))
        assert known.estimates == 1 and known.rescaled == post - 1
        ref = np.where(fs.down, 0.0, np.maximum(res.loads_bps[f - 1] + fs.measured_shift_bps, 0))
        scaled, _ = scale_shift(
            fs.shift_bps, ref, fs.down, res.loads_bps[f], step_seconds=p.step_seconds
        )
        assert not np.allclose(scaled, fs.shift_bps)  # the traffic moved between the two
        seen = np.maximum(res.loads_bps[f] - fs.shift_bps, 0.0)
        expect = np.where(fs.down, 0.0, np.maximum(seen + scaled, 0.0))
        np.testing.assert_allclose(aware.forecast1[f + 1], expect, rtol=2e-3, atol=1.0)


def test_a_known_failure_removes_most_of_the_jump(known_runs):
    """Seeds 0-2: the first post-failure step on the drastically shifted links. Persistence
    is off by the whole shift; knowing the failure leaves the estimation error (about
    15 %, issue 10). Means over seeds with margins (the hybrid involves torch)."""
    p = Protocol.for_run(300, quick=True)
    f = p.failure_step
    ratio: dict[str, list[float]] = {"reroute_persistence": [], "reroute": []}
    for run, _, _ in known_runs:
        links = list(run.result.target_links)
        jump = np.abs(run.traces["persistence"].residual[f, links, 0]).mean()
        for m in ratio:
            ratio[m].append(np.abs(run.traces[m].residual[f, links, 0]).mean() / jump)
        rows = {r["model"]: r for r in evaluate.score(run, p)}
        assert rows["reroute"]["rmse_post_1h"] < rows["persistence"]["rmse_post_1h"]
    assert np.mean(ratio["reroute_persistence"]) < 0.35
    assert np.mean(ratio["reroute"]) < 0.5


def test_the_cut_read_off_the_loads_shifts_the_forecasts_one_step_later(known_runs):
    """``detected`` is told of nothing: it reads the cut at the failure step itself, so
    its forecast of that step stands as the blind hybrid issued it, and from the next
    step on it is the copy told at t = 0 (same state: the shift was set before either
    took the failure step)."""
    p = Protocol.for_run(300, quick=True)
    f = p.failure_step
    ahead: dict[str, list[float]] = {"detected": [], "hybrid": []}
    for run, known, found in known_runs:
        np.testing.assert_array_equal(found.down_at, known.down_at)  # exact on a cut
        assert found.estimates == 1 and not found.reissue
        det, told, blind = (run.traces[m] for m in ("detected", "reroute", "hybrid"))
        np.testing.assert_array_equal(det.forecast1[: f + 1], blind.forecast1[: f + 1])
        np.testing.assert_array_equal(det.residual[f, :, 0], blind.residual[f, :, 0])
        np.testing.assert_allclose(det.forecast1[f + 1 :], told.forecast1[f + 1 :], rtol=1e-9)
        # 12-step forecasts issued in the hour after the cut was read (column 2: h = 12)
        links, hour = list(run.result.target_links), p.steps_of(3600)
        for m in ahead:
            r = run.traces[m].residual[f + 12 : f + 12 + hour, links, 2]
            ahead[m].append(float(np.sqrt(np.mean(r**2))))
    # the blind hybrid learns the new level from the loads that follow, the one that read
    # the cut forecasts it from the next step (means over the seeds: torch)
    assert np.mean(ahead["detected"]) < 0.8 * np.mean(ahead["hybrid"]), ahead  # 0.61 here


def test_the_report_says_how_the_seeds_share_measured_traffic():
    from types import SimpleNamespace

    from simulator.report import _same_or_own_window

    day = 86_400
    t0 = 1_078_099_200  # 2004-03-01
    seeds = [SimpleNamespace(first_ts=t0 + day * (s % 7)) for s in range(10)]
    text = _same_or_own_window(seeds)
    assert "7 different starts over 10 seeds" in text
    assert "2004-03-01" in text and "2004-03-07" in text and "not fully independent" in text
    same = [SimpleNamespace(first_ts=t0) for _ in range(3)]
    assert _same_or_own_window(same) == "; the traffic is the same for every seed"
    assert "starts 2004-03-04" in _same_or_own_window([SimpleNamespace(first_ts=t0 + 3 * day)])
