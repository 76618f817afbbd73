"""``linkcast evaluate``: the offline experiment writes well-formed results, as a user runs it."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from linkcast.cli import app
from simulator.evaluate import MODELS, RESULT_COLUMNS, SCENARIOS, Protocol, run_evaluation

DATA = Path(__file__).resolve().parents[2] / "simulator" / "data" / "abilene"
TOPOLOGY_XML = DATA / "abilene-topology.xml"
TRAFFIC_CSV = DATA / "abilene-tm-5min-2004.csv.gz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluate")
    run_evaluation(
        topology="abilene",
        topology_file=None,
        traffic="sine",
        traffic_file=None,
        scenarios=["drastic", "mixed"],
        seed=3,
        out=out,
        quick=True,
        progress=False,
    )
    return out


def test_protocol_windows_are_fixed_durations():
    full, quick = Protocol.for_run(300, quick=False), Protocol.for_run(300, quick=True)
    assert (full.warmup_steps, full.pre_steps, full.post_steps) == (1728, 288, 288)
    assert full.failure_step == 2016 and full.n_steps == 2304
    assert (quick.failure_step, quick.n_steps) == (288, 360)
    assert Protocol.for_run(60, quick=False).pre_steps == 1440


def test_results_csv_is_well_formed(quick_run: Path):
    frame = pd.read_csv(quick_run / "results.csv")
    assert tuple(frame.columns) == RESULT_COLUMNS
    assert list(zip(frame["scenario"], frame["model"], strict=True)) == [
        (s, m) for s in ("drastic", "mixed") for m in MODELS
    ]
    assert len(MODELS) >= 7 and sum(m.startswith("incremental_b") for m in MODELS) >= 3
    for col in (
        "rmse_pre",
        "rmse_post",
        "rmse_post_1h",
        "rmse_post_h6",
        "rmse_post_h12",
        "rmse_post_mbps",
        "mape_pre",
        "mape_post",
        "coverage",
        "coverage_pre",
    ):
        assert frame[col].map(math.isfinite).all(), col
        assert (frame[col] >= 0).all(), col
    assert frame["coverage"].between(0, 1).all()
    assert (frame["n_links"] > 0).all()
    ttc = frame["ttc_steps"].dropna()
    assert ((ttc >= 0) & (ttc == ttc.round())).all()
    inc = frame[frame["model"].str.startswith("incremental_b")]
    assert inc["retrain_every"].notna().all() and inc["n_fits"].notna().all()
    # horizon 1 is the easiest: on average longer horizons err more
    assert frame["rmse_post_h12"].mean() > frame["rmse_post"].mean()


def test_report_names_settings_and_links_to_plots(quick_run: Path):
    report = (quick_run / "report.md").read_text()
    for needle in (
        "seed: 3",
        "`abilene`",
        "sine",
        "quick run",
        "warm-up",
        "pre window",
        "post window",
        "### drastic",
        "### mixed",
        "| liquid |",
        "| hybrid |",
        "ttc_steps",
        "% of the link",
        "scored",
    ):
        assert needle in report, needle
    for scenario in ("drastic", "mixed"):
        for kind in ("error", "link"):
            png = quick_run / f"{kind}_{scenario}.png"
            assert f"({png.name})" in report
            assert png.read_bytes().startswith(PNG_MAGIC)
            assert png.stat().st_size > 10_000


def test_cli_quick_with_user_files_end_to_end(tmp_path: Path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--quick",
            "--topology-file",
            str(TOPOLOGY_XML),
            "--traffic-file",
            str(TRAFFIC_CSV),
            "--scenario",
            "drastic",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "results.csv" in result.stdout
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["model"]) == list(MODELS) and set(frame["scenario"]) == {"drastic"}
    assert frame["rmse_post"].map(math.isfinite).all()
    report = (out / "report.md").read_text()
    assert "seed: 1" in report and "abilene-tm-5min-2004.csv.gz" in report
    assert (out / "error_drastic.png").read_bytes().startswith(PNG_MAGIC)


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
        (["--topology", "nobel-eu", "--traffic-file", str(TRAFFIC_CSV)], "nobel-eu"),
        (["--topology", "nobel-eu", "--traffic", "abilene"], "nobel-eu"),
        (["--topology", "abilene", "--traffic", "zipf"], "unknown traffic 'zipf'"),
        (["--topology-file", str(TOPOLOGY_XML), "--traffic-file", "SHORT"], "needs 2304"),
    ],
    ids=["topology", "scenario", "traffic-file", "traffic-abilene", "traffic-kind", "too-short"],
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
