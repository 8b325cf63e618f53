"""The report's PNG figures. Matplotlib's object API (`Figure`, rendered by Agg): no pyplot, no global state, no
display needed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

DPI = 120
# report.html shows images at most this wide (its body is 1100 px less 1 em padding a side): a figure no wider is
# shown at its own size, so its text keeps the size set here. PAGE_IN is that width in inches at DPI.
PAGE_PX = 1060
PAGE_IN = PAGE_PX / DPI - 0.3  # the figure width that fits: savefig's tight box adds 0.1 in a side, and some slack
MIN_TEXT_PT = 7  # 7 pt at 120 dpi = 11.7 px on the page: the smallest text a figure writes


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def training_curves(curves, path: Path, best_step: int | None = None) -> Path:
    """Left: the loss and its parts per optimizer step. Right: train accuracy (moving mean over 10 steps) and
    validation accuracy with its 95% interval, per step."""
    fig = Figure(figsize=(PAGE_IN, 3.8), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    steps = [r["step"] for r in curves.train]
    for key in ("loss", "ce", "distill_l2g", "distill_g2l", "video_text"):
        if curves.train and key in curves.train[0]:
            loss_ax.plot(steps, [r[key] for r in curves.train], label=key, lw=1.2 if key == "loss" else 0.8)
    loss_ax.set(xlabel="optimizer step", ylabel="loss", title="training loss")
    if curves.train:
        acc = np.array([r["train_accuracy"] for r in curves.train])
        window = min(10, len(acc))
        smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
        acc_ax.plot(steps[window - 1 :], smooth, label=f"train (mean of {window} steps)", lw=1)
    if curves.val:
        acc_ax.errorbar([r["step"] for r in curves.val], [r["val_accuracy"] for r in curves.val],
                        yerr=[r.get("val_ci95", 0) for r in curves.val], marker="o", ms=3, capsize=2,
                        label="validation (95% interval)")
    if best_step:
        for ax in (loss_ax, acc_ax):
            ax.axvline(best_step, color="grey", ls="--", lw=0.8, label="best checkpoint" if ax is acc_ax else None)
    acc_ax.set(xlabel="optimizer step", ylabel="accuracy %", title="few-shot accuracy")
    for ax in (loss_ax, acc_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def per_class_accuracy(per_class: dict[str, float], mean: float, path: Path, title: str,
                       floor: float | None = None) -> Path:
    """Horizontal bars, best class on top, the overall accuracy as a dashed line and the untrained OTAM baseline's
    on the same episodes (`floor`) as a dotted one; the legend under the axes, never on a bar."""
    names = sorted(per_class, key=per_class.get)
    fig = Figure(figsize=(min(7.5, PAGE_IN), 1.6 + 0.3 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(names)), [per_class[n] for n in names], color="#4c72b0")
    ax.set_yticks(range(len(names)), [_short(n, 40) for n in names], fontsize=8)
    ax.axvline(mean, color="#c44e52", ls="--", lw=1.2, label=f"all queries {mean:.1f} %")
    if floor is not None:
        ax.axvline(floor, color="#555555", ls=":", lw=1.5, label=f"untrained OTAM {floor:.1f} %")
    ax.set(xlabel="accuracy %", xlim=(0, 100))
    ax.set_title(title, fontsize=9)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    return _save(fig, path)


def cell_text(rate: float, count: int) -> str:
    """A confusion cell: blank for no query at all (an exact zero), `<.01` for a few, else two decimals."""
    if count == 0:
        return ""
    return "<.01" if rate < 0.005 else f"{rate:.2f}"


def confusion(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (row: true class, column: predicted); cell values printed for ≤ 15 classes."""
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(class_names)
    # The page width, less the class labels and the colour bar: the cells' side, and the largest cell text that fits
    # ("0.00" is about 2.6 em wide); the values are printed when that is readable on the page.
    cell_pt = (PAGE_IN - 3.2) / n * 72
    number_pt = min(10.0, cell_pt / 2.6)
    fig = Figure(figsize=(PAGE_IN, PAGE_IN - 1.2), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    labels = [_short(c) for c in class_names]
    label_pt = max(MIN_TEXT_PT, min(8.0, cell_pt * 0.8))
    ax.set_xticks(range(n), labels, rotation=90, fontsize=label_pt)
    ax.set_yticks(range(n), labels, fontsize=label_pt)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(title, fontsize=9)
    if number_pt >= MIN_TEXT_PT:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, cell_text(rates[i, j], int(matrix[i, j])), ha="center", va="center",
                        fontsize=number_pt, color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the row's queries")
    return _save(fig, path)


def tsne_panels(points: dict[str, np.ndarray], labels: np.ndarray, class_names: list[str], path: Path) -> Path:
    """One scatter per embedding (name -> `(V, 2)`), coloured by class, two panels a row at the page's width, and one
    shared legend in the free panel place (an odd count) or under the panels: never on the points."""
    slots = len(points) + len(points) % 2  # an odd count leaves a place for the legend
    rows = slots // 2
    fig = Figure(figsize=(PAGE_IN, (PAGE_IN / 2) * rows + (0 if len(points) % 2 else 0.8)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 2)).ravel()
    classes = np.unique(labels)
    palette = [f"C{i}" for i in range(10)] if len(classes) <= 10 else [colormaps["tab20"](i % 20) for i in range(20)]
    for ax, (name, xy) in zip(axes, points.items()):
        for i, c in enumerate(classes):
            sel = labels == c
            colour = palette[i % len(palette)]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=16, color=colour, label=_short(class_names[c]), alpha=0.8, lw=0)
        ax.set(xticks=[], yticks=[])
        ax.set_title(name, fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    spare = axes[len(points):]
    for ax in spare:
        ax.set_axis_off()
    if len(spare):
        spare[0].legend(handles, names, fontsize=8, loc="center", markerscale=1.5, frameon=False,
                        ncol=1 if len(names) <= 12 else 2)
    else:
        fig.legend(handles, names, fontsize=8, loc="outside lower center", markerscale=1.5, frameon=False,
                   ncol=min(5, len(names)))
    return _save(fig, path)


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` wrapped at word boundaries to fit `width_in` inches at `fontsize` points (nothing is cut; the width
    per character is DejaVu Sans' widest usual average, about 0.62 em)."""
    chars = max(20, int(width_in * 72 / (0.62 * fontsize)))
    return "\n".join(textwrap.fill(part, chars, break_on_hyphens=False) for part in text.split("\n"))


def _example_title(ex) -> str:
    verdict = "correct" if ex.correct else "wrong"
    prompt = ex.prompt_class if ex.prompt_class is not None else "none"
    return (f"episode {ex.episode}, query {ex.query} ({ex.video_id}): {verdict}\n"
            f"true: {ex.true_class}\npredicted: {ex.predicted_class}\nPPS prompt: {prompt}")


TITLE_SIZE = 9


def attention_figure(examples, frames: int, note: str | None = None) -> Figure:
    """The attention figure (see `attention_maps`): one row per example, its title above the row naming the episode,
    the video, whether it was classified correctly, and the full true, predicted and prompt class names (wrapped,
    never cut); one column per view. `note` (e.g. no wrong prediction to show) goes under the rows."""
    views = list(examples[0].maps)
    width = min(3.6 * len(views) + 0.8, PAGE_IN)
    titles = [_wrap(_example_title(ex), width - 0.3, TITLE_SIZE) for ex in examples]
    heights = [3.3 + 0.19 * (t.count("\n") + 1) for t in titles]
    note_text = _wrap(note, width - 0.3, TITLE_SIZE) if note else None
    fig = Figure(figsize=(width, sum(heights) + (0.25 + 0.19 * note_text.count("\n") if note_text else 0)),
                 layout="constrained")
    rows = np.atleast_1d(fig.subfigures(len(examples), 1, height_ratios=heights))
    ticks = ["P"] + [str(t) for t in range(1, frames + 1)]
    for sub, ex, title in zip(rows, examples, titles):
        sub.suptitle(title, fontsize=TITLE_SIZE, color="black" if ex.correct else "#b2182b")
        for ax, view in zip(np.atleast_1d(sub.subplots(1, len(views))), views):
            # the map's own range: attention weights between 0.08 and 0.14 would look flat on a scale from 0
            im = ax.imshow(ex.maps[view], cmap="viridis")
            ax.set_xticks(range(frames + 1), ticks, fontsize=7)
            ax.set_yticks(range(frames + 1), ticks, fontsize=7)
            ax.set_xlabel("key: prompt / raw frame", fontsize=7)
            ax.set_ylabel("output token", fontsize=7)
            ax.set_title(f"{view} view", fontsize=8)
            sub.colorbar(im, ax=ax, fraction=0.046)
    if note_text:
        fig.supxlabel(note_text, fontsize=TITLE_SIZE, style="italic")
    return fig


def attention_maps(examples, frames: int, path: Path, note: str | None = None) -> Path:
    """Rows: examples (a query of an episode, correctly and wrongly classified ones in turn); columns: views. Each
    map: output token (rows: P = the fused prompt, 1..T the frames) against key token (P = the prompt, 1..T the raw
    CLIP frames), last block, mean over heads."""
    return _save(attention_figure(examples, frames, note), path)
