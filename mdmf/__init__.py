"""The few-shot models of mdmf: pure modules on tensors, no I/O."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("mdmf")  # the installed distribution's version (pyproject's [project] version)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from mdmf.base import ClassTexts, FewShotMethod, Scores, VideoTextLogits
from mdmf.baselines import CLIPFSAR, OTAMBaseline
from mdmf.config import ModelConfig
from mdmf.distillation import ViewPosterior, mutual_distillation, reliability_masks, weighted_kl
from mdmf.gtce import GlobalTemporalContext
from mdmf.ltce import LocalTemporalContext
from mdmf.mmfe import MultiModalFusionEncoder
from mdmf.model import MDMF
from mdmf.otam import otam_cost, otam_distance
from mdmf.pps import ProbabilityPromptSelector
from mdmf.registry import build_model

__all__ = [
    "CLIPFSAR", "MDMF", "ClassTexts", "FewShotMethod", "GlobalTemporalContext", "LocalTemporalContext", "ModelConfig",
    "MultiModalFusionEncoder", "OTAMBaseline", "ProbabilityPromptSelector", "Scores", "VideoTextLogits",
    "ViewPosterior", "build_model", "mutual_distillation", "otam_cost", "otam_distance", "reliability_masks",
    "weighted_kl", "__version__",
]
