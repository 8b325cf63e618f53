"""A comparison of methods on identical episodes as Markdown (the terminal's table is `mdmf.cli.compare`), and the
cells both share."""

from __future__ import annotations


def difference_cells(row: dict) -> tuple[str, str]:
    """("Δ ± 95 %", "p") of a row: `baseline` for the baseline itself."""
    d = row["difference"]
    if d is None:
        return "baseline", ""
    return f"{d['mean']:+.2f} ± {d['ci95']:.2f}", format_p(d["p_value"])


def format_p(p: float) -> str:
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def header_line(summary: dict) -> str:
    return (f"{summary['split']} split of {summary['store']}, {summary['way']}-way {summary['shot']}-shot, "
            f"{summary['queries']} quer{'y' if summary['queries'] == 1 else 'ies'} per class, {summary['episodes']} "
            f"episodes (seed {summary['seed']}, episodes sha256 {summary['episodes_sha256'][:12]}), the same for "
            f"every method; Δ: paired difference to {summary['baseline']} over the episodes; p: {summary['test']}.")


def to_markdown(summary: dict) -> str:
    lines = ["# Methods on identical episodes", "", header_line(summary), "",
             "| method | model | source | accuracy % | Δ to baseline (pp) | p |", "|---|---|---|---|---|---|"]
    for row in summary["methods"]:
        delta, p = difference_cells(row)
        lines.append(f"| {row['name']} | {row['model']} | {row['source']} | {row['accuracy']:.2f} ± {row['ci95']:.2f} "
                     f"| {delta} | {p} |")
    return "\n".join(lines + [""])
