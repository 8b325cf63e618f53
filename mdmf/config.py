"""`ModelConfig`: every option of the few-shot models, with the paper's values as defaults.

The config is saved in checkpoints (`to_dict`) and the model is rebuilt from it (`from_dict`), so every field is a
JSON-safe scalar or a tuple of ints. Where the paper and the authors' code disagree (docs METHOD §9), the default
follows the paper and the other choice is a value of the same field; where the paper says nothing (the transformer
block's internals, the cosine epsilon, ties, the balance of the loss terms) the default is what the authors' code does.

`config_version` says which defaults a saved config was written against: configs saved before version 2 had no
fields for those reference-code choices and were built with the choices in `LEGACY_VALUES`; `from_saved` gives
them back exactly that model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Allowed values of the string fields; the first one is the default. `name` takes the keys of `mdmf.registry.MODELS`
# (`model_names`), the one list of models.
CHOICES: dict[str, tuple[str, ...]] = {
    # both: local + global view (the paper); local/global: one view; ntc: one view without temporal context.
    "views": ("both", "local", "global", "ntc"),
    "pps_train_mode": ("sample", "argmax"),
    "pps_eval_mode": ("sample", "argmax"),
    # paper: Conv-ReLU-BN twice (eq. 3); reference: two convolutions, no activation, no BN (the authors' code).
    "ltce": ("paper", "reference"),
    # prompt: the first MMFE token (paper); first-frame: token 1, the reference code's slicing slip.
    "text_score_token": ("prompt", "first-frame"),
    # both: a view is reliable when it wins on both scores (paper); visual/text: one score decides;
    # none: distil every query both ways; off: no distillation at all.
    "distill_condition": ("both", "visual", "text", "none", "off"),
    # bi: L_{l->g} + L_{g->l} (paper); l2g / g2l: only that term.
    "distill_direction": ("bi", "l2g", "g2l"),
    # The transformer block of the MMFE and of CLIP-FSAR's temporal transformer. reference: the authors' block (one
    # LayerNorm shared by q, k, v; bias-free projections; no LayerNorm before the FF; dropout after the output
    # projection and in the FF); pre-ln: the standard pre-LayerNorm block (nn.MultiheadAttention).
    "block": ("reference", "pre-ln"),
    # Reliability when the two views' scores tie. local: the reference code's `>=` (a tie makes the local view
    # reliable); neither: strict `>` both ways.
    "reliability_ties": ("local", "neither"),
    # distill_condition=none: sum (the reference code: KL summed over an episode's queries, unweighted) or
    # weighted-mean (like the conditioned cells: Σ w·KL / Σ w with w = ĉ + c̃).
    "distill_none_reduction": ("sum", "weighted-mean"),
    # Cross-entropy over an episode's queries (and CLIP-FSAR's video-text term over its videos): sum (CLIP-MDMF's
    # code, whose loss sums), or mean (CLIP-FSAR's code and the heads of its codebase: F.cross_entropy's default,
    # divided by the episodes per step). Either way the result is averaged over episodes.
    "ce_reduction": ("sum", "mean"),
    # CLIP-FSAR video-text logits: reference: `cos(·, eps 0.01) × scale`, a learnable scale initialised to 1;
    # clip-scale: CLIP's fixed logit scale, 100 × cosine.
    "fsar_text_logits": ("reference", "clip-scale"),
    # ---- heads of the CLIP-FSAR codebase (docs/HEADS.md) ----
    # protonet: cosine: the mean of the query's cosines (eps 0.01) to a class's support videos (CNN_TSN, the code);
    # squared-euclidean: -‖query − class prototype‖² (its norm_sq_dist branch, the ProtoNet paper).
    "protonet_metric": ("cosine", "squared-euclidean"),
    # CrossTransformer's comparison of the aligned prototype with the query: cosine: the mean over frames of their
    # cosine (the authors' code); sq-euclidean: minus the mean squared Euclidean distance (the paper).
    "crosstransformer_distance": ("cosine", "sq-euclidean"),
    # HyRSM with K > 1 shots: prototype: a class's K intra-relation outputs are averaged before the inter-relation
    # (CNN_HyRSM_5shot); videos: every support video joins the inter-relation and the set-matching distances are
    # averaged over a class's videos (CNN_HyRSM_1shot run with K shots). Both are the same at K = 1.
    "hyrsm_shots": ("prototype", "videos"),
    # HyRSM's Bi-MHM: sum: the minima summed over frames (the authors' code); mean: averaged (Mean Hausdorff).
    "hyrsm_set_reduction": ("sum", "mean"),
}

CONFIG_VERSION = 2
# What configs saved before version 2 were built with (they had no field for these): `from_saved` restores them.
LEGACY_VALUES: dict[str, Any] = {
    "block": "pre-ln", "ff_dropout": 0.0, "prompt_cosine_eps": 0.0, "reliability_ties": "neither",
    "distill_none_reduction": "weighted-mean", "ce_reduction": "mean", "fsar_text_logits": "clip-scale",
    "fsar_merge_before": False,
}


@dataclass
class ModelConfig:
    """Options of `mdmf`, `clip-fsar`, `otam` (docs METHOD §3–§9) and the heads of docs/HEADS.md. Invalid values
    raise `ValueError` on creation. A field's name begins with the head it belongs to where it is one head's."""

    name: str = "mdmf"
    dim: int = 1024  # D: CLIP embedding width (1024 for RN50, 512 for ViT-B/16)
    frames: int = 8  # T: frames per video
    views: str = "both"
    # Probability Prompt Selector (§3); pps=False gives queries a zero prompt (ablation).
    pps: bool = True
    pps_train_mode: str = "sample"
    pps_eval_mode: str = "sample"
    pps_topk: int = 4
    pps_temperature: float = 0.005
    # Multi-modal Fusion Encoder (§4); CLIP-FSAR's temporal transformer uses the same sizes.
    heads: int = 8
    depth: int = 1  # reference block: layers after the first self-attend on their input; pre-ln: all cross-attend
    block: str = "reference"
    attn_dropout: float = 0.2  # reference: after the output projection; pre-ln: on the attention weights
    ff_dropout: float = 0.05  # reference block only: after the GELU and after the second FF layer
    mlp_dim: int = 2048
    position_embedding: bool = True  # the reference code has none
    # PPS and the text score: cosine `x·y / (‖x‖‖y‖ + eps)`; 0.01 as the reference code (and OTAM), 0 exact.
    prompt_cosine_eps: float = 0.01
    # Temporal context extractors (§4).
    ltce: str = "paper"
    tcn_dilations: tuple[int, ...] = (1, 2, 4)
    tcn_kernel: int = 3
    tcn_dropout: float = 0.1
    # Distance and view fusion (§5): logits = -(alpha_global * d_global + alpha_local * d_local).
    otam_smoothing: float = 0.5
    otam_bidirectional: bool = True
    alpha_global: float = 1.0
    alpha_local: float = 1.0
    # Distillation between the views (§6); only with views="both".
    text_score_token: str = "prompt"
    distill_condition: str = "both"
    distill_direction: str = "bi"
    distill_weight: float = 1.0
    detach_teacher: bool = False
    reliability_ties: str = "local"
    distill_none_reduction: str = "sum"
    # Loss balance: L = CE + distill_weight · (L_l2g + L_g2l), CE reduced over an episode's queries by ce_reduction.
    ce_reduction: str = "sum"
    # CLIP-FSAR only (§8): weight of its video-text cross-entropy over all train classes. CLIP-FSAR adds this term to
    # the matching loss as one of its two components, so it gets the same weight as the matching loss by default.
    fsar_text_weight: float = 1.0
    fsar_text_logits: str = "reference"
    # CLIP-FSAR's MERGE_BEFORE (its 5-shot configs): a class's K support videos (frames and prompt token) are averaged
    # before the temporal transformer, instead of averaging the K transformer outputs.
    fsar_merge_before: bool = False
    # ---- heads of the CLIP-FSAR codebase (docs/HEADS.md); defaults are the authors' code ----
    protonet_metric: str = "cosine"
    # TRX (CNN_TRX / TemporalCrossTransformer): tuple cardinalities, the key/value width, the dropout after the
    # sinusoidal position encoding (scaled by 0.1, as the code).
    trx_cardinalities: tuple[int, ...] = (2, 3)
    trx_dim: int = 1152
    trx_dropout: float = 0.1
    # STRM (TRX on MLP-enriched frames + a query-class distance branch): that branch's weight in the loss and the
    # logits; the dropout of the enrichment's position encoding and of the branch's input; whether the branch's
    # projection is trained (the paper) or stays at its random initialisation (the released code: false).
    strm_distance_weight: float = 0.1
    strm_dropout: float = 0.1
    strm_learn_distance: bool = False
    # C: the number of training classes, for heads with a classifier over them (HyRSM's frame classifier). Taken
    # from the store's train split when training starts, like dim and frames; 0: no such classifier.
    train_classes: int = 0
    # CrossTransformer (docs HEADS.md): width H of its key/value heads (the authors' v2: 1024; 1/√H scales the
    # attention) and the comparison of the aligned prototype with the query.
    crosstransformer_hidden: int = 1024
    crosstransformer_distance: str = "cosine"
    # HyRSM (docs HEADS.md): heads of both relation modules, the sinusoidal positions `x·√(D/a) + b·pe`, dropouts
    # (positions, intra-relation output, inter-relation attention weights and output), the weight of the frame
    # classification loss over the training classes (USE_CLASSIFICATION_VALUE; 0: none), the shot form, Bi-MHM.
    hyrsm_heads: int = 8
    hyrsm_position_a: float = 10.0
    hyrsm_position_b: float = 1.0
    hyrsm_position_dropout: float = 0.1
    hyrsm_intra_dropout: float = 0.2
    hyrsm_inter_attn_dropout: float = 0.1
    hyrsm_inter_dropout: float = 0.05
    hyrsm_class_weight: float = 0.15
    hyrsm_shots: str = "prototype"
    hyrsm_set_reduction: str = "sum"
    # HyRSM++: the temporal coherence regulariser's weight (TEMPORAL_LOSS_WEIGHT; 0: plain HyRSM), window,
    # balance (TEMPORAL_BALANCE) and the weight of its outside-window term (BALANCE_COEFFICIENT).
    hyrsm_temporal_weight: float = 0.0
    hyrsm_temporal_window: int = 1
    hyrsm_temporal_balance: float = 51.0
    hyrsm_temporal_coefficient: float = 20.0
    config_version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        # JSON turns tuples into lists and may write 1 for 1.0; normalise so that equal configs compare equal.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "tuple[int, ...]" and isinstance(value, list):
                setattr(self, f.name, tuple(value))
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` naming the field, the value and what is allowed."""
        for f in dataclasses.fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        for name, allowed in _choices().items():
            _check_choice(name, getattr(self, name), allowed)
        _require(self.dim >= 1, "dim", self.dim, "a positive integer")
        _require(self.frames >= 1, "frames", self.frames, "a positive integer")
        _require(self.heads >= 1 and self.dim % self.heads == 0, "heads", self.heads,
                 f"a positive divisor of dim={self.dim}")
        _require(self.depth >= 1, "depth", self.depth, "a positive integer")
        _require(self.mlp_dim >= 1, "mlp_dim", self.mlp_dim, "a positive integer")
        _require(0.0 <= self.attn_dropout < 1.0, "attn_dropout", self.attn_dropout, "in [0, 1)")
        _require(0.0 <= self.ff_dropout < 1.0, "ff_dropout", self.ff_dropout, "in [0, 1)")
        _require(self.prompt_cosine_eps >= 0, "prompt_cosine_eps", self.prompt_cosine_eps, "non-negative")
        _require(self.config_version == CONFIG_VERSION, "config_version", self.config_version,
                 f"{CONFIG_VERSION} (read older saved configs with ModelConfig.from_saved)")
        _require(0.0 <= self.tcn_dropout < 1.0, "tcn_dropout", self.tcn_dropout, "in [0, 1)")
        _require(1 <= self.pps_topk <= self.frames, "pps_topk", self.pps_topk, f"between 1 and frames={self.frames}")
        _require(self.pps_temperature > 0, "pps_temperature", self.pps_temperature, "positive")
        _require(len(self.tcn_dilations) >= 1 and all(d >= 1 for d in self.tcn_dilations), "tcn_dilations",
                 self.tcn_dilations, "a non-empty list of positive integers")
        _require(self.tcn_kernel >= 1, "tcn_kernel", self.tcn_kernel, "a positive integer")
        _require(self.otam_smoothing > 0, "otam_smoothing", self.otam_smoothing, "positive")
        for name in ("alpha_global", "alpha_local", "distill_weight", "fsar_text_weight", "train_classes",
                     "hyrsm_class_weight", "hyrsm_temporal_weight", "hyrsm_temporal_window",
                     "hyrsm_temporal_coefficient", "hyrsm_position_b"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "non-negative")
        self._validate_heads()

    def _validate_heads(self) -> None:
        """The fields of the CLIP-FSAR codebase's heads (protonet, trx, strm, crosstransformer, hyrsm)."""
        _require(len(self.trx_cardinalities) >= 1 and len(set(self.trx_cardinalities)) == len(self.trx_cardinalities)
                 and all(1 <= c <= self.frames for c in self.trx_cardinalities), "trx_cardinalities",
                 self.trx_cardinalities, f"a non-empty list of distinct tuple sizes between 1 and frames={self.frames}")
        _require(self.trx_dim >= 1, "trx_dim", self.trx_dim, "a positive integer")
        for name in ("trx_dropout", "strm_dropout"):
            _require(0.0 <= getattr(self, name) < 1.0, name, getattr(self, name), "in [0, 1)")
        _require(self.strm_distance_weight >= 0, "strm_distance_weight", self.strm_distance_weight, "non-negative")
        _require(self.crosstransformer_hidden >= 1, "crosstransformer_hidden", self.crosstransformer_hidden,
                 "a positive integer")
        for name in ("hyrsm_position_dropout", "hyrsm_intra_dropout", "hyrsm_inter_attn_dropout",
                     "hyrsm_inter_dropout"):
            _require(0.0 <= getattr(self, name) < 1.0, name, getattr(self, name), "in [0, 1)")
        _require(self.hyrsm_position_a > 0, "hyrsm_position_a", self.hyrsm_position_a, "positive")
        _require(self.hyrsm_temporal_balance > 0, "hyrsm_temporal_balance", self.hyrsm_temporal_balance, "positive")
        if self.name == "hyrsm":  # its relation modules split D into heads; its sinusoids pair up dimensions
            _require(self.hyrsm_heads >= 1 and self.dim % self.hyrsm_heads == 0, "hyrsm_heads", self.hyrsm_heads,
                     f"a positive divisor of dim={self.dim}")
            _require(self.dim % 2 == 0, "dim", self.dim, "even for hyrsm (its sinusoidal positions)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from `to_dict` output (or a subset of overrides); unknown keys are an error."""
        _check_known(cls, data)
        return cls(**data)

    @classmethod
    def check_overrides(cls, data: dict[str, Any]) -> None:
        """Raise `ValueError` for an unknown key, a value of the wrong type or a choice not allowed in `data`, a
        subset of overrides (a preset's model section, `--set`): what can be said before D and T (the store's) are
        known; `validate` checks the rest when the config is built."""
        _check_known(cls, data)
        types, choices = {f.name: f.type for f in dataclasses.fields(cls)}, _choices()
        for name, value in data.items():
            _check_type(name, types[name], tuple(value) if isinstance(value, list) else value)
            if name in choices:
                _check_choice(name, value, choices[name])

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> ModelConfig:
        """A config saved in a checkpoint or run folder: one saved before `config_version` 2 gets the values its
        model was built with (`LEGACY_VALUES`) for the fields it did not have, never today's defaults."""
        data = dict(data)
        version = data.pop("config_version", 1)
        if version > CONFIG_VERSION:
            raise ValueError(f"this model config is of version {version}, newer than this mdmf understands "
                             f"({CONFIG_VERSION}): upgrade mdmf")
        if version < CONFIG_VERSION:
            data = {**LEGACY_VALUES, **data}
        return cls.from_dict(data)


def model_names() -> tuple[str, ...]:
    """The values `ModelConfig.name` may take: the registered models (`mdmf.registry.MODELS`), in order."""
    # Imported when called, not at the top: the registry imports the models, and every model imports this module.
    from mdmf.registry import MODELS

    return tuple(MODELS)


def _choices() -> dict[str, tuple[str, ...]]:
    """Every string field's allowed values: `CHOICES` and the registered model names."""
    return {"name": model_names(), **CHOICES}


def _check_known(cls, data: dict[str, Any]) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown ModelConfig fields {unknown}; known fields: {', '.join(known)}")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"ModelConfig.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _require(ok: bool, name: str, value: Any, what: str) -> None:
    if not ok:
        raise ValueError(f"ModelConfig.{name} must be {what}; got {value!r}")


def _check_type(name: str, annotation: str, value: Any) -> None:
    # The annotations are strings (postponed evaluation); only these few kinds occur in ModelConfig.
    if annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation == "str":
        ok = isinstance(value, str)
    elif annotation == "tuple[int, ...]":
        ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:  # a new field with a new kind of type: extend this function
        raise TypeError(f"ModelConfig.{name}: no type check for {annotation!r}")
    if not ok:
        raise ValueError(f"ModelConfig.{name} must be of type {annotation}; got {value!r}")


__all__ = ["CHOICES", "CONFIG_VERSION", "LEGACY_VALUES", "ModelConfig", "model_names"]
