#!/usr/bin/env bash
# The prepared device run (benchmarks/device_check.py): set up what the benchmarks need, then run the five sections.
#
#   bash benchmarks/device_check.sh --out DIR [--bundle FILE] [--commit HASH] [device_check.py options]
#   bash benchmarks/device_check.sh --help      # the sections and their time budgets
#
# Set-up (at most about 30 s of the 8 minutes), the first that applies:
#   1. the interpreter ($PYTHON, else .venv/bin/python, else python3) already imports mdmf and what it needs: nothing;
#   2. a folder of wheels (.whl/, or $MDMF_WHEELS) is there: the GPU machines this workplace lends have torch but no
#      network and not all of mdmf's dependencies; `bash benchmarks/device_wheels.sh` fills .whl/ on a machine with
#      internet (carry it to the device), and they are installed from it, offline, with mdmf itself (editable);
#   3. otherwise scripts/setup.sh (a .venv with torch from PyPI: needs the network).
set -uo pipefail
cd "$(dirname "$0")/.."
for a in "$@"; do
  if [ "$a" = "--help" ] || [ "$a" = "-h" ]; then exec "${PYTHON:-python3}" benchmarks/device_check.py --help; fi
done
start=$(date +%s)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
ready() { "$1" -c 'import mdmf.pipeline.features.extract, open_clip, av, zarr, typer, rich, h5py' >/dev/null 2>&1; }
WHEELS=${MDMF_WHEELS:-.whl}
if ready "$PY"; then
  echo "setup: $PY already has mdmf and its dependencies"
elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "setup: installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS and mdmf (editable) into $PY, offline"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check "$WHEELS"/*.whl || exit 1
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -e . || exit 1
else
  echo "setup: no usable interpreter and no wheels in $WHEELS: scripts/setup.sh (needs the network)"
  bash scripts/setup.sh || exit 1
  PY=.venv/bin/python
fi
if ! ready "$PY"; then
  echo "setup failed: $PY cannot import mdmf and its dependencies:" >&2
  "$PY" -c 'import mdmf.pipeline.features.extract, open_clip, av, zarr, typer, rich, h5py' >&2
  exit 1
fi
echo "setup: done in $(( $(date +%s) - start )) s"
export HF_HUB_OFFLINE=1
exec "$PY" benchmarks/device_check.py --python "$PY" "$@"
