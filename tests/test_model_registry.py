"""build_model: one name per model, a clear error for the others."""

import pytest

from mdmf import CLIPFSAR, MDMF, ModelConfig, OTAMBaseline, build_model

SMALL = dict(dim=32, heads=4, mlp_dim=64)


@pytest.mark.parametrize("name,cls", [("mdmf", MDMF), ("clip-fsar", CLIPFSAR), ("otam", OTAMBaseline)])
def test_builds_each_name(name, cls):
    model = build_model(ModelConfig(name=name, **SMALL))
    assert type(model) is cls and model.config.name == name


def test_unknown_name_lists_known_names():
    cfg = ModelConfig(**SMALL)
    cfg.name = "trx"  # configs are mutable; build_model checks again
    with pytest.raises(ValueError, match="unknown model 'trx'; known models: clip-fsar, mdmf, otam"):
        build_model(cfg)


def test_invalid_config_is_rejected_before_building():
    cfg = ModelConfig(**SMALL)
    cfg.heads = 5
    with pytest.raises(ValueError, match="heads"):
        build_model(cfg)
