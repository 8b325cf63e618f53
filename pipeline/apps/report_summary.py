"""The report's short summary, as Markdown and as a standalone HTML page, from one list of blocks."""

from __future__ import annotations

import html
from pathlib import Path

CAPTIONS = {
    "curves": "Training loss per optimizer step (left); train accuracy and validation accuracy with its 95% interval "
              "(right). The dashed line marks the checkpoint kept as best (validation split).",
    "per_class": "Per-class accuracy on the evaluation split; dashed: accuracy over all queries; dotted: the "
                 "untrained OTAM baseline on the store's raw CLIP features, same episodes (the floor a head should "
                 "clear).",
    "confusion": "Confusion matrix, rows normalised: row = true class, column = predicted class. A blank cell is no "
                 "query at all; <.01 a few.",
    "tsne": "t-SNE of test videos: raw CLIP features (mean over frames) beside each view's fused features (mean of "
            "the compared tokens, each video fused with the prompt PPS gives it). Colours are classes.",
    "attention": "MMFE attention of a correctly and a wrongly classified query (titles in red: wrong), last block, "
                 "mean over heads: output tokens (rows; P = fused prompt, 1..T frames) against keys (columns; P = "
                 "prompt, 1..T raw CLIP frames).",
}


def _best_line(best: dict) -> str:
    """Which checkpoint the report is of: the best validated step, or the last one of a run without validation."""
    if best.get("val_accuracy") is None:
        return (f"No validation (no val split, or --val none): the checkpoint is the last one, step {best.get('step')}; "
                "the test split never chose it.")
    return (f"Best validation accuracy {best['val_accuracy']:.2f} ± {best.get('val_ci95') or 0:.2f} % at step "
            f"{best.get('step')} (val split; the test split never chose a checkpoint).")


def _floor_line(baseline: dict | None, ev: dict) -> str:
    """The untrained OTAM baseline beside the head: the same episodes, the store's raw CLIP features."""
    if not baseline:
        return "Untrained OTAM baseline: not evaluated."
    gain = ev["accuracy"] - baseline["accuracy"]
    return (f"Untrained OTAM on the store's raw CLIP features, the same {baseline['episodes']} episodes: "
            f"{baseline['accuracy']:.2f} ± {baseline['ci95']:.2f} % (the head: {gain:+.2f} points).")


def _blocks(s: dict) -> list[tuple[str, object]]:
    """("h1"|"h2"|"p"|"table"|"img", content) in reading order."""
    m, ev, best = s["model"], s["evaluation"], s["best"]
    setting = f"views {m.get('views')}, PPS {'on' if m.get('pps') else 'off'}" if m["name"] == "mdmf" else ""
    if m["name"] == "mdmf" and m.get("views") == "both":
        setting += f", distillation {m.get('distill_condition')}/{m.get('distill_direction')}"
    blocks: list[tuple[str, object]] = [
        ("h1", f"Report: {Path(s['run']).name}"),
        ("p", f"Model {m['name']}" + (f" ({setting})" if setting else "") + f"; store {s['store']} (backbone "
              f"{s['backbone']}, D={m['dim']}, T={m['frames']}); {s['train'].get('way')}-way "
              f"{s['train'].get('shot')}-shot training, {s['steps_logged']} steps logged."),
        ("p", _best_line(best)),
        ("h2", "Test accuracy"),
        ("p", f"{ev['way']}-way {ev['shot']}-shot on {s['config']['split']}: **{ev['accuracy']:.2f} ± {ev['ci95']:.2f} %** "
              f"(95% interval, {ev['episodes']} episodes, seed {ev['seed']}; {ev['source']}). Confusion matrix and "
              f"examples: the first {s['predictions']['episodes']} of the same episodes "
              f"({s['predictions']['accuracy']:.2f} % on them)."),
        ("p", _floor_line(s.get("baseline"), ev)),
    ]
    for key in ("curves", "per_class", "confusion", "tsne", "attention"):
        if key in s["figures"]:
            blocks += [("img", (s["figures"][key], key)), ("p", CAPTIONS[key])]
            if key == "attention" and s.get("attention_note"):
                blocks.append(("p", f"Note: {s['attention_note']}."))
    per_class = ev["per_class"]
    rows = [(name, f"{acc:.1f}") for name, acc in sorted(per_class.items(), key=lambda kv: -kv[1])]
    blocks += [("h2", "Per-class accuracy"), ("table", (("class", "accuracy %"), rows))]
    if s["attention"]:
        rows = [(str(a["episode"]), str(a.get("query", 0)), a["video_id"], a["true_class"], a["prompt_class"] or "-",
                 a["predicted_class"], {True: "correct", False: "wrong"}.get(a.get("correct"), "-"))
                for a in s["attention"]]
        blocks += [("h2", "Attention examples"),
                   ("table", (("episode", "query", "video", "true class", "PPS prompt", "predicted", "result"), rows))]
    return blocks


def to_markdown(blocks) -> str:
    lines = []
    for kind, content in blocks:
        if kind == "h1":
            lines.append(f"# {content}")
        elif kind == "h2":
            lines.append(f"## {content}")
        elif kind == "p":
            lines.append(str(content))
        elif kind == "img":
            lines.append(f"![{content[1]}]({content[0]})")
        elif kind == "table":
            head, rows = content
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def to_html(blocks, title: str) -> str:
    def inline(text: str) -> str:  # the only inline markup the blocks use is **bold**
        parts = html.escape(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{inline(content)}</p>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(content[0])}" alt="{html.escape(content[1])}">')
        elif kind == "table":
            head, rows = content
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "img{max-width:100%;border:1px solid #ddd;margin-top:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_summary(summary: dict, out: Path) -> tuple[Path, Path]:
    """`report.md` and `report.html` in `out` (figures referenced by their file names, which sit beside them)."""
    blocks = _blocks(summary)
    md, page = Path(out) / "report.md", Path(out) / "report.html"
    md.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks, f"mdmf report: {Path(summary['run']).name}"))
    return md, page
