"""`--shard auto`: the shard from a Slurm job array or torchrun's variables; `i/n` as given."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MICRO_CONFIG
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.sharding import resolve_shard
from mdmf.pipeline.features.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env,expected", [
    ({}, (0, 1)),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "4"}, (0, 4)),  # --array=1-4
    ({"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_MAX": "30", "SLURM_ARRAY_TASK_STEP": "10"}, (2, 4)),  # --array=0-30:10
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2)),  # torchrun
    ({"RANK": "0", "WORLD_SIZE": "1"}, (0, 1)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0", "RANK": "1",
      "WORLD_SIZE": "2"}, (3, 6)),  # an array job of torchrun runs: task 1's second process
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, (0, 1)),  # a batch script sees these outside srun: not read
])
def test_auto_takes_the_shard_from_the_scheduler(env, expected):
    index, count, source = resolve_shard("auto", env)
    assert (index, count) == expected
    assert bool(source) == (expected != (0, 1))
    if "SLURM_ARRAY_TASK_ID" in env:
        assert f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']}" in source


def test_every_task_of_an_array_gets_another_shard():
    for low, step, count in [(0, 1, 5), (1, 1, 4), (3, 7, 3)]:
        ids = [low + k * step for k in range(count)]
        got = [resolve_shard("auto", {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": str(count),
                                      "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(ids[-1]),
                                      "SLURM_ARRAY_TASK_STEP": str(step)})[:2] for i in ids]
        assert got == [(k, count) for k in range(count)]


def test_explicit_shard_wins_and_bad_values_are_user_errors():
    slurm = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_shard("1/3", slurm) == (1, 3, "")
    for text in ("1-3", "3/3", "0/0"):
        with pytest.raises(MdmfError, match="--shard"):
            resolve_shard(text, {})
    irregular = {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
                 "SLURM_ARRAY_TASK_MAX": "9"}  # --array=1,4,9
    with pytest.raises(MdmfError, match="--shard i/n"):
        resolve_shard("auto", irregular)
    with pytest.raises(MdmfError, match="SLURM_ARRAY_TASK_COUNT"):
        resolve_shard("auto", {"SLURM_ARRAY_TASK_ID": "0"})
    with pytest.raises(MdmfError, match="RANK"):
        resolve_shard("auto", {"RANK": "x", "WORLD_SIZE": "2"})


def test_the_cli_extracts_the_slurm_array_tasks_shard(small_dataset, tmp_path):
    """`mdmf extract` in task 2 of `--array=1-2`: shard 1/2 is filled, shard 0's units stay pending, and it says
    where the shard came from."""
    root, splits = small_dataset
    out = tmp_path / "store"
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_MAX": "2", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "mdmf", "extract", "--dataset", "small", "--root", str(root),
                           "--splits", str(splits), "--out", str(out), "--backbone", str(MICRO_CONFIG), "--weights",
                           "random", "--chunk-videos", "1", "--workers", "0", "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "shard 1/2 (from SLURM_ARRAY_TASK_ID=2 - SLURM_ARRAY_TASK_MIN=1 of SLURM_ARRAY_TASK_COUNT=2)" in done.stderr
    store = FeatureStore.open(out)
    for split in ("train", "val", "test"):
        units = -(-len(store.status(split)) // store.chunk_videos)
        assert store.pending_units(split, 1, 2) == []
        assert store.pending_units(split, 0, 2) == [u for u in range(units) if u % 2 == 0]
