#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels that the lent GPU machines lack, for benchmarks/device_check.sh to install
# there offline. Run on a machine with internet. The versions are those this project is tested with; the machines'
# image has Python 3.12 on x86-64 with torch, numpy, typer, rich, h5py, matplotlib, timm and huggingface_hub, but not
# open_clip, PyAV or zarr (the list: the device tool's KINDS.md). About 46 MB; carry `.whl` with the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 av==18.1.0 zarr==3.1.6 numcodecs==0.16.6 \
  donfig==0.8.1.post1 google-crc32c==1.9.0
du -sh .whl
