#!/usr/bin/env bash
# One command: set up the environment, then run the demo (toy data -> features -> head training -> evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One torch thread, as the numbers in BENCHMARKS.md were measured: the small heads train faster that way on 2 cores
# (docs/TOY.md), and float sums then come out the same on every machine (2 threads gave 79.0 instead of 79.1 % once).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/mdmf demo "$@"
