"""CLIP-MDMF: multi-view distillation based on multi-modal fusion (docs METHOD §3–§6)."""

from __future__ import annotations

import torch
from torch import nn

from mdmf.base import FewShotMethod, Scores
from mdmf.config import ModelConfig
from mdmf.distillation import ViewPosterior, mutual_distillation
from mdmf.gtce import GlobalTemporalContext
from mdmf.layers import pairwise_cosine
from mdmf.ltce import LocalTemporalContext
from mdmf.mmfe import MultiModalFusionEncoder

# Views of each `views` setting; "ntc" has no temporal context (its MMFE is self-attention).
VIEWS = {"both": ("global", "local"), "local": ("local",), "global": ("global",), "ntc": ("ntc",)}


class MDMF(FewShotMethod):
    """Per view: a temporal context extractor (LTCE or GTCE) and its own MMFE; tokens `(B, T+1, D)` per view.

    encode -> {"frames", "local"?, "global"?} of `(B, T, D)`; fuse -> view -> `(B, T+1, D)` with token 0 the prompt;
    score compares tokens 1..T with OTAM and the prompt tokens by cosine; loss adds the views' mutual distillation.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.views = VIEWS[c.views]
        contexts = {}
        if "local" in self.views:
            contexts["local"] = LocalTemporalContext(c.dim, variant=c.ltce)
        if "global" in self.views:
            contexts["global"] = GlobalTemporalContext(c.dim, c.tcn_dilations, c.tcn_kernel, c.tcn_dropout)
        self.contexts = nn.ModuleDict(contexts)
        self.fusion = nn.ModuleDict({
            view: MultiModalFusionEncoder(c.dim, c.frames, c.heads, c.depth, c.mlp_dim, c.attn_dropout,
                                          c.position_embedding, self_attention=view == "ntc", block=c.block,
                                          ff_dropout=c.ff_dropout)
            for view in self.views})

    has_attention = True

    @property
    def query_prompt_mode(self) -> str:
        return "pps" if self.config.pps else "none"

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> {"frames": frames, view: context `(B, T, D)` for local/global}."""
        self.check_frames(frames)
        return {"frames": frames, **{view: context(frames) for view, context in self.contexts.items()}}

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """encoded from `encode`, prompts `(B, D)` -> view -> `(B, T+1, D)`.

        A missing prompt is a zero vector; with `pps=False` every query gets the zero prompt.
        """
        prompts = self._fusion_prompts(encoded["frames"], prompts, role)
        return {view: mmfe(prompts, encoded["frames"], encoded.get(view)) for view, mmfe in self.fusion.items()}

    def attention(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
                  role: str) -> dict[str, torch.Tensor]:
        """What `fuse` attends to: view -> `(B, depth, heads, T+1, T+1)` MMFE attention weights (rows: output tokens,
        columns: key tokens, 0 the prompt and 1..T the raw frames). For figures; `fuse` stays the scoring path."""
        prompts = self._fusion_prompts(encoded["frames"], prompts, role)
        return {view: mmfe(prompts, encoded["frames"], encoded.get(view), return_attention=True)[1]
                for view, mmfe in self.fusion.items()}

    def _fusion_prompts(self, frames: torch.Tensor, prompts: torch.Tensor | None, role: str) -> torch.Tensor:
        self.check_role(role)
        if prompts is None or (role == "query" and not self.config.pps):
            return frames.new_zeros(frames.shape[0], frames.shape[2])
        return prompts

    def frame_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[..., 1:, :]  # the prompt token takes no part in the distance (paper §3.5.1)

    def view_weight(self, view: str) -> float:
        return {"global": self.config.alpha_global, "local": self.config.alpha_local}.get(view, 1.0)

    def text_logits(self, query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """Cosine (epsilon `prompt_cosine_eps`) between the query's and each prototype's first token (eq. 11);
        `first-frame` uses token 1 as the reference code does. query `(E, M, L, D)`, prototypes `(E, N, L, D)` ->
        `(E, M, N)`."""
        index = 0 if self.config.text_score_token == "prompt" else 1
        return pairwise_cosine(query[..., index, :], prototypes[..., index, :], self.config.prompt_cosine_eps)

    def distills(self) -> bool:
        """Distillation needs the two views; single-view and NTC configs have none."""
        return self.config.views == "both" and self.config.distill_condition != "off"

    def auxiliary_losses(self, scores: Scores, query_labels: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        if not self.distills():
            return {}
        c = self.config
        glob, local = (ViewPosterior.from_scores(scores.distances[v], scores.text_logits[v])
                       for v in ("global", "local"))
        terms = mutual_distillation(glob, local, c.distill_condition, c.distill_direction, c.detach_teacher,
                                    c.reliability_ties, c.distill_none_reduction)
        return {"distill_l2g": (c.distill_weight, terms.l2g), "distill_g2l": (c.distill_weight, terms.g2l)}
