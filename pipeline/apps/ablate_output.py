"""An ablation grid beside the paper's numbers, as Markdown for the run folder (the terminal's table is
`mdmf.cli.tables.print_ablation_table`)."""

from __future__ import annotations

from mdmf.pipeline.apps.compare_output import difference_cells

PAPER_COLUMNS = {"kinetics100": "Kinetics", "ssv2_small": "SSv2-Small", "hmdb51": "HMDB51"}
CAVEAT = ("Paper: RN50, end-to-end fine-tuned, 5-way. A head trained on frozen cached features is expected to land "
          "clearly below it; compare the differences between cells, not the absolute numbers.")


def _setting(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def paper_delta(row: dict, dataset: str) -> str:
    """Ours minus the paper's number for `dataset` (`-` where the paper has none)."""
    paper = row["paper"].get(dataset)
    return f"{row['accuracy'] - paper:+.1f}" if paper is not None else "-"


def to_markdown(summary: dict) -> str:
    ds = summary["dataset"]
    base = summary.get("baseline")
    head = (["cell", "setting", "overrides", "ours %"] + ([f"Δ to {base} (pp)", "p"] if base else [])
            + [f"paper {n}" for n in PAPER_COLUMNS.values()] + ["Δ paper"])
    delta = (f"Δ is ours minus the paper's {PAPER_COLUMNS[ds]} column." if ds in PAPER_COLUMNS else
             f"The paper has no {ds} column (Δ only for {', '.join(PAPER_COLUMNS)}).")
    lines = [f"# Table {summary['table']}: {summary['title']}", "",
             f"{ds}, {summary['way']}-way {summary['shot']}-shot; {summary['steps']} training steps per cell; "
             f"{summary['episodes']} test episodes (seed {summary['seed']}), the same for every cell; accuracy ± 95% "
             f"interval. {delta}" + (f" Δ to {base}: paired difference over the episodes; p: {summary['test']}."
                                      if base else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["cells"]:
        cells = [row["cell"], row["label"], f"`{_setting(row['overrides'])}`", f"{row['accuracy']:.2f} ± {row['ci95']:.2f}"]
        cells += list(difference_cells(row)) if base else []
        cells += [f"{row['paper'][k]:.1f}" if k in row["paper"] else "-" for k in PAPER_COLUMNS] + [paper_delta(row, ds)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + ([summary["note"], ""] if summary.get("note") else []) + [CAVEAT, ""]
    return "\n".join(lines)
