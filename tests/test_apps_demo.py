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
        cfg = DemoConfig(data_root=str(root), steps=2, episodes=40, val_episodes=20, seed=seed, workers=0, progress=False)
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


def test_demo_compare_trains_every_head_and_compares_them_on_the_same_episodes(toy_dataset, tmp_path, monkeypatch):
    from mdmf.pipeline.apps.demo_compare import demo_heads, run_demo_compare
    from mdmf.registry import MODELS

    monkeypatch.chdir(tmp_path)
    root, _ = toy_dataset
    out = io.StringIO()
    cfg = DemoConfig(data_root=str(root), steps=1, episodes=30, val_episodes=10, shots=(1,), seed=0, workers=0, progress=False)
    result = run_demo_compare(cfg, Console(file=out, width=160),
                              show_compare=lambda s, c: c.print(", ".join(r["name"] for r in s["methods"])))
    trainable, fixed = demo_heads()
    assert sorted(trainable + fixed) == sorted(MODELS) and "otam" in fixed
    assert set(result["heads"]) == set(trainable)
    summary = result["shots"]["1"]
    assert [r["name"] for r in summary["methods"]] == trainable + fixed and summary["baseline"] == "otam"
    for row in summary["methods"]:
        assert (row["difference"] is None) == (row["name"] == "otam")
        assert (tmp_path / "runs" / f"demo-compare-{row['name']}").is_dir() == (row["name"] in trainable)
    assert ", ".join(trainable + fixed) in out.getvalue()
    assert json.loads((tmp_path / "runs" / "demo-compare.json").read_text()) == result
