"""Baselines on the same features and episodes (docs METHOD §8): CLIP-FSAR and OTAM on raw CLIP frames."""

from __future__ import annotations

import torch
from torch import nn

from mdmf.base import ClassTexts, FewShotMethod, Scores, VideoTextLogits, episode_cross_entropy
from mdmf.config import ModelConfig
from mdmf.layers import PositionEmbedding, build_block, pairwise_cosine

# CLIP's learned logit scale at the end of pre-training (1 / temperature 0.01): video-text cosines as CLIP uses them.
CLIP_LOGIT_SCALE = 100.0
# The reference code's cosine for the video-text logits: x·y / (‖x‖‖y‖ + 0.01), as in OTAM.
REFERENCE_COSINE_EPS = 0.01


class RawFrameMethod(FewShotMethod):
    """A method with no per-video work: `encode` passes frames `(B, T, D)` on as `{"frames": (B, T, D)}`."""

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_frames(frames)
        return {"frames": frames}


class OTAMBaseline(RawFrameMethod):
    """OTAM between a query's raw frames and the mean of each class's K support videos. No parameters, no prompts:
    the floor every trained head must beat. Single view "otam", tokens `(B, T, D)`."""

    needs_training = False
    fuses = False

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        self.check_role(role)
        return {"otam": encoded["frames"]}


class CLIPFSAR(RawFrameMethod):
    """CLIP-FSAR (Wang et al., IJCV 2023): prototype modulation by the class prompt, OTAM matching.

    One temporal transformer (`depth` self-attention blocks of kind `block`, learned positions) for both roles:
    support tokens `[T frames; class prompt]` -> the T frame outputs; query tokens `[T frames]` -> T outputs.
    With `fsar_merge_before` a class's K support videos are averaged before the transformer (`merges_shots`).
    Single view "fsar", tokens `(B, T, D)`. Training adds the video-text cross-entropy over all training classes,
    weight `fsar_text_weight`, when `forward` gets `ClassTexts`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        # Positions 0..T-1 are the frames, position T the prompt, so frames sit at the same positions in both roles.
        self.position = PositionEmbedding(c.frames + 1, c.dim) if c.position_embedding else nn.Identity()
        self.blocks = nn.ModuleList(build_block(c.block, c.dim, c.heads, c.mlp_dim, c.attn_dropout, c.ff_dropout,
                                                cross=False) for _ in range(c.depth))
        if c.fsar_text_logits == "reference":  # a learnable logit scale, initialised to 1 (the reference code)
            self.text_scale = nn.Parameter(torch.ones(()))

    @property
    def merges_shots(self) -> bool:
        return self.config.fsar_merge_before

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """Supports need their class prompts `(B, D)`; queries take none (a given prompt is ignored)."""
        self.check_role(role)
        frames = encoded["frames"]
        T = frames.shape[1]
        if role == "support":
            if prompts is None:
                raise ValueError("clip-fsar: support videos need their class prompts")
            x = self.position(torch.cat([frames, prompts[:, None]], dim=1))  # (B, T+1, D)
        else:
            x = self.position(frames)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return {"fsar": x[:, :T]}

    def video_text_logits(self, support: torch.Tensor, query: torch.Tensor,
                          class_texts: ClassTexts) -> VideoTextLogits:
        """Cosine between each video's mean frame feature and every class prompt, times a logit scale:
        `fsar_text_logits=reference`: `cos(·, eps 0.01) × s` with the learnable `s` (initialised to 1);
        `clip-scale`: the exact cosine × CLIP's 100.

        As in CLIP-FSAR, the video is the mean of its backbone frame features, so this loss adapts the backbone
        (and the scale): on frozen cached features (the head stage) the cosines are constants.
        """
        if self.config.fsar_text_logits == "reference":
            scale, eps = self.text_scale, REFERENCE_COSINE_EPS
        else:
            scale, eps = CLIP_LOGIT_SCALE, 0.0
        logits = [scale * pairwise_cosine(v.mean(-2), class_texts.embeddings, eps) for v in (support, query)]
        return VideoTextLogits(support=logits[0], query=logits[1], episode_classes=class_texts.episode_classes)

    def auxiliary_losses(self, scores: Scores, query_labels: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        weight = self.config.fsar_text_weight
        if weight == 0:
            return {}
        vt = scores.video_text
        if vt is None:
            if self.training:
                raise ValueError(f"clip-fsar with fsar_text_weight={weight} needs the training classes' prompts: call "
                                 "forward(..., class_texts=ClassTexts(embeddings, episode_classes)), or set "
                                 "fsar_text_weight=0")
            return {}  # evaluation: no training classes, no video-text term
        E, N, K, C = vt.support.shape
        support_targets = vt.episode_classes[:, :, None].expand(E, N, K)
        query_targets = torch.gather(vt.episode_classes, 1, query_labels)  # (E, M)
        logits = torch.cat([vt.support.reshape(E, -1, C), vt.query], dim=1)  # (E, N·K + M, C)
        targets = torch.cat([support_targets.reshape(E, -1), query_targets], dim=1)
        return {"video_text": (weight, episode_cross_entropy(logits, targets, self.config.ce_reduction))}
