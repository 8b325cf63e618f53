"""`MODELS`, the one list of few-shot models (name -> class), and `build_model`.

A new head registers here with one entry; `ModelConfig.name` takes its choices from these keys, and the registry
tests run over all of them (docs/CONTRIBUTING.md). The first entry is the default model.
"""

from __future__ import annotations

from mdmf.base import FewShotMethod
from mdmf.baselines import CLIPFSAR, OTAMBaseline
from mdmf.config import ModelConfig
from mdmf.crosstransformer import CrossTransformer
from mdmf.hyrsm import HyRSM
from mdmf.model import MDMF
from mdmf.protonet import ProtoNet
from mdmf.strm import STRM
from mdmf.trx import TRX
from mdmf.zeroshot import CLIPZeroShot

MODELS: dict[str, type[FewShotMethod]] = {"mdmf": MDMF, "clip-fsar": CLIPFSAR, "otam": OTAMBaseline}
# Heads of the CLIP-FSAR codebase (docs/HEADS.md).
MODELS |= {"protonet": ProtoNet, "clip-zeroshot": CLIPZeroShot, "trx": TRX, "strm": STRM}
MODELS |= {"crosstransformer": CrossTransformer, "hyrsm": HyRSM}


def build_model(config: ModelConfig) -> FewShotMethod:
    """The model `config.name` names, built from `config` (validated first)."""
    if config.name not in MODELS:
        raise ValueError(f"unknown model {config.name!r}; known models: {', '.join(sorted(MODELS))}")
    config.validate()
    return MODELS[config.name](config)


def untrained_models() -> tuple[str, ...]:
    """The models with nothing to train (`needs_training` False): those `mdmf eval` and `predict` run without a run."""
    return tuple(name for name, cls in MODELS.items() if cls.needs_training is False)


def trainable_models() -> tuple[str, ...]:
    """The models `mdmf train` trains (`needs_training`), the default model first."""
    return tuple(name for name in MODELS if name not in untrained_models())
