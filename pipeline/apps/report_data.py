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
    query: int  # the query's position in its episode
    video_id: str
    true_class: str
    prompt_class: str | None
    predicted_class: str
    correct: bool
    maps: dict[str, np.ndarray]  # view -> (T+1, T+1): last block, mean over heads; rows output tokens, cols keys


def pick_examples(predictions, count: int = 2) -> tuple[list[tuple[int, int]], str | None]:
    """`count` (episode, query) pairs of an `EpisodePredictions`, correctly and wrongly classified queries in turn
    (a correct one first), each the next of its kind in episode order; and a note when the episodes hold no wrong
    (or no correct) query, in which case the other kind fills the places."""
    hit = (predictions.true == predictions.predicted).reshape(-1).tolist()  # (episode, query) in reading order
    episodes, queries = predictions.true.shape
    pools = {True: [i for i, h in enumerate(hit) if h], False: [i for i, h in enumerate(hit) if not h]}
    note = None
    if hit and not pools[False]:
        note = f"no query was classified wrongly in the {episodes} episodes: every example shown is a correct one"
    elif hit and not pools[True]:
        note = f"no query was classified correctly in the {episodes} episodes: every example shown is a wrong one"
    picked: list[int] = []
    want = True
    while len(picked) < min(count, len(hit)):
        pool = pools[want] or pools[not want]
        picked.append(pool.pop(0))
        want = not want
    return [divmod(i, queries) for i in picked], note


@torch.no_grad()
def attention_examples(model, frames: torch.Tensor, prompts: torch.Tensor, predictions, class_names: list[str],
                       video_ids: list[str], count: int) -> tuple[list[AttentionExample], str | None]:
    """The queries `pick_examples` chooses from `predictions` (an `EpisodePredictions`), each fused with the prompt
    PPS gave it there; and its note. No examples for models without an MMFE (`attention`)."""
    if not model.has_attention:
        return [], None
    model.eval()
    out = []
    picks, note = pick_examples(predictions, count)
    for e, m in picks:
        v, pc = int(predictions.query[e, m]), int(predictions.prompt_class[e, m])
        true, predicted = int(predictions.true[e, m]), int(predictions.predicted[e, m])
        f = frames[v : v + 1]
        maps = model.attention(model.encode(f), prompts[pc : pc + 1] if pc >= 0 else None, "query")
        out.append(AttentionExample(
            episode=e, query=m, video_id=video_ids[v], true_class=class_names[true],
            prompt_class=class_names[pc] if pc >= 0 else None, predicted_class=class_names[predicted],
            correct=true == predicted, maps={view: w[0, -1].mean(0).cpu().numpy() for view, w in maps.items()}))
    return out, note
