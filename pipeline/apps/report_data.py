"""The numbers behind the report's figures: video embeddings for t-SNE, MMFE attention examples (the training
curves are the run folder's, `mdmf.pipeline.runs.read_curves`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def tsne_subset(labels: np.ndarray, max_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    """Rows of up to `max_classes` classes (evenly spread over the class ids), up to `per_class` videos each,
    drawn with `seed`; sorted."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    picked = classes[np.linspace(0, len(classes) - 1, min(max_classes, len(classes))).round().astype(int)]
    rows = []
    for c in picked:
        members = np.flatnonzero(labels == c)
        rows.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(rows))


@torch.no_grad()
def video_embeddings(model, frames: torch.Tensor, prompts: torch.Tensor, batch: int = 512) -> dict[str, torch.Tensor]:
    """One vector per video for the distribution figure: frames `(V, T, D)`, prompts `(C, D)` of the split's classes.

    "raw CLIP": the mean of the frame features. Per view of the model, "<view> (fused)": the mean of the tokens the
    distance compares (`frame_tokens` of `fuse`), with each video fused as a query would be: the prompt PPS gives
    it, here the most likely of all C classes (argmax, no label used), or no prompt for models without PPS.
    -> name -> `(V, D)`.
    """
    model.eval()
    out = {"raw CLIP": frames.mean(1)}
    if not model.fuses:  # no fusion: its tokens are the raw frames
        return out
    fused: dict[str, list[torch.Tensor]] = {}
    for i in range(0, frames.shape[0], batch):
        f = frames[i : i + batch]
        p = None
        if model.query_prompt_mode == "pps":
            p = prompts[model.pps_similarity(f, prompts).argmax(-1)]
        for view, tokens in model.fuse(model.encode(f), p, "query").items():
            fused.setdefault(view, []).append(model.frame_tokens(tokens).mean(1))
    return out | {f"{view} (fused)": torch.cat(parts) for view, parts in fused.items()}


@dataclass
class AttentionExample:
    episode: int
    video_id: str
    true_class: str
    prompt_class: str | None
    predicted_class: str
    maps: dict[str, np.ndarray]  # view -> (T+1, T+1): last block, mean over heads; rows output tokens, cols keys


@torch.no_grad()
def attention_examples(model, frames: torch.Tensor, prompts: torch.Tensor, predictions, class_names: list[str],
                       video_ids: list[str], count: int) -> list[AttentionExample]:
    """The first query of each of the first `count` episodes of `predictions` (an `EpisodePredictions`), fused with
    the prompt PPS gave it there. Empty for models without an MMFE (`attention`)."""
    if not model.has_attention:
        return []
    model.eval()
    out = []
    for e in range(min(count, len(predictions.query))):
        v, pc = int(predictions.query[e, 0]), int(predictions.prompt_class[e, 0])
        f = frames[v : v + 1]
        maps = model.attention(model.encode(f), prompts[pc : pc + 1] if pc >= 0 else None, "query")
        out.append(AttentionExample(
            episode=e, video_id=video_ids[v], true_class=class_names[int(predictions.true[e, 0])],
            prompt_class=class_names[pc] if pc >= 0 else None,
            predicted_class=class_names[int(predictions.predicted[e, 0])],
            maps={view: w[0, -1].mean(0).cpu().numpy() for view, w in maps.items()}))
    return out
