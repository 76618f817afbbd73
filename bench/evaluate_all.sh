#!/usr/bin/env bash
# Regenerate bench/results/: the paper's experiment (linkcast evaluate) for
#   nobel-eu (28 nodes, the paper's Euro28 stand-in) with synthetic sum-of-sines traffic,
#   abilene with the real 2004 traffic matrices shipped in simulator/data/abilene/,
# each for the drastic, moderate and mixed scenarios, seed 0, full protocol
# (8 days of 5-minute steps: 6 days warm-up, 1 day before and 1 day after the failure).
# Each run takes about 3.5 (abilene) to 7 (nobel-eu) minutes; torch runs on one thread.
# bench/results/README.md (the reading of the results) is written by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
LINKCAST=${LINKCAST:-.venv/bin/linkcast}
SEED=${SEED:-0}

"$LINKCAST" evaluate --topology nobel-eu --traffic sine --seed "$SEED" \
    --out bench/results/nobel-eu-sine
"$LINKCAST" evaluate --topology abilene --traffic abilene --seed "$SEED" \
    --out bench/results/abilene-real
