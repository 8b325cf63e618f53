"""CLIP zero-shot on the episode's classes: the text-only floor of CLIP papers (docs/HEADS.md).

A query is the mean of its T frame features; a class is its prompt embedding (every support video of a class
carries the same one, so the support videos themselves are not looked at). Logits are CLIP's: 100 × the exact
cosine. Nothing to train; evaluated directly (`mdmf eval --model clip-zeroshot`). Under `--stage e2e` it fine-tunes
the visual encoder against the fixed class prompts.
"""

from __future__ import annotations

import torch

from mdmf.base import Scores
from mdmf.layers import pairwise_cosine
from mdmf.protonet import MeanFrameMethod

# CLIP's learned logit scale at the end of its pre-training (1 / temperature 0.01).
CLIP_LOGIT_SCALE = 100.0
VIEW = "zeroshot"


class CLIPZeroShot(MeanFrameMethod):
    """Single view "zeroshot", tokens `(B, 1, D)`: a query's mean frame feature, a support video's class prompt."""

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """A support video becomes its class prompt `(B, 1, D)`; a query its mean frame."""
        self.check_role(role)
        if role == "query":
            return {VIEW: encoded["video"]}
        if prompts is None:
            raise ValueError("clip-zeroshot: support videos need their class prompts")
        return {VIEW: prompts[:, None]}

    def score_prototypes(self, query_tokens: dict[str, torch.Tensor],
                         prototypes: dict[str, torch.Tensor]) -> Scores:
        """query `(E, M, 1, D)`, prototypes `(E, N, 1, D)` (the class prompts) -> `100 · cos` `(E, M, N)`."""
        logits = CLIP_LOGIT_SCALE * pairwise_cosine(query_tokens[VIEW][:, :, 0], prototypes[VIEW][:, :, 0])
        return Scores(logits=logits, distances={VIEW: -logits})
