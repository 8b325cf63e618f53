"""CrossTransformer (Doersch et al., NeurIPS 2020) as the CLIP-FSAR codebase runs it on videos (`CNN_CrossTransformer`):
the T frame features play the part of the paper's spatial positions (docs HEADS.md, "crosstransformer").

Each query frame attends over all K·T frames of a class's support videos; the attention-weighted support values form
a query-aligned prototype, one vector per query frame, compared frame by frame with the query's own values:

    key_t = Γ x_t, value_t = Λ x_t                     (1×1 convolutions D -> H, no bias; the query head is Γ)
    a_{t,v} = softmax_v(key^q_t · key^c_v / √H)         over the K·T frames v of class c
    w_t = Σ_v a_{t,v} value^c_v                          the aligned prototype
    logit_c = (1/T) Σ_t cos(w_t, value^q_t)              (`crosstransformer_distance=cosine`, the authors' code)
            = -(1/T) Σ_t ‖w_t - value^q_t‖²              (`sq-euclidean`, the paper's distance)

`encode` (the two projections) depends only on the video; the attention needs the episode's classes: `score`.
The parameter names and shapes are the authors' (`key_head`, `query_head` the same module, `value_head`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mdmf.base import EncodedTokens, FewShotMethod, Scores
from mdmf.config import ModelConfig


class CrossTransformer(EncodedTokens, FewShotMethod):
    """Query-aligned prototypes over frame tokens. Single view "crosstransformer"; its tokens `(B, 2T, H)` are the
    T keys followed by the T values of a video. Scores need every support frame of a class, not their mean over
    the shots (`scores_shots`); a class is scored from its own shots alone."""

    scores_shots = True

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        dim, hidden = config.dim, config.crosstransformer_hidden
        self.key_head = nn.Conv1d(dim, hidden, 1, bias=False)
        self.query_head = self.key_head  # shared, as in the paper and the authors' code
        self.value_head = nn.Conv1d(dim, hidden, 1, bias=False)

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> `{"crosstransformer": (B, 2T, H)}`: keys, then values."""
        self.check_frames(frames)
        x = frames.transpose(1, 2)  # (B, D, T): the convolutions' layout
        keys, values = self.key_head(x).transpose(1, 2), self.value_head(x).transpose(1, 2)  # (B, T, H) each
        return {"crosstransformer": torch.cat([keys, values], dim=1)}

    def frame_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The values `(…, T, H)`: what the distance compares."""
        return tokens[..., self.config.frames :, :]

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """query_tokens `{"crosstransformer": (E, M, 2T, H)}`, support_tokens `(E, N, K, 2T, H)` -> `Scores`."""
        T = self.config.frames
        query, support = query_tokens["crosstransformer"], support_tokens["crosstransformer"]
        E, N, K = support.shape[:3]
        q_key, q_value = query[..., :T, :], query[..., T:, :]  # (E, M, T, H)
        s_key = support[..., :T, :].reshape(E, N, K * T, -1)  # (E, N, K·T, H): all frames of a class's shots
        s_value = support[..., T:, :].reshape(E, N, K * T, -1)
        attn = torch.einsum("emth,envh->emntv", q_key, s_key) * self.config.crosstransformer_hidden ** -0.5
        aligned = torch.einsum("emntv,envh->emnth", attn.softmax(-1), s_value)  # (E, M, N, T, H)
        target = q_value[:, :, None]  # (E, M, 1, T, H)
        if self.config.crosstransformer_distance == "cosine":
            logits = (F.normalize(aligned, dim=-1) * F.normalize(target, dim=-1)).sum((-1, -2)) / T
        else:
            logits = -(aligned - target).pow(2).sum(-1).mean(-1)
        return Scores(logits=logits, distances={"crosstransformer": -logits})
