"""`mdmf ablate`: the paper's tables as presets, and a grid that skips done cells and resumes interrupted ones."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mdmf.pipeline.apps.ablate
import mdmf.pipeline.apps.compare
import mdmf.pipeline.train.loop
from mdmf.config import ModelConfig
from mdmf.pipeline.apps.ablate import AblateConfig, cell_state, load_table, run_ablation
from mdmf.pipeline.core.errors import MdmfError
from synthetic import make_store

REPO = Path(__file__).resolve().parents[1]


def test_presets_hold_the_papers_grids():
    sizes = {3: 6, 4: 4, 5: 12}
    for table, size in sizes.items():
        header, cells = load_table(table)
        assert header["shot"] == 5 and len(cells) == size
        assert len({c.cell for c in cells}) == size
        assert len({json.dumps(c.overrides, sort_keys=True) for c in cells}) == size  # every cell differs
        for c in cells:
            assert set(c.paper) == {"kinetics100", "ssv2_small", "hmdb51"}
            defaults = ModelConfig().to_dict()
            assert c.overrides and all(k in defaults for k in c.overrides)
    full = {"kinetics100": 93.5, "ssv2_small": 60.4, "hmdb51": 83.0}  # METHOD §10: distillation + PPS
    assert next(c for c in load_table(4)[1] if c.cell == "distill-pps").paper == full
    assert next(c for c in load_table(5)[1] if c.cell == "tv-bi").paper == full
    t3 = {c.cell: c for c in load_table(3)[1]}
    assert t3["gtc-pps"].overrides == {"views": "global", "pps": True}
    assert t3["gtc-pps"].paper == {"kinetics100": 93.2, "ssv2_small": 58.6, "hmdb51": 82.4}
    assert t3["ntc"].overrides == {"views": "ntc", "pps": False}
    t5 = {c.cell: c.overrides for c in load_table(5)[1]}
    assert t5["none-g2l"] == {"distill_condition": "none", "distill_direction": "g2l"}
    with pytest.raises(MdmfError, match="3, 4, 5"):
        load_table(6)


@pytest.fixture
def counted(monkeypatch):
    """Records every train and evaluate_split call the grid makes."""
    calls = {"train": [], "eval": 0}
    real_train, evaluate = mdmf.pipeline.train.loop.train, mdmf.pipeline.apps.compare.per_episode_accuracy
    # ablate imports both names at module level, so they are replaced there (and in loop, for other callers)

    def train(cfg, resume=False, steps=None):
        calls["train"].append((Path(cfg.run_dir).name, resume))
        return real_train(cfg, resume=resume, steps=steps)

    def per_episode_accuracy(*args, **kw):
        calls["eval"] += 1
        return evaluate(*args, **kw)

    monkeypatch.setattr(mdmf.pipeline.train.loop, "train", train)
    monkeypatch.setattr(mdmf.pipeline.apps.ablate, "train", train)
    monkeypatch.setattr(mdmf.pipeline.apps.ablate, "per_episode_accuracy", per_episode_accuracy)
    return calls


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ablate") / "store")


def grid(store, runs, **kw):
    base = dict(dataset="synthetic", table=4, cache=str(store.path), runs=str(runs), cells=("pps", "plain"), shot=1,
                steps=2, episodes=60, val_every=1, val_episodes=20, episodes_per_step=2, device="cpu", progress=False)
    return AblateConfig(**{**base, **kw})


def test_finished_cells_are_skipped_and_only_missing_work_is_redone(store, tmp_path, counted):
    first = run_ablation(grid(store, tmp_path))
    assert sorted(counted["train"]) == [("ablate-synthetic-t4-plain", False), ("ablate-synthetic-t4-pps", False)]
    assert counted["eval"] == 2 and [r["state"] for r in first["cells"]] == ["train", "train"]
    assert json.loads((tmp_path / "ablate-synthetic-t4.json").read_text())["cells"] == first["cells"]
    assert "| pps |" in (tmp_path / "ablate-synthetic-t4.md").read_text()
    # the cells' paired difference to the first one, from the per-episode accuracies kept beside each eval file
    base, other = first["cells"]
    assert first["baseline"] == base["cell"] and base["difference"] is None
    per_episode = [np.array(json.loads(Path(r["result"]).with_suffix(".episodes.json").read_text()))
                   for r in (base, other)]
    d = per_episode[1] - per_episode[0]
    assert len(d) == 60 and np.mean(per_episode[0]) == pytest.approx(base["accuracy"])
    assert other["difference"]["mean"] == pytest.approx(d.mean())
    assert other["difference"]["ci95"] == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(60))
    flipped = run_ablation(grid(store, tmp_path, baseline=other["cell"]))
    assert flipped["cells"][0]["difference"]["mean"] == pytest.approx(-d.mean()) and counted["eval"] == 2

    again = run_ablation(grid(store, tmp_path))
    assert len(counted["train"]) == 2 and counted["eval"] == 2  # nothing redone
    assert [r["state"] for r in again["cells"]] == ["done", "done"]
    assert [r["accuracy"] for r in again["cells"]] == [r["accuracy"] for r in first["cells"]]

    (tmp_path / "ablate-synthetic-t4-pps" / "eval" / "test_5w1s_seed0.json").unlink()
    run_ablation(grid(store, tmp_path))
    assert len(counted["train"]) == 2 and counted["eval"] == 3  # re-evaluated, not retrained

    run_ablation(grid(store, tmp_path, episodes=80))  # another episode count: evaluate again, train nothing
    assert len(counted["train"]) == 2 and counted["eval"] == 5

    shown = run_ablation(grid(store, tmp_path, cells=("plain",), episodes=80))  # done cells not asked for are listed
    assert [r["cell"] for r in shown["cells"]] == ["plain", "pps"] and counted["eval"] == 5


def test_an_interrupted_cell_resumes_from_its_checkpoint(store, tmp_path, counted):
    cfg = grid(store, tmp_path, cells=("pps",), steps=3)
    run = cfg.run_dir("pps")
    # a run of this cell that stopped after its step-1 checkpoint (as after a crash or Ctrl-C)
    mdmf.pipeline.train.loop.train(mdmf.pipeline.train.loop.TrainConfig(
        store=str(store.path), run_dir=str(run), model={"name": "mdmf", "views": "both", "distill_condition": "off",
                                                        "pps": True},
        shot=1, steps=1, episodes_per_step=2, batch_episodes=2, val_every=1, val_episodes=20, device="cpu",
        progress=False))
    assert cell_state(run, cfg, 1) == "resume"
    result = run_ablation(cfg)
    assert counted["train"] == [("ablate-synthetic-t4-pps", False), ("ablate-synthetic-t4-pps", True)]
    assert result["cells"][0]["state"] == "resume"
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert steps == [1, 2, 3]

    (run.parent / "ablate-synthetic-t4-plain").mkdir()
    (run.parent / "ablate-synthetic-t4-plain" / "config.json").write_text("{}")  # died before any checkpoint
    assert cell_state(run.parent / "ablate-synthetic-t4-plain", cfg, 1) == "restart"
    run_ablation(grid(store, tmp_path, cells=("plain",), steps=3))
    assert counted["train"][-1] == ("ablate-synthetic-t4-plain", False)


def test_a_cell_folder_made_with_other_settings_is_refused(store, tmp_path):
    run_ablation(grid(store, tmp_path, cells=("pps",)))
    config = tmp_path / "ablate-synthetic-t4-pps" / "config.json"
    saved = json.loads(config.read_text())
    saved["model"]["pps"] = False
    config.write_text(json.dumps(saved))
    with pytest.raises(MdmfError, match="pps=False"):
        run_ablation(grid(store, tmp_path, cells=("pps",), episodes=70))


def test_cli_runs_a_cell_and_reports_user_errors(store, tmp_path):
    args = [sys.executable, "-m", "mdmf", "ablate", "--dataset", "synthetic", "--table", "4", "--cache",
            str(store.path), "--runs", str(tmp_path), "--cell", "pps", "--shot", "1", "--steps", "1", "--episodes", "50",
            "--val-every", "1", "--val-episodes", "10", "--episodes-per-step", "2", "--device", "cpu", "--quiet"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "paper" in proc.stdout and "93.1" in proc.stdout  # the paper's Kinetics number of this cell
    data = json.loads((tmp_path / "ablate-synthetic-t4.json").read_text())
    assert data["cells"][0]["cell"] == "pps" and data["cells"][0]["episodes"] == 50
    bad = subprocess.run(args[:6] + ["--table", "6", "--cache", str(store.path)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "3, 4, 5" in bad.stderr and "Traceback" not in bad.stderr
