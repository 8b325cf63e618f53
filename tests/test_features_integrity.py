"""A damaged store is found, never read as zeros: each damage a bad copy or a full disk does to a finished unit (a
deleted chunk file, a truncated one, flipped bytes, random bytes, a garbage array zarr.json), generated here on a
real store and met through the real `mdmf` entry point (`eval`, `train`, `cache verify`); an untouched store passes,
and `mdmf extract` again redoes exactly the damaged units, giving the store byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clirun import run_main
from conftest import MICRO_CONFIG
from mdmf.pipeline.features.store import FeatureStore
from synthetic import make_store


def mdmf(capsys, *args) -> tuple[int, str, list[str]]:
    """(exit code, stdout, non-empty stderr lines) of `mdmf ARGS`."""
    code, out, err = run_main(capsys, *args)
    return code, out, [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING:")]


def refused(result, *words: str) -> str:
    code, _, lines = result
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "Traceback" not in lines[0] and all(w in lines[0] for w in words), lines
    return lines[0]


def chunk(store: Path, split: str, name: str, unit: int) -> Path:
    arr = FeatureStore.open(store).array(split, name)
    return store / split / name / arr.metadata.encode_chunk_key((unit,) + (0,) * (arr.ndim - 1))


def files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def flip(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGES = {
    "missing": lambda p: p.unlink(),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
    "flipped": flip,
    "random": lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, p.stat().st_size, np.uint8).tobytes()),
}
PROBLEM = {"missing": "chunk missing", "truncated": "does not decode", "flipped": "does not match its digest",
           "random": "does not match its digest"}


def eval_args(store):
    return ["eval", "--model", "otam", "--cache", store, "--episodes", "3", "--queries", "1", "--device", "cpu",
            "--quiet", "--out", Path(store).parent / "eval"]


def test_an_untouched_store_passes_and_loads(tmp_path, capsys):
    store = make_store(tmp_path / "s").path
    code, out, _ = mdmf(capsys, "cache", "verify", store, "--json", "-")
    report = json.loads(out)
    assert code == 0 and report["ok"] and all(s["digests"] and not s["damaged"] for s in report["splits"].values())
    assert mdmf(capsys, *eval_args(store))[0] == 0


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_each_damage_of_a_features_chunk_is_found_on_load_and_by_verify(tmp_path, capsys, damage):
    store = make_store(tmp_path / "s").path
    DAMAGES[damage](chunk(store, "test", "features", 1))
    before = files(store)
    line = refused(mdmf(capsys, *eval_args(store)), "split test is damaged", "unit 1 ", "videos 16-31",
                   PROBLEM[damage], "mdmf extract", "--repair")
    assert "features" in line and not (tmp_path / "eval").exists()  # no result from zeros
    code, out, _ = mdmf(capsys, "cache", "verify", store, "--json", "-")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [d["unit"] for d in report["splits"]["test"]["damaged"]] == [1]
    assert not report["splits"]["train"]["damaged"] and not report["splits"]["val"]["damaged"]
    assert files(store) == before  # reading and verifying change nothing

    # train reads the train split: the same refusal, and no run folder is started
    DAMAGES[damage](chunk(store, "train", "features", 2))
    refused(mdmf(capsys, "train", "--cache", store, "--runs", tmp_path / "runs", "--name", "r", "--steps", "1",
                 "--device", "cpu", "--quiet"), "split train is damaged", "unit 2 ")
    assert not (tmp_path / "runs" / "r").exists()

    code, out, _ = mdmf(capsys, "cache", "verify", store, "--repair")
    assert code == 0 and out.count("marked 1 units pending") == 2, out
    progress = FeatureStore.open(store).progress()
    assert progress["test"]["pending"] == 16 and progress["train"]["pending"] == 16  # exactly the damaged units
    assert mdmf(capsys, "cache", "verify", store)[0] == 0
    refused(mdmf(capsys, *eval_args(store)), "not fully extracted", "16 of 48")


def test_other_damages_are_one_line(tmp_path, capsys):
    store = make_store(tmp_path / "s").path
    chunk(store, "test", "digests", 2).unlink()  # a finished unit without its digests
    refused(mdmf(capsys, *eval_args(store)), "unit 2 ", "digests: missing")
    flip(chunk(store, "test", "frame_indices", 0), at=10)
    refused(mdmf(capsys, *eval_args(store)), "units 0 (videos 0-15: frame_indices", "2 (videos 32-47: digests")
    (store / "test" / "frame_indices" / "zarr.json").write_text('{"zarr_format": 3, garbage')
    refused(mdmf(capsys, *eval_args(store)), "test/frame_indices/zarr.json: damaged", "extract again")
    code, out, _ = mdmf(capsys, "cache", "verify", store)
    assert code == 1 and "test: damaged beyond repair by extracting" in out and "zarr.json" in out, out

    other = make_store(tmp_path / "o").path  # root attributes edited to frames: 4
    meta = json.loads((other / "zarr.json").read_text())
    meta["attributes"]["mdmf"]["frames"] = 4
    (other / "zarr.json").write_text(json.dumps(meta))
    refused(mdmf(capsys, *eval_args(other)), "frames=4", "frames=8")


def test_a_store_made_before_digests_loads_and_can_record_them(tmp_path, capsys):
    store = make_store(tmp_path / "s").path
    for split in ("train", "val", "test"):
        shutil.rmtree(store / split / "digests")  # what an older mdmf wrote
    assert mdmf(capsys, *eval_args(store))[0] == 0
    code, out, lines = mdmf(capsys, "cache", "verify", store)
    assert code == 0 and "no digests" in "\n".join(lines + [out]) and "--record" in "\n".join(lines + [out])
    chunk(store, "test", "features", 2).unlink()  # the existence check still finds a missing chunk
    refused(mdmf(capsys, *eval_args(store)), "unit 2 ", "chunk missing")
    assert mdmf(capsys, "cache", "verify", store, "--record")[0] == 0  # unit 2 pending, the others recorded
    assert FeatureStore.open(store).progress()["test"]["pending"] == 16
    flip(chunk(store, "test", "features", 0))  # now an altered byte is found too
    assert mdmf(capsys, "cache", "verify", store)[0] == 1


def extract_args(root, splits, out):
    return ["extract", "--dataset", "small", "--root", root, "--splits", splits, "--out", out, "--backbone",
            MICRO_CONFIG, "--weights", "random", "--chunk-videos", "1", "--workers", "0", "--split", "test",
            "--quiet"]


def test_extract_again_redoes_exactly_the_damaged_units_to_the_same_bytes(small_dataset, tmp_path, capsys,
                                                                          monkeypatch):
    root, splits = small_dataset
    store = tmp_path / "s"
    assert mdmf(capsys, *extract_args(root, splits, store))[0] == 0
    whole = files(store)
    chunk(store, "test", "features", 1).unlink()
    flip(chunk(store, "test", "features", 4))
    DAMAGES["truncated"](chunk(store, "test", "frame_indices", 5))
    redone = []
    original = FeatureStore.write_unit

    def write_unit(self, split, unit, *args, **kw):
        redone.append(unit)
        return original(self, split, unit, *args, **kw)

    monkeypatch.setattr(FeatureStore, "write_unit", write_unit)
    code, out, _ = mdmf(capsys, *extract_args(root, splits, store))
    assert code == 0 and sorted(redone) == [1, 4, 5]
    assert files(store) == whole
    assert json.loads((store / "summary.json").read_text())["redone_damaged"] == {"test": [1, 4, 5]}
