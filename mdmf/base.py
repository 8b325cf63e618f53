"""`FewShotMethod`: the interface all few-shot models share (docs CONTRACTS.md, "Model API"), and its result types.

Shapes: E episodes, N way, K shot, M queries per episode, T frames, D width, L tokens per video, C classes.
A method splits its work into `encode` (per video, episode-independent), `fuse` (per (video, prompt) pair) and
`score` (prototypes, distances, logits), so that evaluation can compute each video and each pair once; `forward`
composes them, the one spelling of scoring an episode (training, the naive evaluation and `predict`, whose classes may
have uneven shots); the reused evaluation path (pipeline.episodes.scoring) calls the same parts in another order.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mdmf.config import ModelConfig
from mdmf.otam import otam_distance
from mdmf.pps import ProbabilityPromptSelector

ROLES = ("support", "query")


def ordered_shot_mean(shot, shots: int, in_place: bool = False) -> torch.Tensor:
    """`(shot(0) + shot(1) + … + shot(shots - 1)) / shots`, added in exactly this order, then one division (none
    for one shot).

    `shot(k)` gives shot k's tokens, any shape. The class prototypes of `score` are this mean; torch's `mean(dim)`
    adds its rows in an order that depends on the width, so a path that sums the shots while gathering them (the
    reused evaluation path: no `(E, N, K, L, D)` tensor) gets the same bits only through this one function. With
    `in_place` the sum accumulates into the tensor `shot(0)` returns (it must be the caller's own buffer); without,
    every step is a new tensor (autograd-safe).
    """
    total = shot(0)
    for k in range(1, shots):
        total = total.add_(shot(k)) if in_place else total + shot(k)
    if shots > 1:
        total = total.div_(shots) if in_place else total / shots
    return total


@dataclass
class ClassTexts:
    """The prompt embeddings of all training classes, for losses that classify videos over all of them (CLIP-FSAR's
    video-text loss). `embeddings (C, D)`; `episode_classes (E, N)` long: row e holds the indices into `embeddings`
    of episode e's N classes, in episode order (so query label y of episode e is class `episode_classes[e, y]`)."""

    embeddings: torch.Tensor
    episode_classes: torch.Tensor


@dataclass
class VideoTextLogits:
    """Logits of each episode video over all C training classes: `support (E, N, K, C)`, `query (E, M, C)`,
    with `episode_classes (E, N)` to turn episode labels into class indices."""

    support: torch.Tensor
    query: torch.Tensor
    episode_classes: torch.Tensor


@dataclass
class Scores:
    """What `score` / `forward` return.

    logits `(E, M, N)`: `-Σ_view α_view · distance_view`, the classification logits.
    distances: view -> `(E, M, N)` OTAM distances to the class prototypes.
    text_logits: view -> `(E, M, N)` cosine between the query's and each prototype's prompt token (MDMF), or None.
    prompt_choice `(E, M)` long: the class whose prompt each query received from PPS (`forward` only), or None.
    video_text: CLIP-FSAR's video-text logits when `forward` was given `ClassTexts`, else None.
    """

    logits: torch.Tensor
    distances: dict[str, torch.Tensor]
    text_logits: dict[str, torch.Tensor] | None = None
    prompt_choice: torch.Tensor | None = None
    video_text: VideoTextLogits | None = None
    # Method-specific tensors that `score` computes for its `auxiliary_losses` (HyRSM's frame classifier logits),
    # and the episodes' classes among the training classes `(E, N)` when `forward` got `ClassTexts`.
    extras: dict[str, torch.Tensor] | None = None
    episode_classes: torch.Tensor | None = None


def episode_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    """logits `(E, X, C)`, targets `(E, X)` long -> scalar: the cross-entropy of each episode's X items summed
    (`sum`) or averaged (`mean`), then averaged over the E episodes."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    return ce / (logits.shape[0] if reduction == "sum" else targets.numel())


class FewShotMethod(nn.Module, abc.ABC):
    """Base of MDMF, CLIP-FSAR and the OTAM baseline. Subclasses implement `encode` and `fuse`, and may adjust
    which tokens are compared (`frame_tokens`), add text logits, view weights and auxiliary losses."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.prompt_selector = ProbabilityPromptSelector(config.pps_topk, config.pps_temperature,
                                                         config.prompt_cosine_eps)

    @property
    def query_prompt_mode(self) -> str:
        """How queries get a prompt: `pps` (the class PPS selects) or `none` (`fuse(..., None, "query")`)."""
        return "none"

    # What the pipeline may ask of a method (it never guesses from names or attributes).
    needs_training: bool = True  # False: a fixed baseline with nothing to train (OTAM on raw features)
    fuses: bool = True  # False: `fuse` passes the raw frames on; its tokens are the frame features themselves
    has_attention: bool = False  # True: `attention` returns the fusion's attention maps (for figures)
    # True: `score` needs every support video's tokens `(E, N, K, L, D)`, not only their class mean (a mean of per-shot
    # similarities, attention over all shots' tuples): evaluation then gathers them and calls `score`, never
    # `score_prototypes`. Such a method scores each class from that class's shots alone (uneven shots: `score_classes`
    # scores one class at a time), unless it overrides `score_classes` (HyRSM's inter-relation spans all classes).
    scores_shots: bool = False

    def attention(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
                  role: str) -> dict[str, torch.Tensor]:
        """view -> `(B, depth, heads, L, L')` attention maps of `fuse`; only where `has_attention`."""
        raise NotImplementedError(f"{self.config.name} has no attention maps (has_attention is False)")

    # ---- per-video and per-pair work ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> dict of `(B, …)` tensors: the episode-independent work on each video."""

    @abc.abstractmethod
    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """encoded (from `encode`), prompts `(B, D)` or None, role "support" | "query" -> view -> `(B, L, D)`."""

    @property
    def merges_shots(self) -> bool:
        """True when a class's K support videos are averaged before `fuse` (CLIP-FSAR's `fsar_merge_before`): then
        a support video's tokens depend on the other shots of its class and cannot be computed once per video."""
        return False

    def fuse_support(self, encoded: dict[str, torch.Tensor], class_prompts: torch.Tensor) -> dict[str, torch.Tensor]:
        """encoded view -> `(E, N, K, …)` (from `encode`), class_prompts `(E, N, D)` -> view -> `(E, N, K', L, D)`.

        Each support video is fused with its class prompt (K' = K), or, when the method `merges_shots`, the mean of
        a class's K encoded videos is fused once (K' = 1); `score` averages over K' either way.
        """
        E, N, K = next(iter(encoded.values())).shape[:3]
        if self.merges_shots:
            rows = {k: v.mean(2).flatten(0, 1) for k, v in encoded.items()}  # (E·N, …)
            prompts = class_prompts.reshape(E * N, -1)
        else:
            rows = {k: v.flatten(0, 2) for k, v in encoded.items()}  # (E·N·K, …)
            prompts = class_prompts[:, :, None].expand(E, N, K, -1).reshape(E * N * K, -1)
        return {v: t.reshape(E, N, -1, *t.shape[1:]) for v, t in self.fuse(rows, prompts, "support").items()}

    def pps_similarity(self, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """frames `(B, T, D)`, prompts `(C, D)` -> `(B, C)`: mean of the top-k frame–prompt cosines."""
        return self.prompt_selector.similarity(frames, prompts)

    def select_prompts(self, sim: torch.Tensor, mode: str = "sample",
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """sim `(E, M, N)` -> `(E, M)` long: the episode class whose prompt each query takes."""
        return self.prompt_selector.select(sim, mode, generator)

    # ---- episode scoring ---------------------------------------------------------------------------------------
    def frame_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens OTAM compares, `(…, L, D) -> (…, T, D)`; all of them unless a method says otherwise."""
        return tokens

    def view_weight(self, view: str) -> float:
        """α of a view in `logits = -Σ α · distance`."""
        return 1.0

    def text_logits(self, query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor | None:
        """query `(E, M, L, D)`, prototypes `(E, N, L, D)` -> `(E, M, N)` text logits, or None."""
        return None

    @staticmethod
    def prototypes(support_tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """support_tokens view -> `(E, N, K, L, D)` -> view -> `(E, N, L, D)`: the mean of a class's K support
        outputs over all L tokens, shots added in order (`ordered_shot_mean`)."""
        return {view: ordered_shot_mean(lambda k, t=t: t[:, :, k], t.shape[2]) for view, t in support_tokens.items()}

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """query_tokens view -> `(E, M, L, D)`, support_tokens view -> `(E, N, K, L, D)` -> `Scores`.

        The prototype of a class is the mean of its K support outputs over all L tokens (`prototypes`).
        """
        return self.score_prototypes(query_tokens, self.prototypes(support_tokens))

    def score_prototypes(self, query_tokens: dict[str, torch.Tensor],
                         prototypes: dict[str, torch.Tensor]) -> Scores:
        """query_tokens view -> `(E, M, L, D)`, prototypes view -> `(E, N, L, D)` (from `prototypes`) -> `Scores`."""
        distances, text = {}, {}
        for view, query in query_tokens.items():
            proto = prototypes[view]  # (E, N, L, D)
            distances[view] = otam_distance(self.frame_tokens(query), self.frame_tokens(proto),
                                            self.config.otam_smoothing, self.config.otam_bidirectional)
            t = self.text_logits(query, proto)
            if t is not None:
                text[view] = t
        logits = -sum(self.view_weight(view) * d for view, d in distances.items())
        return Scores(logits=logits, distances=distances, text_logits=text or None)

    def fuse_classes(self, encoded: list[dict[str, torch.Tensor]],
                     class_prompts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Uneven shots (one episode, class n with its own K_n): encoded[n] view -> `(K_n, …)` (from `encode`),
        class_prompts `(N, D)` -> view -> `(1, N, 1, L, D)`.

        Each class goes through `fuse_support` as an episode of its own and is represented by its `prototypes` (the
        mean of its fused shots), so `score` sees one episode with K' = 1 and gets the same prototypes it would
        compute from K_n even shots. (A head whose `score` compares single support videos rather than prototypes
        sees only the class means here.)
        """
        protos = [self.prototypes(self.fuse_support({k: v[None, None] for k, v in enc.items()},
                                                    class_prompts[n, None, None]))
                  for n, enc in enumerate(encoded)]
        return {view: torch.cat([p[view] for p in protos], dim=1)[:, :, None] for view in protos[0]}

    def score_classes(self, query_tokens: dict[str, torch.Tensor], encoded: list[dict[str, torch.Tensor]],
                      class_prompts: torch.Tensor) -> Scores:
        """Uneven shots for a method that `scores_shots` (its score needs every shot, not the class mean): query
        tokens view -> `(1, M, L, D)`, encoded[n] view -> `(K_n, …)`, class_prompts `(N, D)` -> `Scores` `(1, M, N)`,
        class n scored from its own K_n fused shots (such a method scores each class from its shots alone)."""
        parts = [self.score(query_tokens, self.fuse_support({k: v[None, None] for k, v in enc.items()},
                                                            class_prompts[n, None, None]))
                 for n, enc in enumerate(encoded)]
        return Scores(logits=torch.cat([p.logits for p in parts], -1),
                      distances={v: torch.cat([p.distances[v] for p in parts], -1) for v in parts[0].distances})

    def choose_query_prompts(self, query: torch.Tensor, class_prompts: torch.Tensor, generator: torch.Generator | None,
                             mode: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """query `(E, M, T, D)`, class_prompts `(E, N, D)` -> (the episode class whose prompt each query takes `(E, M)`
        long, the prompts `(E·M, D)`), drawn by PPS in `mode` with `generator`; (None, None) when queries take none."""
        if self.query_prompt_mode != "pps":
            return None, None
        E, M = query.shape[:2]
        sim = self.prompt_selector.similarity(query, class_prompts)  # (E, M, N)
        choice = self.select_prompts(sim, mode, generator)  # (E, M)
        prompts = torch.gather(class_prompts, 1, choice[..., None].expand(E, M, class_prompts.shape[-1]))
        return choice, prompts.reshape(E * M, -1)

    def forward(self, support: torch.Tensor | Sequence[torch.Tensor], class_prompts: torch.Tensor, query: torch.Tensor,
                generator: torch.Generator | None = None, class_texts: ClassTexts | None = None,
                pps_mode: str | None = None) -> Scores:
        """support `(E, N, K, T, D)`, class_prompts `(E, N, D)`, query `(E, M, T, D)` -> `Scores`: the one spelling
        of episode scoring (training, naive evaluation, `predict`).

        `support` may also be one episode's N classes with their own numbers of shots, a sequence of N `(K_n, T, D)`
        tensors (E = 1; `fuse_classes`); with equal K_n it is the `(1, N, K, T, D)` case exactly. Supports take their
        class's prompt; queries take the prompt PPS draws with `generator` in `pps_mode` (default: `pps_train_mode`
        when training, `pps_eval_mode` in eval) or none. `class_texts` is only used by methods with a loss over all
        training classes (CLIP-FSAR; even shots only). `encode` runs on all videos of all E episodes in one call (see
        LTCE's BN note).
        """
        if not torch.is_tensor(support) and len({s.shape[0] for s in support}) == 1:
            support = torch.stack(list(support))[None]
        shots = None if torch.is_tensor(support) else [s.shape[0] for s in support]
        if shots is not None and class_texts is not None:
            raise ValueError("class_texts (the video-text loss) needs the same number of shots in every class")
        rows = support.flatten(0, 2) if shots is None else torch.cat(list(support))
        E, M = query.shape[:2]
        encoded = self.encode(torch.cat([rows, query.flatten(0, 1)]))
        encoded_support = {k: v[: len(rows)] for k, v in encoded.items()}
        encoded_query = {k: v[len(rows) :] for k, v in encoded.items()}

        mode = pps_mode or (self.config.pps_train_mode if self.training else self.config.pps_eval_mode)
        choice, query_prompts = self.choose_query_prompts(query, class_prompts, generator, mode)
        # Supports are fused before queries (as before uneven shots existed): in training, dropout draws its masks in
        # this order, so a run's numbers do not depend on how the scoring path is spelled.
        def query_tokens() -> dict[str, torch.Tensor]:
            fused = self.fuse(encoded_query, query_prompts, "query")
            return {v: t.reshape(E, M, *t.shape[1:]) for v, t in fused.items()}

        if shots is None:
            s_tokens = self.fuse_support({k: v.reshape(*support.shape[:3], *v.shape[1:])
                                          for k, v in encoded_support.items()}, class_prompts)
            scores = self.score(query_tokens(), s_tokens)
        else:
            bounds = [0, *itertools.accumulate(shots)]
            classes = [{k: v[a:b] for k, v in encoded_support.items()} for a, b in zip(bounds, bounds[1:])]
            if self.scores_shots:
                scores = self.score_classes(query_tokens(), classes, class_prompts[0])
            else:
                s_tokens = self.fuse_classes(classes, class_prompts[0])
                scores = self.score(query_tokens(), s_tokens)
        scores.prompt_choice = choice
        if class_texts is not None:
            scores.video_text = self.video_text_logits(support, query, class_texts)
            scores.episode_classes = class_texts.episode_classes
        return scores

    # ---- training objective ------------------------------------------------------------------------------------
    def video_text_logits(self, support: torch.Tensor, query: torch.Tensor,
                          class_texts: ClassTexts) -> VideoTextLogits | None:
        """Logits of the episode's videos over all training classes, for methods that have such a loss."""
        return None

    def auxiliary_losses(self, scores: Scores, query_labels: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """name -> (weight, scalar loss) added to the cross-entropy; query_labels `(E, M)`."""
        return {}

    def loss(self, scores: Scores, query_labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """query_labels `(E, M)` episode class indices -> (loss, parts).

        loss = cross-entropy of `logits` (summed over each episode's M queries with `ce_reduction="sum"`, as the
        reference code; averaged over them with `mean`), averaged over the E episodes, + Σ weight · auxiliary loss;
        parts holds "ce" and each auxiliary loss unweighted, as floats, for logging.
        """
        ce = episode_cross_entropy(scores.logits, query_labels, self.config.ce_reduction)
        total, parts = ce, {"ce": float(ce.detach())}
        for name, (weight, value) in self.auxiliary_losses(scores, query_labels).items():
            total = total + weight * value
            parts[name] = float(value.detach())
        return total, parts

    # ---- helpers for subclasses --------------------------------------------------------------------------------
    def check_frames(self, frames: torch.Tensor) -> None:
        """Programming-error guard: frames must be `(B, T, D)` with this config's T and D."""
        want = (self.config.frames, self.config.dim)
        if frames.dim() != 3 or tuple(frames.shape[1:]) != want:
            raise ValueError(f"{self.config.name} expects frames (B, {want[0]}, {want[1]}); got {tuple(frames.shape)}")

    @staticmethod
    def check_role(role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")


class EncodedTokens:
    """Mixin for a head without prompt fusion whose `encode` already gives the tokens it compares: `fuse` hands them
    on unchanged, for both roles (put it before `FewShotMethod` in the bases)."""

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """No prompts, no fusion: the tokens of `encode`, for both roles."""
        self.check_role(role)
        return dict(encoded)
