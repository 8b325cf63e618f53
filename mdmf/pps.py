"""Probability Prompt Selector (PPS, docs METHOD §3): gives each unlabelled query the prompt of a likely class."""

from __future__ import annotations

import torch
from torch import nn

from mdmf.layers import pairwise_cosine

MODES = ("sample", "argmax")


class ProbabilityPromptSelector(nn.Module):
    """`sim_c` = mean of the top-k cosines between class c's prompt and the video's T frames;
    `p = softmax(sim / τ)` over the episode's N classes; the query takes a class drawn from `p` (or its argmax).
    The cosine is `x·y / (‖x‖‖y‖ + cosine_eps)` (0.01 in the reference code, 0 exact).

    No parameters: the selection is not differentiable and needs none.
    """

    def __init__(self, topk: int = 4, temperature: float = 0.005, cosine_eps: float = 0.01):
        super().__init__()
        self.topk, self.temperature, self.cosine_eps = topk, temperature, cosine_eps

    def similarity(self, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """frames `(..., B, T, D)`, prompts `(..., C, D)` (leading dims broadcast) -> `(..., B, C)`."""
        if self.topk > frames.shape[-2]:
            raise ValueError(f"PPS top-k is {self.topk} but videos have only {frames.shape[-2]} frames")
        cos = pairwise_cosine(frames, prompts[..., None, :, :], self.cosine_eps)  # (..., B, T, C)
        return cos.topk(self.topk, dim=-2).values.mean(-2)

    def probabilities(self, sim: torch.Tensor) -> torch.Tensor:
        """sim `(..., N)` -> `p (..., N)`, the distribution prompts are drawn from."""
        return torch.softmax(sim / self.temperature, dim=-1)

    def select(self, sim: torch.Tensor, mode: str = "sample",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """sim `(..., N)` -> chosen class index `(...)` long.

        `sample` inverts the CDF at one uniform number per query drawn from `generator` (on the generator's device,
        then moved), so the same seed gives the same classes on any device and for any batching of the same shape.
        """
        if mode not in MODES:
            raise ValueError(f"PPS mode must be one of {', '.join(MODES)}; got {mode!r}")
        if mode == "argmax":
            return sim.argmax(-1)
        cdf = self.probabilities(sim.double()).cumsum(-1)  # float64: float32 cumsums of peaked p lose the tail
        device = generator.device if generator is not None else sim.device
        u = torch.rand(sim.shape[:-1], generator=generator, device=device, dtype=torch.float64).to(sim.device)
        # rounding can leave cdf[-1] a hair below u: clamp to the last class
        return (cdf < u[..., None]).sum(-1).clamp(max=sim.shape[-1] - 1)
