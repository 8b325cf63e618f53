#!/usr/bin/env bash
# One command: set up the environment, then run the demo (toy data -> features -> head training -> evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mdmf demo "$@"
