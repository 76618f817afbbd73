"""What-if and N-1 risk endpoints: seconds per call on a seeded network, and how far the
estimated demands put the worst utilisations from those of the true demands.

Issue 10's target: the N-1 scan of a 100-link network within one tick's budget (under
1 s). The network is bench/n1_scan.py's synthetic backbone (``--links`` directed links,
drawn by ``--seed``, routed by great-circle distance from the node coordinates given as
link labels), registered with POST /links. Its traffic: a gravity demand between every
two nodes scaled so the busiest link runs at 40 %, each pair varying by +-30 % over the
``--horizon`` steps (a sine of random phase), routed to link loads and stored as one
issue of hybrid forecasts, as the engine stores them. Then, in process (the app under
Starlette's TestClient: no network between client and server; the wall time, and the
CPU time of this process, which a busy machine inflates less; PostgreSQL's time is in
the wall time only):

* GET /risk and GET /whatif (the worst cable failed): "cold", the first call on a
  network the process has not estimated (tomogravity runs); "warm", the next calls on
  the same forecasts (the estimate is kept); "each new issue", the first call after the
  engine issues the next forecasts (the demands tracked from the last issue's), median
  of ``--repeat``;
* their parts: the database reads, the demand estimate, the horizon scan, and
  network.reroute.n1_scan run once per horizon step for comparison;
* the worst utilisation of each single failure from the estimated demands against that
  from the true ones (max abs difference, and whether the 10 worst agree).

Uses an embedded PostgreSQL in a temporary directory, or ``--database-url`` (a scratch
database: it must hold no links, and the run's rows are left there). BLAS runs on one
thread.

With ``--accuracy``, instead: on the real Abilene 2004 matrices (``--windows`` one-hour
windows at random starts drawn by ``--seed``), the loads re-routed around every cable
from the estimated demands against those from the true demands, on the links the cut
shifts by more than 10 %, with the true loads as forecasts (so only the estimate errs):
the horizon estimate of network.whatif, tomogravity at every step, and the estimate
tracked over 24 issues in a row (each from the one before).

    python bench/whatif.py [--links 100] [--horizon 12] [--seed 0] [--repeat 5]
    python bench/whatif.py --accuracy [--windows 10] [--seed 0]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import numpy as np  # noqa: E402
from sqlalchemy import text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.n1_scan import backbone, demands  # noqa: E402
from db.live import array_literal, insert_forecasts  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.queries import create_token  # noqa: E402
from db.session import make_engine, make_sessionmaker, session_scope  # noqa: E402
from db.topology import link_records  # noqa: E402
from db.whatif import latest_issue, links_down  # noqa: E402
from network.reroute import n1_scan  # noqa: E402
from network.routing import route  # noqa: E402
from network.whatif import estimate_demands, horizon_scan, what_if  # noqa: E402

T = TypeVar("T")
Timing = tuple[float, float]  # median wall seconds, median CPU seconds of this process


def _seconds(fn: Callable[[], T], repeat: int) -> tuple[Timing, T]:
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return (statistics.median(walls), statistics.median(cpus)), out  # repeat >= 1


def _shifted_error(r, est: np.ndarray, truth: np.ndarray, y: np.ndarray) -> list[float]:  # noqa: ANN001
    """Median relative error of the re-routed loads on the shifted links, per cable."""
    out = []
    for unit in r.topology.duplex_groups():
        want = what_if(r, truth, y, unit)
        shifted = (np.abs(want.loads_bps - y) > 0.1 * np.maximum(y, 1.0)).any(axis=0)
        shifted &= want.routing.alive
        if shifted.any():
            got = what_if(r, est, y, unit).loads_bps[:, shifted]
            ref = want.loads_bps[:, shifted]
            out.append(float(np.median(np.abs(got - ref) / np.maximum(ref, 1.0))))
    return out


def accuracy(windows: int, horizon: int, seed: int) -> None:
    from network.demand import tomogravity
    from simulator.topology import load_topology
    from simulator.traffic import load_abilene

    net = load_topology("abilene").network
    tr = load_abilene()
    r = route(net, tr.pairs)
    tracked_issues = 24
    starts = np.random.default_rng(seed).choice(
        len(tr.demands_bps) - horizon - tracked_issues, windows, replace=False
    )
    errors: dict[str, list[float]] = {"horizon": [], "every step": [], "tracked": []}
    for s0 in starts.tolist():
        truth = tr.demands_bps[s0 : s0 + horizon]
        y = r.loads(truth)
        errors["horizon"] += _shifted_error(r, estimate_demands(r, y).demands_bps, truth, y)
        errors["every step"] += _shifted_error(r, tomogravity(r, y).demands_bps, truth, y)
        est = estimate_demands(r, y)
        for k in range(1, tracked_issues + 1):
            truth = tr.demands_bps[s0 + k : s0 + k + horizon]
            y = r.loads(truth)
            est = estimate_demands(r, y, prior_bps=est.demands_bps[1])
        errors["tracked"] += _shifted_error(r, est.demands_bps, truth, y)
    print(
        f"Abilene 2004, {windows} windows of {horizon} steps (seed {seed}), every cable cut:"
        " relative error of the re-routed loads on the links it shifts by > 10 %"
    )
    print(f"{'estimate':<40}{'median':>10}{'p90':>10}{'cases':>8}")
    names = {
        "horizon": "network.whatif (tomogravity + step)",
        "every step": "tomogravity at every step",
        "tracked": f"tracked over {tracked_issues} issues",
    }
    for key, errs in errors.items():
        med, p90 = np.median(errs), np.quantile(errs, 0.9)
        print(f"{names[key]:<40}{med:>10.3f}{p90:>10.3f}{len(errs):>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--links", type=int, default=100, help="directed links (2 per cable)")
    ap.add_argument("--horizon", type=int, default=12, help="forecast steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="warm calls timed (median)")
    ap.add_argument("--database-url", default=None, help="a scratch database (no links)")
    ap.add_argument("--accuracy", action="store_true", help="the Abilene accuracy run instead")
    ap.add_argument("--windows", type=int, default=10, help="--accuracy: one-hour windows")
    args = ap.parse_args()
    if args.accuracy:
        accuracy(args.windows, args.horizon, args.seed)
        return

    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.routes import whatif as routes
    from linkcast.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="linkcast-whatif-"))
    url = args.database_url
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(data_dir / "pg")
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    with engine.connect() as conn:
        if conn.scalar(text("SELECT count(*) FROM link")):
            sys.exit(f"{url} holds links: give a scratch database")
    with session_scope(make_sessionmaker(engine)) as session:
        token = create_token(session=session, scope="admin", name="bench").token
    h = {"Authorization": f"Bearer {token}"}

    topo = backbone(args.links, args.seed)
    r = route(topo)
    base = demands(topo, r, args.seed)
    rng = np.random.default_rng(args.seed + 2)
    phase = rng.uniform(0, 2 * np.pi, len(base))

    def truth_from(first: int) -> np.ndarray:
        """(T, P) true demands of the horizon starting ``first`` steps on."""
        steps = np.arange(first, first + args.horizon)[:, None]
        return base[None, :] * (1 + 0.3 * np.sin(2 * np.pi * steps / 24 + phase[None, :]))

    truth = truth_from(0)
    loads = r.loads(truth)
    issued = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)

    with TestClient(create_app(Settings(database_url=url, data_dir=data_dir))) as client:
        for lk in topo.links:
            (sx, sy), (dx, dy) = topo.positions[lk.src], topo.positions[lk.dst]
            labels = {"src_lon": sx, "src_lat": sy, "dst_lon": dx, "dst_lat": dy}
            record = {"name": lk.name, "capacity_bps": lk.capacity_bps, "labels": labels}
            client.post("/api/v1/links", json=record, headers=h).raise_for_status()
        with engine.connect() as conn:
            ids = {name: i for name, i in conn.execute(text("SELECT name, id FROM link"))}

        def store(at: datetime, y: np.ndarray) -> None:
            """One issue of hybrid forecasts, as the engine stores them."""
            rows = []
            for i, name in enumerate(topo.link_names):
                v = array_literal(y[:, i].tolist())
                rows.append(f"{ids[name]}\thybrid\t{at.isoformat()}\t60\t{v}\t{v}\t{v}\n")
            with engine.begin() as conn:
                insert_forecasts(conn, rows)

        store(issued, loads)

        def risk() -> Any:
            resp = client.get("/api/v1/risk", headers=h)
            resp.raise_for_status()
            return resp.json()

        def cold(call):  # noqa: ANN001, ANN202
            def run():  # noqa: ANN202
                routes._cache.clear()
                routes._tracks.clear()
                return call()

            return run

        risk_cold, body = _seconds(cold(risk), max(1, args.repeat // 2))
        risk_warm, body = _seconds(risk, args.repeat)
        worst = body["scenarios"][0]

        def whatif() -> Any:
            params = {"fail": worst["failed"][0]}
            resp = client.get("/api/v1/whatif", params=params, headers=h)
            resp.raise_for_status()
            return resp.json()

        whatif_cold, _ = _seconds(cold(whatif), max(1, args.repeat // 2))
        whatif_warm, _ = _seconds(whatif, args.repeat)

        # The steady state: a new issue every step, each first call tracked from the last.
        walls, cpus = [], []
        for k in range(1, args.repeat + 1):
            store(issued + timedelta(seconds=60 * k), r.loads(truth_from(k)))
            (wall, cpu), tracked_body = _seconds(risk, 1)
            walls.append(wall)
            cpus.append(cpu)
        risk_next = (statistics.median(walls), statistics.median(cpus))
        last_truth = truth_from(args.repeat)

    sm = make_sessionmaker(engine)

    def reads() -> None:
        with sm() as session:
            link_records(session=session)
            latest_issue(session=session, model="hybrid")
            links_down(session=session, now=datetime.now(UTC))

    read_s, _ = _seconds(reads, args.repeat)
    routed = route(topo)
    stored = loads.astype(np.float32).astype(float)
    est_s, est = _seconds(lambda: estimate_demands(routed, stored), max(1, args.repeat // 2))
    scan_s, scan = _seconds(lambda: horizon_scan(routed, est.demands_bps, stored), args.repeat)
    n1_s, _ = _seconds(lambda: [n1_scan(routed, x) for x in est.demands_bps], args.repeat)
    true_scan = horizon_scan(routed, truth, stored)
    diff = np.nanmax(np.abs(scan.worst_utilisation - true_scan.worst_utilisation))
    top = 10
    agree = set(scan.ranking()[:top].tolist()) == set(true_scan.ranking()[:top].tolist())
    # The last tracked issue: its answer against the true demands' scan.
    last = horizon_scan(routed, last_truth, r.loads(last_truth).astype(np.float32).astype(float))
    expect = {
        tuple(routed.topology.link_names[i] for i in u): w
        for u, w in zip(last.units, last.worst_utilisation, strict=True)
    }
    track_diff = max(
        abs(sc["worst_utilisation"] - expect[tuple(sc["failed"])])
        for sc in tracked_body["scenarios"]
    )
    engine.dispose()

    print(
        f"network: {len(topo.links)} links, {len(topo.nodes)} nodes, {len(routed.pairs)} pairs,"
        f" {len(scan.units)} cables; horizon {args.horizon} steps; seed {args.seed}"
    )
    load = os.getloadavg()[0]
    n_cpu = os.cpu_count()
    print(f"{'call':<44}{'wall s':>10}{'CPU s':>10}   (load average {load:.1f}, {n_cpu} CPUs)")
    for name, secs in (
        ("GET /risk, cold (estimate made)", risk_cold),
        ("GET /risk, warm (estimate kept)", risk_warm),
        ("GET /risk, each new issue (tracked)", risk_next),
        ("GET /whatif, cold", whatif_cold),
        ("GET /whatif, warm", whatif_warm),
        ("  database reads (links, forecasts, events)", read_s),
        ("  demand estimate, whole horizon", est_s),
        ("  horizon scan, every cable", scan_s),
        ("  n1_scan once per step (comparison)", n1_s),
    ):
        print(f"{name:<44}{secs[0]:>10.3f}{secs[1]:>10.3f}")
    print(
        f"demand fit error {est.fit_error:.2e}; worst utilisation per failure, estimated vs"
        f" true demands: max abs difference {diff:.4f}; {top} worst the same: {agree}"
    )
    print(
        f"after {args.repeat} tracked issues: worst utilisation of the"
        f" {len(tracked_body['scenarios'])} worst failures against the true demands',"
        f" max abs difference {track_diff:.4f};"
        f" fit error {tracked_body['demand_fit_error']:.2e}"
    )
    print(
        f"worst failure: {worst['failed']} -> {worst['worst_link']} at"
        f" {worst['worst_utilisation']:.3f} of capacity"
    )


if __name__ == "__main__":
    main()
