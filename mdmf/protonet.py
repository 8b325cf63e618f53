"""ProtoNet on mean-pooled frames: the CLIP-FSAR codebase's `CNN_TSN` head (docs/HEADS.md).

A video is the mean of its T frame features. `protonet_metric=cosine` (the code's default branch): a class's logit
is the mean, over its K support videos, of the query's cosine `x·y / (‖x‖‖y‖ + 0.01)` to each of them;
`squared-euclidean` (its `norm_sq_dist` branch, the ProtoNet of Snell et al.): `-‖query − prototype‖²`, the
prototype being the mean of the class's pooled support videos. No parameters: on cached features there is nothing
to train (evaluate it directly); `--stage e2e` fine-tunes the backbone through it, as the codebase trains CNN_TSN.
"""

from __future__ import annotations

import torch

from mdmf.base import FewShotMethod, Scores
from mdmf.layers import pairwise_cosine

# The codebase's cosine (`cos_sim`): x·y / (‖x‖‖y‖ + 0.01).
COSINE_EPS = 0.01
VIEW = "protonet"


class MeanFrameMethod(FewShotMethod):
    """A parameter-free method on each video's mean frame feature: `encode` gives `{"video": (B, 1, D)}`."""

    needs_training = False
    fuses = False  # its tokens are pooled raw features, nothing fused

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> `{"video": (B, 1, D)}`, the mean over the T frames (episode-independent)."""
        self.check_frames(frames)
        return {"video": frames.mean(1, keepdim=True)}


class ProtoNet(MeanFrameMethod):
    """Single view "protonet", tokens `(B, 1, D)`: the video's mean frame feature (episode-independent: `encode`)."""

    @property
    def scores_shots(self) -> bool:
        # The mean of per-video cosines is not a function of the class mean; the squared distance to the prototype is.
        return self.config.protonet_metric == "cosine"

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        self.check_role(role)
        return {VIEW: encoded["video"]}

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """query `(E, M, 1, D)`, support `(E, N, K, 1, D)` -> logits `(E, M, N)`."""
        if not self.scores_shots:
            return super().score(query_tokens, support_tokens)
        query, support = query_tokens[VIEW][:, :, 0], support_tokens[VIEW][..., 0, :]  # (E, M, D), (E, N, K, D)
        E, N, K, D = support.shape
        cosines = pairwise_cosine(query, support.reshape(E, N * K, D), COSINE_EPS)  # (E, M, N·K)
        logits = cosines.reshape(E, -1, N, K).mean(-1)
        return Scores(logits=logits, distances={VIEW: -logits})

    def score_prototypes(self, query_tokens: dict[str, torch.Tensor],
                         prototypes: dict[str, torch.Tensor]) -> Scores:
        """query `(E, M, 1, D)`, prototypes `(E, N, 1, D)` -> `-‖q − p‖²` `(E, M, N)` (squared-euclidean only)."""
        if self.scores_shots:
            raise ValueError("protonet with protonet_metric=cosine scores every shot: call score, not score_prototypes")
        query, proto = query_tokens[VIEW][:, :, 0], prototypes[VIEW][:, :, 0]  # (E, M, D), (E, N, D)
        distances = (query[:, :, None] - proto[:, None]).square().sum(-1)
        return Scores(logits=-distances, distances={VIEW: distances})
