"""Fuzz the API: schemathesis against linkcast's OpenAPI document, the long run (issue 14).

Serves the app (uvicorn in this process) on a real database, gives it a few rows to find
(a link, samples, an event, a silence), creates an admin token and runs `st run` with
every phase (examples, coverage, fuzzing, stateful) and every check, as the CI test
tests/api/test_fuzz.py does with far fewer cases; see tests/api/fuzzing.py for the one
check adjusted (a 422 to a valid request passes only where the document states the rule
in words). Prints the test cases generated, the requests the server answered (by
status), the failures by check and operation, and how long it took.

The database is embedded (a fresh one in a temporary directory) unless --database-url:
then use a scratch database, as the run writes links, events and silences into it.

    python bench/fuzz.py --max-examples 1000 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.api.fuzzing import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--max-examples",
        type=int,
        default=1000,
        help="test cases per operation in the fuzzing phase (1000: over 10,000 requests in all)",
    )
    ap.add_argument("--seed", type=int, default=1, help="schemathesis' seed (printed to rerun)")
    ap.add_argument("--workers", type=int, default=2, help="concurrent schemathesis workers")
    ap.add_argument(
        "--database-url",
        default=os.environ.get("LINKCAST_DATABASE_URL"),
        help="a scratch PostgreSQL database (default: LINKCAST_DATABASE_URL, else embedded)",
    )
    ap.add_argument("--report-dir", type=Path, help="where st writes its JSON report")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="linkcast-fuzz-"))
    url = args.database_url
    if not url:
        from db.embedded import embedded_url

        url = embedded_url(work / "pg")
    run = fuzz(
        url,
        work / "data",
        max_examples=args.max_examples,
        seed_value=args.seed,
        workers=args.workers,
        report_dir=args.report_dir or work / "report",
    )
    print(run.output)
    print("command:", " ".join(run.command))
    print(f"test cases generated: {run.generated}")
    print(f"requests answered:    {run.tally.requests}")
    statuses = Counter()
    for (_, _, status), n in run.tally.counts.items():
        statuses[status] += n
    print("  by status:", ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"duration:             {run.seconds:.0f} s")
    print("failures by check:   ", run.failures or "none")
    for code, operation in sorted(run.found):
        print(f"  {code} {operation}")
    print("errors:              ", len(run.report.get("errors") or []))
    return 1 if run.found or run.report.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
