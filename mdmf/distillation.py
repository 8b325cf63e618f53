"""Mutual distillation between the local and global views (docs METHOD §6, paper eqs. 10–14). Training only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

CONDITIONS = ("both", "visual", "text", "none", "off")
DIRECTIONS = ("bi", "l2g", "g2l")
TIES = ("local", "neither")
REDUCTIONS = ("weighted-mean", "sum")


@dataclass
class ViewPosterior:
    """One view's posteriors for each query: `log_visual (E, M, N)` = log softmax(-d) and the discriminant scores
    `visual_score` ĉ = max softmax(-d), `text_score` c̃ = max softmax(text logits), both `(E, M)`."""

    log_visual: torch.Tensor
    visual_score: torch.Tensor
    text_score: torch.Tensor

    @classmethod
    def from_scores(cls, distances: torch.Tensor, text_logits: torch.Tensor) -> ViewPosterior:
        """distances `(E, M, N)` (OTAM), text_logits `(E, M, N)` (prompt-token cosines)."""
        log_visual = torch.log_softmax(-distances, dim=-1)
        return cls(log_visual, log_visual.exp().amax(-1), torch.softmax(text_logits, dim=-1).amax(-1))


@dataclass
class DistillationTerms:
    """`l2g` = L_{l→g} (global teaches local, over Ω^g), `g2l` = L_{g→l} (local teaches global, over Ω^l): scalars,
    each the mean over episodes of that episode's weighted KL (or summed KL, see `weighted_kl`).
    `global_reliable` / `local_reliable`: the masks Ω^g, Ω^l `(E, M)`."""

    l2g: torch.Tensor
    g2l: torch.Tensor
    global_reliable: torch.Tensor
    local_reliable: torch.Tensor


def reliability_masks(glob: ViewPosterior, local: ViewPosterior, condition: str,
                      ties: str = "local") -> tuple[torch.Tensor, torch.Tensor]:
    """(Ω^g, Ω^l) as `(E, M)` bool: the queries on which the global (local) view is the reliable one.

    `both` (paper): the view scores higher on ĉ and on c̃; a query where the views split is in neither set.
    `visual` / `text`: that score alone decides. `none`: every query in both sets. `off`: none.
    A tie on a score counts for the local view with `ties="local"` (the reference code compares `local >= global`),
    for neither view with `ties="neither"` (strict `>` both ways).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"distillation condition must be one of {', '.join(CONDITIONS)}; got {condition!r}")
    if ties not in TIES:
        raise ValueError(f"reliability ties must be one of {', '.join(TIES)}; got {ties!r}")
    local_wins = torch.ge if ties == "local" else torch.gt
    visual_g, visual_l = glob.visual_score > local.visual_score, local_wins(local.visual_score, glob.visual_score)
    text_g, text_l = glob.text_score > local.text_score, local_wins(local.text_score, glob.text_score)
    if condition == "both":
        return visual_g & text_g, visual_l & text_l
    if condition == "visual":
        return visual_g, visual_l
    if condition == "text":
        return text_g, text_l
    everyone = torch.full_like(visual_g, condition == "none")
    return everyone, everyone.clone()


def weighted_kl(teacher: ViewPosterior, student: ViewPosterior, selected: torch.Tensor,
                detach_teacher: bool = False, reduction: str = "weighted-mean") -> torch.Tensor:
    """`Σ_q w_q KL(P_teacher ‖ P_student) / Σ_q w_q` over the selected queries of each episode, `w_q = ĉ + c̃` of the
    teacher (`weighted-mean`), or the plain sum `Σ_q KL` over them (`sum`, the reference code's unconditioned
    distillation); then the mean over episodes (so a batch of E episodes gives the mean of E one-episode losses; an
    episode with no selected query contributes 0). selected `(E, M)` bool -> scalar.

    `detach_teacher` stops the gradient into everything the teacher contributes (its posterior and the weights).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"distillation reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    log_t = teacher.log_visual
    if detach_teacher:
        log_t = log_t.detach()
    kl = (log_t.exp() * (log_t - student.log_visual)).sum(-1)  # (E, M)
    if reduction == "sum":
        return (kl * selected).sum(-1).mean()
    weight = teacher.visual_score + teacher.text_score  # (E, M)
    if detach_teacher:
        weight = weight.detach()
    weight = weight * selected
    per_episode = (weight * kl).sum(-1) / weight.sum(-1).clamp_min(torch.finfo(weight.dtype).tiny)  # 0/0 -> 0
    return per_episode.mean()


def mutual_distillation(glob: ViewPosterior, local: ViewPosterior, condition: str = "both", direction: str = "bi",
                        detach_teacher: bool = False, ties: str = "local",
                        none_reduction: str = "sum") -> DistillationTerms:
    """Both distillation terms; the one `direction` leaves out is 0 (l2g keeps L_{l→g}, g2l keeps L_{g→l}).
    Conditioned terms are weighted means; `condition="none"` reduces by `none_reduction`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"distillation direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
    omega_g, omega_l = reliability_masks(glob, local, condition, ties)
    reduction = none_reduction if condition == "none" else "weighted-mean"
    zero = glob.log_visual.new_zeros(())
    l2g = weighted_kl(glob, local, omega_g, detach_teacher, reduction) if direction in ("bi", "l2g") else zero
    g2l = weighted_kl(local, glob, omega_l, detach_teacher, reduction) if direction in ("bi", "g2l") else zero
    return DistillationTerms(l2g, g2l, omega_g, omega_l)
