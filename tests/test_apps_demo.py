"""`mdmf demo`'s pipeline function on the small session toy set: seeds keep their own store, run and results."""

import io
import json

from rich.console import Console

from mdmf.pipeline.apps.demo import DemoConfig, run_demo


def test_each_seed_gets_its_own_store_and_run_and_a_rerun_reuses_them(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's default paths are relative: cache/toy/tiny…, runs/…
    root, _ = toy_dataset

    def demo(seed: int) -> tuple[dict, str]:
        out = io.StringIO()
        cfg = DemoConfig(data_root=str(root), steps=2, episodes=40, seed=seed, workers=0, progress=False)
        return run_demo(cfg, Console(file=out, width=120)), out.getvalue()

    first, printed = demo(0)
    assert "OTAM on raw CLIP features" in printed and "CLIP-MDMF head (trained)" in printed
    assert set(first) == {"otam", "mdmf"} and set(first["mdmf"]) == {"1", "5"}
    assert all(r["episodes"] == 40 and 0 <= r["accuracy"] <= 100 for m in first.values() for r in m.values())
    assert json.loads((tmp_path / "runs" / "demo-results.json").read_text()) == first

    second, _ = demo(1)  # another seed after seed 0: no store-mismatch error, no resuming seed 0's run
    assert (tmp_path / "cache" / "toy" / "tiny-seed1").is_dir() and (tmp_path / "cache" / "toy" / "tiny").is_dir()
    for name, seed in (("demo-mdmf", 0), ("demo-mdmf-seed1", 1)):
        assert json.loads((tmp_path / "runs" / name / "config.json").read_text())["train"]["seed"] == seed
    assert json.loads((tmp_path / "runs" / "demo-results-seed1.json").read_text()) == second
    assert second["otam"]["1"]["seed"] == 1

    again, printed = demo(0)  # same seed again: the finished extraction and training are reused
    assert again == {m: {s: {**r, "seconds": again[m][s]["seconds"]} for s, r in by.items()} for m, by in first.items()}
