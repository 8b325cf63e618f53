#!/usr/bin/env bash
# One command: set up the environment, then run the whole test suite (CPU only, no network).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# One torch thread per test process: the small models here run faster that way on 2 cores (TOY.md).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
# Two test processes (pytest-xdist), a file's tests in one of them (module fixtures built once): most tests wait on a
# subprocess or run one thread, so two cores halve the time. MDMF_TEST_PROCESSES=0 runs in this process alone.
.venv/bin/python -m pytest -n "${MDMF_TEST_PROCESSES:-2}" --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": a test command that runs nothing is broken, not green.
  echo "error: pytest collected no tests (exit 5); the suite must not be empty" >&2
  exit 1
fi
exit "$rc"
