"""Database outage under load, the long runs (issue 14): what tests/api/test_db_outage.py
does in CI (one 30-s stop of each kind at about 20,000 samples/s), for longer outages,
higher rates and more runs, and the TCP cut of the earlier test.

Each run starts its own stack (tests/api/outage.py): ``server`` is `linkcast api
--workers 2` and `linkcast engine` on a private PostgreSQL stopped with ``pg_ctl stop -m
fast`` and started again; ``proxy`` is the same behind a TCP proxy that is cut while the
server runs on; ``embedded`` is `linkcast up` on its embedded PostgreSQL, stopped and
kept from starting for the outage, then started again by `linkcast up` itself. Prints,
per run, the samples acknowledged, stored, refused, lost and doubled, the first 503
after the stop and the first 2xx after the database's return, and the forecasts across
the outage; exits 1 if a sample was lost or doubled, a refused request stored in part,
or a forecast missing or doubled.

    python bench/outage.py --fault all --outage 60 --rate 30000 --runs 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.api.outage import (  # noqa: E402
    Load,
    Report,
    embedded_stack,
    run_outage,
    server_stack,
)

FAULTS = ("server", "embedded", "proxy")


def _one(fault: str, workdir: Path, args: argparse.Namespace) -> Report:
    load = Load(rate=args.rate, clients=args.clients, max_attempts=args.max_attempts)
    if fault == "embedded":
        with embedded_stack(workdir, args.step) as (stack, stop, _):
            report = run_outage(stack, stop, load, args.outage)
            print(f"linkcast up started its database again {stop.restart_s:.3f} s after it could")
            return report
    with server_stack(workdir, args.step, proxy=fault == "proxy") as (stack, cut):
        return run_outage(stack, cut, load, args.outage)


def _failures(r: Report) -> list[str]:
    wrong = {
        "lost": r.lost,
        "doubled": r.doubled,
        "wrong value": r.wrong,
        "not sent": r.not_sent,
        "stored in part": len(r.stored_partial),
        "forecasts missing": len(r.forecasts_missing),
        "forecasts doubled": r.forecasts_doubled,
    }
    return [f"{k} {v}" for k, v in wrong.items() if v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=[*FAULTS, "all"], default="all")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--rate", type=float, default=30_000, help="samples/s in all")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-attempts", type=int, default=5, help="per request, 503 retries")
    parser.add_argument("--step", type=int, default=2, help="the engine's grid, seconds")
    parser.add_argument("--runs", type=int, default=1, help="runs per fault")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    faults = FAULTS if args.fault == "all" else (args.fault,)
    failed = False
    for fault in faults:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix=f"outage-{fault}-") as tmp:
                report = _one(fault, Path(tmp), args)
            bad = _failures(report)
            within = (
                f"first 503 within 1 s: {report.first_503_s < 1.0}, first 2xx within 5 s"
                f" of the return: {report.first_2xx_s < 5.0}"
            )
            verdict = "FAILED: " + ", ".join(bad) if bad else "ok"
            print(f"run {run + 1} of {fault}: {within}; {verdict}")
            failed = failed or bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
