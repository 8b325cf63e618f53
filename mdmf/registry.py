"""`build_model`: a model from its config's name (`mdmf`, `clip-fsar`, `otam`)."""

from __future__ import annotations

from mdmf.base import FewShotMethod
from mdmf.baselines import CLIPFSAR, OTAMBaseline
from mdmf.config import ModelConfig
from mdmf.model import MDMF

MODELS: dict[str, type[FewShotMethod]] = {"mdmf": MDMF, "clip-fsar": CLIPFSAR, "otam": OTAMBaseline}


def build_model(config: ModelConfig) -> FewShotMethod:
    """The model `config.name` names, built from `config` (validated first)."""
    if config.name not in MODELS:
        raise ValueError(f"unknown model {config.name!r}; known models: {', '.join(sorted(MODELS))}")
    config.validate()
    return MODELS[config.name](config)
