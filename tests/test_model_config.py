"""ModelConfig: paper defaults, validation, JSON round trip, and that every option changes the model."""

import dataclasses
import json

import pytest
import torch

from mdmf import ClassTexts, ModelConfig, build_model
from mdmf.config import CHOICES


def test_paper_defaults():
    c = ModelConfig()
    assert (c.name, c.dim, c.frames, c.views, c.pps) == ("mdmf", 1024, 8, "both", True)
    assert (c.pps_train_mode, c.pps_eval_mode, c.pps_topk, c.pps_temperature) == ("sample", "sample", 4, 0.005)
    assert (c.heads, c.depth, c.attn_dropout, c.mlp_dim, c.position_embedding) == (8, 1, 0.2, 2048, True)
    assert (c.ltce, c.tcn_dilations, c.tcn_kernel, c.tcn_dropout) == ("paper", (1, 2, 4), 3, 0.1)
    assert (c.otam_smoothing, c.otam_bidirectional, c.alpha_global, c.alpha_local) == (0.5, True, 1.0, 1.0)
    assert (c.text_score_token, c.distill_condition, c.distill_direction) == ("prompt", "both", "bi")
    assert (c.distill_weight, c.detach_teacher) == (1.0, False)


def test_json_round_trip():
    c = ModelConfig(name="clip-fsar", dim=512, tcn_dilations=(1, 3), alpha_local=2, detach_teacher=True)
    data = json.loads(json.dumps(c.to_dict()))
    assert data["tcn_dilations"] == [1, 3] and isinstance(data["alpha_local"], float)
    assert ModelConfig.from_dict(data) == c


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['bogus'\].*known fields: name, dim"):
        ModelConfig.from_dict({"dim": 32, "bogus": 1})


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_choice_fields_list_the_allowed_values(field):
    with pytest.raises(ValueError, match=f"ModelConfig.{field} must be one of {repr(CHOICES[field][0])}"):
        ModelConfig(**{field: "nonsense"})


@pytest.mark.parametrize("overrides,message", [
    (dict(dim=0), "dim"), (dict(frames=0), "frames"), (dict(heads=5), "divisor of dim=1024"),
    (dict(depth=0), "depth"), (dict(mlp_dim=0), "mlp_dim"), (dict(attn_dropout=1.0), "attn_dropout"),
    (dict(tcn_dropout=-0.1), "tcn_dropout"), (dict(pps_topk=9), "between 1 and frames=8"),
    (dict(pps_temperature=0.0), "pps_temperature"), (dict(tcn_dilations=()), "tcn_dilations"),
    (dict(tcn_kernel=0), "tcn_kernel"), (dict(otam_smoothing=0.0), "otam_smoothing"),
    (dict(alpha_global=-1.0), "alpha_global"), (dict(distill_weight=-1.0), "distill_weight"),
    (dict(fsar_text_weight=-1.0), "fsar_text_weight"), (dict(pps="yes"), "type bool"),
    (dict(dim=32.0), "type int"), (dict(tcn_dilations=(1, 2.0)), r"type tuple\[int, ...\]"),
    (dict(alpha_local="1"), "type float"),
])
def test_invalid_values_are_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_validate_catches_later_mutation():
    c = ModelConfig()
    c.views = "three"
    with pytest.raises(ValueError, match="views"):
        c.validate()


# ---- every option changes something ------------------------------------------------------------------------------
SMALL = dict(dim=32, heads=4, mlp_dim=64)
ALTERNATIVES = {
    "name": ["clip-fsar", "otam"], "dim": [16], "frames": [4], "views": ["local", "global", "ntc"], "pps": [False],
    "pps_train_mode": ["argmax"], "pps_eval_mode": ["argmax"], "pps_topk": [2], "pps_temperature": [1e-4, 1.0],
    "heads": [2], "depth": [2], "attn_dropout": [0.0], "mlp_dim": [48], "position_embedding": [False],
    "ltce": ["reference"], "tcn_dilations": [(1, 2)], "tcn_kernel": [2], "tcn_dropout": [0.0],
    "otam_smoothing": [0.1], "otam_bidirectional": [False], "alpha_global": [2.0], "alpha_local": [2.0],
    "text_score_token": ["first-frame"], "distill_condition": ["visual", "text", "none", "off"],
    "distill_direction": ["l2g", "g2l"], "distill_weight": [0.5], "detach_teacher": [True],
    "fsar_text_weight": [0.5], "block": ["pre-ln"], "ff_dropout": [0.0], "prompt_cosine_eps": [0.0],
    "distill_none_reduction": ["weighted-mean"], "ce_reduction": ["mean"], "fsar_text_logits": ["clip-scale"],
    "fsar_merge_before": [True],
    "crosstransformer_hidden": [16], "crosstransformer_distance": ["sq-euclidean"],
    "train_classes": [9], "hyrsm_heads": [4], "hyrsm_position_a": [50.0], "hyrsm_position_b": [0.1],
    "hyrsm_position_dropout": [0.0], "hyrsm_intra_dropout": [0.0], "hyrsm_inter_attn_dropout": [0.0],
    "hyrsm_inter_dropout": [0.0], "hyrsm_class_weight": [0.6], "hyrsm_shots": ["videos"],
    "hyrsm_set_reduction": ["mean"], "hyrsm_temporal_weight": [0.2], "hyrsm_temporal_window": [3],
    "hyrsm_temporal_balance": [23.0], "hyrsm_temporal_coefficient": [10.0],
}
# The heads of docs/HEADS.md (protonet, clip-zeroshot, trx, strm).
ALTERNATIVES |= {"protonet_metric": ["squared-euclidean"], "trx_cardinalities": [(2,), (1, 3)], "trx_dim": [24],
                 "trx_dropout": [0.0, 0.5], "strm_distance_weight": [0.0, 1.0], "strm_dropout": [0.0, 0.5],
                 "strm_learn_distance": [True]}
ALTERNATIVES["name"] += ["protonet", "clip-zeroshot", "trx", "strm", "crosstransformer", "hyrsm"]
# Fields of one model: fingerprinted on that model (the others ignore them).
ONLY_FOR = {"fsar_text_weight": "clip-fsar", "fsar_text_logits": "clip-fsar", "fsar_merge_before": "clip-fsar"}
ONLY_FOR |= {"protonet_metric": "protonet", "trx_cardinalities": "trx", "trx_dim": "trx", "trx_dropout": "trx"}
ONLY_FOR |= {"strm_distance_weight": "strm", "strm_dropout": "strm", "strm_learn_distance": "strm"}
# The heads of docs/HEADS.md (crosstransformer, hyrsm): fingerprinted on their model, HyRSM with the fingerprint's 7 training classes.
ONLY_FOR |= {f: "crosstransformer" for f in ("crosstransformer_hidden", "crosstransformer_distance")}
ONLY_FOR |= {f: "hyrsm" for f in ALTERNATIVES if f.startswith("hyrsm_") or f == "train_classes"}
HEAD_BASE = {"hyrsm": {"train_classes": 7}}
# Options that act only together with another setting: the base config of their fingerprint has it.
BASE_FOR = {"distill_none_reduction": {"distill_condition": "none"},
            **{f"hyrsm_temporal_{k}": {"hyrsm_temporal_weight": 0.2} for k in ("window", "balance", "coefficient")}}
# Not fingerprinted: ties between the views' scores do not occur on random inputs (tests/test_model_distillation.py builds
# them by hand), and config_version has one valid value (tested below).
NOT_FINGERPRINTED = {"reliability_ties", "config_version"}


def fingerprint(cfg: ModelConfig) -> dict:
    """Everything a config can influence: parameter shapes, eval and train scores, prompt draws, loss, gradients."""
    torch.manual_seed(0)
    model = build_model(cfg)
    E, N, K, M, T, D = 2, 3, 2, 5, cfg.frames, cfg.dim
    g = torch.Generator().manual_seed(1)
    support, query = torch.randn(E, N, K, T, D, generator=g), torch.randn(E, M, T, D, generator=g)
    prompts = torch.randn(1, 1, D, generator=g) + 0.02 * torch.randn(E, N, D, generator=g)  # close: PPS really samples
    labels = torch.randint(0, N, (E, M), generator=g)
    texts = ClassTexts(torch.randn(7, D, generator=g), torch.stack([torch.randperm(7, generator=g)[:N]] * E))
    out = {"shapes": {k: tuple(v.shape) for k, v in model.state_dict().items()},
           "sim": model.pps_similarity(query[0], prompts[0])}
    with torch.no_grad():
        ev = model.eval()(support, prompts, query, generator=torch.Generator().manual_seed(2))
    out["eval_logits"], out["eval_choice"] = ev.logits, ev.prompt_choice
    torch.manual_seed(3)  # dropout
    tr = model.train()(support, prompts, query, generator=torch.Generator().manual_seed(4), class_texts=texts)
    loss, parts = model.loss(tr, labels)
    out.update(train_logits=tr.logits, train_choice=tr.prompt_choice, loss=loss.detach(), parts=parts,
               text=tr.text_logits)
    if loss.requires_grad:
        loss.backward()
        out["grads"] = {k: p.grad for k, p in model.named_parameters()}
    return out


def same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-7))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-7 + 1e-6 * abs(b)
    return a == b


def test_every_field_has_an_alternative():
    assert set(ALTERNATIVES) | NOT_FINGERPRINTED == {f.name for f in dataclasses.fields(ModelConfig)}


@pytest.mark.parametrize("name", ["mdmf", "clip-fsar"])
def test_fingerprint_is_deterministic(name):
    """Otherwise the test below could not fail."""
    cfg = ModelConfig(name=name, **SMALL)
    assert same(fingerprint(cfg), fingerprint(cfg))


@pytest.mark.parametrize("field,value", [(f, v) for f, values in ALTERNATIVES.items() for v in values])
def test_every_option_changes_the_model(field, value):
    name = ONLY_FOR.get(field, "mdmf")
    base = ModelConfig(name=name, **SMALL, **{**HEAD_BASE.get(name, {}), **BASE_FOR.get(field, {})})
    assert getattr(base, field) != value
    assert not same(fingerprint(base), fingerprint(dataclasses.replace(base, **{field: value})))


def test_defaults_follow_the_reference_code_where_the_paper_is_silent():
    c = ModelConfig()
    assert (c.block, c.ff_dropout, c.prompt_cosine_eps, c.reliability_ties) == ("reference", 0.05, 0.01, "local")
    assert (c.distill_none_reduction, c.ce_reduction, c.fsar_text_logits) == ("sum", "sum", "reference")
    assert c.fsar_merge_before is False and c.config_version == 2


def test_configs_saved_before_version_2_rebuild_the_model_they_were_saved_with():
    """A checkpoint's config from before the reference-code fields existed has no `config_version`: it must come
    back with the choices its weights were trained with, not today's defaults (which would change the model)."""
    old = ModelConfig().to_dict()
    for key in ("config_version", "block", "ff_dropout", "prompt_cosine_eps", "reliability_ties",
                "distill_none_reduction", "ce_reduction", "fsar_text_logits", "fsar_merge_before"):
        old.pop(key)
    c = ModelConfig.from_saved(old)
    assert (c.block, c.ff_dropout, c.prompt_cosine_eps, c.reliability_ties) == ("pre-ln", 0.0, 0.0, "neither")
    assert (c.distill_none_reduction, c.ce_reduction, c.fsar_text_logits) == ("weighted-mean", "mean", "clip-scale")
    assert c.fsar_merge_before is False
    assert ModelConfig.from_saved(ModelConfig(block="pre-ln").to_dict()) == ModelConfig(block="pre-ln")
    with pytest.raises(ValueError, match="newer than this mdmf"):
        ModelConfig.from_saved({**ModelConfig().to_dict(), "config_version": 3})
    with pytest.raises(ValueError, match="config_version"):
        ModelConfig(config_version=1)


def test_configs_saved_before_the_new_heads_load_unchanged():
    """A version-2 config saved before the heads of docs/HEADS.md had fields loads as the same model."""
    new_fields = {k for k in ONLY_FOR if k.split("_")[0] in ("protonet", "trx", "strm")}
    for name in ("mdmf", "clip-fsar"):
        saved = {k: v for k, v in ModelConfig(name=name, **SMALL).to_dict().items() if k not in new_fields}
        assert ModelConfig.from_saved(saved) == ModelConfig(name=name, **SMALL)
    assert ModelConfig.from_saved(ModelConfig(name="trx", trx_cardinalities=(2,)).to_dict()).trx_cardinalities == (2,)
