"""Presets: the shipped files build valid configs; `reference` selects the authors' choices; the CLI applies a preset
under explicit options; the learning-rate schedule is the published one, step by step."""

import dataclasses
import json

import pytest

from mdmf import ModelConfig
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.presets import load_preset, shipped_presets
from mdmf.pipeline.train.loop import TrainConfig, build_train_config
from synthetic import make_store

GIVEN = {"stage": "head", "store": "s", "run_dir": "r"}


def test_shipped_presets_are_listed_and_build_valid_configs():
    from mdmf.pipeline.features.recipe import ExtractConfig

    names = shipped_presets()
    assert "reference" in names and {f"clip-fsar-{d}" for d in ("hmdb51", "ucf101", "kinetics100", "ssv2_small",
                                                                  "ssv2_full")} <= set(names)
    assert not any(n.startswith("ablation_table") for n in names)
    extract_fields = {f.name for f in dataclasses.fields(ExtractConfig)}
    for name in names:
        p = load_preset(name)
        ModelConfig.from_dict(p.model)  # raises on an unknown field or value
        for stage in ("head", "e2e"):
            build_train_config(name, {**GIVEN, "stage": stage}, {})
        assert set(p.extract) <= extract_fields, name


def test_reference_preset_selects_every_reference_code_choice():
    """The choices of the authors' code, listed by hand from the issue's table (not read back from the file)."""
    p = load_preset("reference")
    m = ModelConfig.from_dict(p.model)
    assert (m.block, m.ff_dropout, m.attn_dropout, m.position_embedding, m.ltce) == ("reference", 0.05, 0.2, False,
                                                                                      "reference")
    assert (m.prompt_cosine_eps, m.reliability_ties, m.text_score_token) == (0.01, "local", "first-frame")
    assert (m.distill_condition, m.distill_direction, m.distill_weight, m.detach_teacher) == ("text", "l2g", 1.0, False)
    assert (m.ce_reduction, m.distill_none_reduction, m.pps_temperature, m.pps_topk) == ("sum", "sum", 0.005, 4)
    t = build_train_config("reference", GIVEN, {})
    assert (t.lr, t.weight_decay, t.episodes_per_step, t.lr_steps, t.warmup_steps) == (1e-6, 0.0, 16, (), 0)
    assert all(t.lr_factor(s) == 1.0 for s in (0, 10, 1000))  # constant
    e2e = build_train_config("reference", {**GIVEN, "stage": "e2e"}, {}).e2e
    assert (e2e.backbone_lr, e2e.backbone_weight_decay) == (1e-6, 0.0)
    assert p.extract == {"frame_sampling": "reference", "normalize": "none", "crop": "reference"}


def test_explicit_settings_override_the_preset():
    t = build_train_config("reference", {**GIVEN, "lr": 1e-3}, {"distill_condition": "both"})
    assert t.lr == 1e-3 and t.model["distill_condition"] == "both" and t.model["ltce"] == "reference"


def test_clip_fsar_hmdb51_schedule_step_by_step():
    """CLIPFSAR_HMDB51 config: BASE_LR 1e-5, epochs of 700 steps, x1 / x0.1 / x0.01 from epochs 0 / 4 / 6 of 10, a
    linear warm-up over epoch 0 from 1e-6 (SlowFast's rule: lr = start + (end - start)·epoch), weight 1.2, 1-shot."""
    t = build_train_config("clip-fsar-hmdb51", GIVEN, {})
    lr = lambda step: t.lr * t.lr_factor(step)  # noqa: E731
    assert t.steps == 7000 and t.shot == 1 and t.weight_decay == 5e-5 and t.episodes_per_step == 4
    assert lr(0) == pytest.approx(1e-6) and lr(350) == pytest.approx(1e-6 + 0.5 * (1e-5 - 1e-6))
    assert lr(700) == pytest.approx(1e-5) and lr(2799) == pytest.approx(1e-5)
    assert lr(2800) == pytest.approx(1e-6) and lr(4199) == pytest.approx(1e-6) and lr(4200) == pytest.approx(1e-7)
    m = ModelConfig.from_dict(t.model)
    assert (m.name, m.fsar_text_weight, m.fsar_merge_before, m.fsar_text_logits) == ("clip-fsar", 1.2, True,
                                                                                      "reference")
    weights = {d: load_preset(f"clip-fsar-{d}").model["fsar_text_weight"] for d in
               ("hmdb51", "ucf101", "kinetics100", "ssv2_small", "ssv2_full")}
    assert weights == {"hmdb51": 1.2, "ucf101": 1.5, "kinetics100": 1.5, "ssv2_small": 3.0, "ssv2_full": 3.0}
    # the authors' head has no position embedding and averages its cross-entropies (issue 21)
    heads = [ModelConfig.from_dict(load_preset(f"clip-fsar-{d}").model) for d in weights]
    assert {(m.position_embedding, m.ce_reduction) for m in heads} == {(False, "mean")}


def test_reference_clip_fsar_is_the_authors_head_with_the_settings_all_their_configs_share():
    """The CLIP-FSAR configs (listed by hand): every one trains 1-shot, 5 queries per class, BATCH_SIZE_PER_TASK 4;
    lr, schedule, weight decay and the text weight differ per dataset, so the generic preset leaves the first three
    at mdmf's defaults and takes 1.5 (the median of 1.2, 1.5, 1.5, 3.0, 3.0). `mdmf demo --compare` and
    benchmarks/eval.py train clip-fsar with its model section."""
    from mdmf.pipeline.apps.demo_compare import head_settings

    t = build_train_config("reference-clip-fsar", GIVEN, {})
    assert (t.shot, t.queries, t.episodes_per_step, t.batch_episodes) == (1, 5, 4, 4)
    assert (t.lr, t.weight_decay, t.lr_steps, t.warmup_steps) == (1e-4, 0.0, (), 0)  # mdmf's head defaults
    m = ModelConfig.from_dict(t.model)
    assert (m.name, m.block, m.position_embedding, m.fsar_text_logits, m.fsar_merge_before, m.ce_reduction) == (
        "clip-fsar", "reference", False, "reference", True, "mean")
    assert m.fsar_text_weight == 1.5
    for d in ("hmdb51", "ucf101", "kinetics100", "ssv2_small", "ssv2_full"):  # only the text weight differs
        per_dataset = load_preset(f"clip-fsar-{d}").model
        assert {k: v for k, v in per_dataset.items() if k != "fsar_text_weight"} == {
            k: v for k, v in t.model.items() if k != "fsar_text_weight"}, d
    settings, source = head_settings("clip-fsar")
    assert source == "preset reference-clip-fsar" and settings["position_embedding"] is False
    assert settings["fsar_merge_before"] is True and settings["fsar_text_weight"] == 1.5


@pytest.mark.parametrize("steps,factors", [((5,), (1.0,)), ((5, 3), (1.0, 0.1, 0.01))])
def test_bad_schedules_are_user_errors(steps, factors):
    with pytest.raises(MdmfError, match="lr_steps"):
        TrainConfig(lr_steps=steps, lr_factors=factors)


def test_unknown_preset_names_what_exists(tmp_path):
    with pytest.raises(MdmfError, match="no such preset; shipped presets: .*reference"):
        load_preset("refrence")
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"model": {}, "optimiser": {}}))
    with pytest.raises(MdmfError, match="unknown sections \\['optimiser'\\]"):
        load_preset(bad)
    flat = tmp_path / "flat.json"  # the older form: model overrides only
    flat.write_text(json.dumps({"views": "local"}))
    assert load_preset(flat).model == {"views": "local"}


def test_train_cli_with_the_reference_preset(tmp_path):
    from typer.testing import CliRunner

    import mdmf.cli.commands  # noqa: F401 - registers the commands
    from mdmf.cli.app import app

    store = make_store(tmp_path / "store")
    args = ["train", "--cache", str(store.path), "--runs", str(tmp_path / "runs"), "--name", "ref", "--preset",
            "reference", "--steps", "2", "--episodes-per-step", "2", "--batch-episodes", "2", "--val-every", "2",
            "--val-episodes", "20", "--set", "heads=4", "--set", "mlp_dim=64", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "runs" / "ref" / "config.json").read_text())
    assert saved["train"]["lr"] == 1e-6 and saved["train"]["episodes_per_step"] == 2  # the flag beats the preset
    assert saved["model"]["block"] == "reference" and saved["model"]["position_embedding"] is False
    assert saved["model"]["distill_condition"] == "text" and saved["model"]["heads"] == 4
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "runs" / "ref" / "metrics.jsonl").read_text().splitlines()
           if "loss" in x]
    assert lrs == [1e-6, 1e-6]


def test_training_a_preset_on_a_store_extracted_otherwise_warns(tmp_path):
    from mdmf.pipeline.train.loop import preset_warnings

    store = make_store(tmp_path / "store")  # a store without those settings reads as tsn / clip / tsn
    lines = preset_warnings("reference", store.path)
    assert len(lines) == 1 and "frame_sampling='tsn' (preset: 'reference')" in lines[0]
    assert "normalize='clip' (preset: 'none')" in lines[0] and "mdmf extract --preset reference" in lines[0]
    assert preset_warnings(None, store.path) == [] and preset_warnings("clip-fsar-hmdb51", store.path) == []
    assert preset_warnings("reference", tmp_path / "missing") == []
