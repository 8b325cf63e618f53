"""A run and a store are checked against each other before any work, through the real `mdmf` entry point: a store of
another encoder (weights sha256), another width (both ways round), other frames, sampling or normalisation is refused
in one line naming the field (`eval --cache`, `report --cache`, `train --init`); another dataset of the same encoder
only with --cross-dataset. Nothing is written by a refused command."""

from __future__ import annotations

from pathlib import Path

import pytest

from clirun import run_main
from mdmf.pipeline.runs import RunDir
from synthetic import make_store, tiny_run

ENCODER = {"weights_sha256": "a" * 64, "backbone": "RN50", "normalize": "clip"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fit")
    stores = {
        "same": make_store(base / "same", identity=ENCODER).path,
        "weights": make_store(base / "weights", identity={**ENCODER, "weights_sha256": "b" * 64}).path,
        "wide": make_store(base / "wide", dim=64, identity=ENCODER).path,
        "sampling": make_store(base / "sampling", identity={**ENCODER, "frame_sampling": "reference"}).path,
        "normalize": make_store(base / "normalize", identity={**ENCODER, "normalize": "none"}).path,
        "dataset": make_store(base / "dataset", identity={**ENCODER, "dataset": "other"}).path,
    }
    return {"narrow": tiny_run(stores["same"], base / "runs" / "narrow"),
            "wide": tiny_run(stores["wide"], base / "runs" / "wide")}, stores


def refused(capsys, *args, words=()) -> str:
    code, _, err = run_main(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err and all(w in lines[0] for w in words), lines
    return lines[0]


def evaluate(run: RunDir, store: Path, out: Path, *more) -> list:
    return ["eval", "--run", run.path, "--cache", store, "--episodes", "3", "--queries", "1", "--device", "cpu",
            "--quiet", "--out", out, *more]


@pytest.mark.parametrize("kind, words", [
    ("weights", ("weights_sha256='bbbbbbbbbbbbbbbb…'", "weights_sha256='aaaaaaaaaaaaaaaa…'", "same encoder")),
    ("wide", ("dim=64", "dim=32")),
    ("sampling", ("frame_sampling='reference'", "frame_sampling='tsn'")),
    ("normalize", ("normalize='none'", "normalize='clip'")),
])
def test_eval_refuses_a_store_of_another_encoder_or_recipe(runs, tmp_path, capsys, kind, words):
    narrow, stores = runs
    before = sorted(p.name for p in narrow["narrow"].path.iterdir())
    line = refused(capsys, *evaluate(narrow["narrow"], stores[kind], tmp_path / "out"), words=words)
    assert line.startswith(f"error: --cache {stores[kind]}") and "--cross-dataset" not in line
    refused(capsys, *evaluate(narrow["narrow"], stores[kind], tmp_path / "out", "--cross-dataset"), words=words)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in narrow["narrow"].path.iterdir()) == before


def test_the_width_is_refused_both_ways_round(runs, tmp_path, capsys):
    trained, stores = runs
    refused(capsys, *evaluate(trained["wide"], stores["same"], tmp_path / "out"), words=("dim=32", "dim=64"))
    refused(capsys, *evaluate(trained["narrow"], stores["wide"], tmp_path / "out"), words=("dim=64", "dim=32"))
    assert not (tmp_path / "out").exists()


def test_another_dataset_needs_cross_dataset(runs, tmp_path, capsys):
    trained, stores = runs
    refused(capsys, *evaluate(trained["narrow"], stores["dataset"], tmp_path / "out"),
            words=("dataset 'other'", "'synthetic'", "--cross-dataset"))
    assert not (tmp_path / "out").exists()
    code, _, err = run_main(capsys, *evaluate(trained["narrow"], stores["dataset"], tmp_path / "out",
                                               "--cross-dataset"))
    assert code == 0, err
    assert (tmp_path / "out" / "test_5w1s_seed0.json").is_file()
    code, _, err = run_main(capsys, *evaluate(trained["narrow"], stores["same"], tmp_path / "same"))
    assert code == 0, err


def test_report_and_train_init_refuse_another_encoder(runs, tmp_path, capsys):
    trained, stores = runs
    refused(capsys, "report", "--run", trained["narrow"].path, "--cache", stores["weights"], "--out",
            tmp_path / "report", "--quiet", words=("weights_sha256",))
    assert not (tmp_path / "report").exists()
    line = refused(capsys, "train", "--cache", stores["weights"], "--init", trained["narrow"].path, "--runs",
                   tmp_path / "runs", "--name", "ft", "--steps", "1", "--device", "cpu", "--quiet",
                   words=("--init", "weights_sha256"))
    assert str(stores["weights"]) in line and not (tmp_path / "runs" / "ft").exists()
