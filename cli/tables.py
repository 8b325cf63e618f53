"""Every rich table the CLI prints: the pipeline returns data (and writes its JSON / Markdown), these render it.

`print_extract_summary` (`mdmf extract`, the demo), `print_store_info` (`mdmf cache info`), `print_eval_result`
(`mdmf eval`), `print_ablation_table` (`mdmf ablate`), `print_check_data` (`mdmf check-data`), `print_prediction`
(`mdmf predict`).
"""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mdmf.pipeline.apps.ablate_output import CAVEAT, PAPER_COLUMNS, paper_delta
from mdmf.pipeline.apps.compare_output import difference_cells


def print_extract_summary(summary, console: Console, first_failures: int = 5) -> None:
    table = Table(title=f"feature store {summary.store}")
    for col in ("split", "videos", "ok", "short (<T frames)", "failed", "pending"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, c in summary.per_split.items():
        table.add_row(split, str(c["total"]), str(c["ok"]), str(c["short"]), str(c["failed"]), str(c["pending"]))
    console.print(table)
    console.print(f"{summary.videos_done} videos processed in {summary.seconds:.1f} s")
    for split, units in summary.redone_damaged.items():
        console.print(f"[yellow]{split}: {len(units)} damaged units found and extracted again[/] (units "
                      f"{', '.join(map(str, units[:10]))}{' ...' if len(units) > 10 else ''})")
    t = summary.times
    if t:
        main = t["waiting_for_decode"] + t["encoding"] + t["waiting_for_writer"]
        share = lambda x: f"{100 * x / main:.0f} %" if main > 0 else "-"  # noqa: E731
        console.print(f"[dim]main process: waiting for decoded videos {t['waiting_for_decode']:.1f} s "
                      f"({share(t['waiting_for_decode'])}), encoding {t['encoding']:.1f} s ({share(t['encoding'])}), "
                      f"waiting for the writer {t['waiting_for_writer']:.1f} s; writer thread {t['writing']:.1f} s[/]")
        if main > 0 and t["waiting_for_decode"] > 0.5 * main:
            console.print("[dim]decoding was the bottleneck: more --workers (if there are idle CPU cores) would "
                          "speed this up[/]")
    for split, fails in summary.failures.items():
        if fails:
            console.print(f"[yellow]{split}: {summary.per_split[split]['failed']} failed videos[/], first ones:")
            for vid, path, reason in fails[:first_failures]:
                console.print(f"  {path or vid}: {reason}", highlight=False)
    if any(c["short"] for c in summary.per_split.values()):
        console.print("[yellow]warning:[/] some videos are shorter than T frames; their frames were repeated")
    if any(c["pending"] for c in summary.per_split.values()):
        console.print("[yellow]some videos are still pending[/] (other shards, or an interrupted run): run again to finish")


def print_store_info(info: dict, console: Console) -> None:
    b = info["backbone"]
    console.print(f"[bold]{info['path']}[/]  schema v{info['schema_version']}")
    sha = b.get("weights_sha256") or "?"  # a store made by a program, not by `mdmf extract`, may lack these fields
    console.print(f"backbone {b.get('backbone')} ({b.get('open_clip_model', '?')}), weights {b.get('weights', '?')}, "
                  f"sha256 {sha[:16]}…", highlight=False)
    console.print(f"image size {b.get('image_size', '?')}, mean {b.get('mean', '?')}, std {b.get('std', '?')}, "
                  f"D={info['dim']}, T={info['frames']}", highlight=False)
    console.print(f"sampling: {info['identity'].get('sampling')}; train views {info['identity'].get('train_views')}, "
                  f"flip {info['identity'].get('flip')}, crop {info['identity'].get('crop')}, "
                  f"normalize {info['identity'].get('normalize')}, prompt {info['identity'].get('prompt_template')!r}")
    table = Table()
    for col in ("split", "classes", "videos", "views", "ok", "short", "failed", "pending", "done %"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, c in info["splits"].items():
        done = 100.0 * (c["total"] - c["pending"]) / max(1, c["total"])
        table.add_row(split, str(c["classes"]), str(c["total"]), str(c["views"]), str(c["ok"]), str(c["short"]),
                      str(c["failed"]), str(c["pending"]), f"{done:.1f}")
    console.print(table)
    for split, fails in info["failures"].items():
        for vid, path, reason in fails[:5]:
            console.print(f"  [yellow]{split}[/] {path or vid}: {reason}", highlight=False)


def print_eval_result(result, title: str, out, console: Console) -> None:
    """`mdmf eval`: per-class accuracy, then the headline with where the result was written."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("accuracy %", justify="right")
    for name, acc in sorted(result.per_class.items()):
        table.add_row(name, f"{acc:.2f}")
    console.print(table)
    console.print(f"[bold]{result.way}-way {result.shot}-shot: {result.accuracy:.2f} ± {result.ci95:.2f} %[/] "
                  f"({result.episodes} episodes, seed {result.seed}, {result.seconds:.1f} s); written to {out}")


def print_ablation_table(summary: dict, console: Console) -> None:
    ds = summary["dataset"]
    table = Table(title=f"Table {summary['table']}: {summary['title']} — {ds}, {summary['way']}-way "
                        f"{summary['shot']}-shot, {summary['episodes']} test episodes")
    base = summary.get("baseline")
    for col in ("cell", "setting", "ours %") + ((f"Δ to {base} (pp)", "p") if base else ()):
        table.add_column(col, justify="left" if col in ("cell", "setting") else "right")
    for key, name in PAPER_COLUMNS.items():
        table.add_column(f"paper {name}", justify="right", style="bold" if key == ds else "dim")
    table.add_column("Δ paper", justify="right")
    for row in summary["cells"]:
        table.add_row(row["cell"], row["label"],
                      f"{row['accuracy']:.2f} ± {row['ci95']:.2f}", *(difference_cells(row) if base else ()),
                      *(f"{row['paper'][k]:.1f}" if k in row["paper"] else "-" for k in PAPER_COLUMNS),
                      paper_delta(row, ds))
    console.print(table)
    if summary.get("note"):
        console.print(summary["note"], style="dim", highlight=False)
    if base:
        console.print(f"Δ to {base}: paired difference over the same test episodes; p: {summary['test']}",
                      style="dim", highlight=False)
    console.print(CAVEAT, style="dim", highlight=False)


def check_data_table(report) -> Table:
    """The per-split counts of `mdmf check-data` (a `pipeline.data.check_data.CheckReport`)."""
    table = Table(title=f"{report.dataset}: videos under {report.root}")
    for col in ("split", "listed", "found", "missing", "unreadable", "readable", "frames min / median"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, s in report.splits.items():
        frames = f"{min(s.frames)} / {statistics.median(s.frames):g}" if s.frames else "-"
        table.add_row(name, str(s.listed), str(s.found), _red(s.missing), _red(s.unreadable), str(s.readable),
                      frames)
    return table


def print_check_data(report, console: Console) -> None:
    """`mdmf check-data`: the table, then the first missing and unreadable videos of each split, then a one-line
    verdict."""
    console.print(check_data_table(report))
    for name, s in report.splits.items():
        if s.missing:
            console.print(f"[yellow]{name}: {s.missing} missing[/], e.g. (expected at)")
            for path in s.missing_examples:
                console.print(f"  {path}", highlight=False)
        if s.unreadable:
            console.print(f"[yellow]{name}: {s.unreadable} unreadable[/], e.g.")
            for path, reason in s.unreadable_examples:
                console.print(f"  {path}: {reason}", highlight=False)
    total = sum(s.listed for s in report.splits.values())
    if report.ok:
        console.print(f"[green]all {total} listed videos found and readable[/] ({report.seconds:.1f} s)")
    else:
        bad = sum(s.missing + s.unreadable for s in report.splits.values())
        console.print(f"[red]{bad} of {total} listed videos are missing or unreadable[/] ({report.seconds:.1f} s)")


def print_prediction(result, top: int, console: Console) -> None:
    """`mdmf predict`: who scored, then per query its `top` classes with their probabilities."""
    who = f"run {result.run} ({result.model})" if result.run else "untrained OTAM baseline on raw CLIP features"
    shots = ", ".join(f"{name} ({k})" for name, k in result.shots.items())
    console.print(f"{who}; backbone {result.encoder['backbone']}; {len(result.classes)} classes: {shots}",
                  highlight=False)
    for q in result.queries:
        # the video on a line of its own (a table title wraps a long path mid-word), the prompt it was fused with after
        console.print(f"[bold]{escape(q.video)}[/]" + (f"  PPS prompt: {escape(q.prompt_class)}" if q.prompt_class
                                                       else ""), highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("rank", justify="right")
        table.add_column("class")
        table.add_column("probability", justify="right")
        for rank, row in enumerate(q.ranking[:top], 1):
            table.add_row(str(rank), row["class"], f"{100 * row['probability']:.1f} %")
        console.print(table)
    console.print(f"probabilities: {result.probability}", style="dim", highlight=False)
    if any(q.prompt_class for q in result.queries):
        console.print(PPS_PROMPT, style="dim", highlight=False)


PPS_PROMPT = ("PPS prompt: the support class whose text prompt MDMF's probability prompt selector fused with the "
              "query's frames (drawn from the query's similarity to the support classes' prompts, as in evaluation); "
              "it guides the fusion and is not the prediction, so it may differ from the top class")


def _red(n: int) -> str:
    return f"[red]{n}[/]" if n else "0"


def print_verify_report(report: dict, console: Console) -> None:
    """`mdmf cache verify`: one line per split, then each damaged unit."""
    for split, s in report["splits"].items():
        if s["unrepairable"]:
            console.print(f"[red]{split}: damaged beyond repair by extracting:[/] {'; '.join(s['unrepairable'])}",
                          highlight=False)
            continue
        how = (f"digests ({report['algorithm']})" if s["digests"] else
               "no digests (made before mdmf recorded them): chunks exist and decode, altered bytes cannot be found; "
               f"re-extract, or `mdmf cache verify {report['path']} --record`")
        state = "[green]ok[/]" if not s["damaged"] else f"[red]{len(s['damaged'])} damaged units[/]"
        console.print(f"{split}: {s['finished']} of {s['units']} units finished, {how}: {state}", highlight=False)
        for d in s["damaged"][:20]:
            console.print(f"  unit {d['unit']} (videos {d['rows'][0]}-{d['rows'][1]}): {'; '.join(d['problems'])}",
                          highlight=False)
        if s["marked_pending"]:
            console.print(f"  [yellow]marked {len(s['marked_pending'])} units pending[/]: run the `mdmf extract` "
                          "that made the store again to redo them", highlight=False)
        if s["recorded"]:
            console.print(f"  recorded digests of {s['recorded']} units", highlight=False)
    if not report["ok"] and any(s["damaged"] for s in report["splits"].values()):
        console.print(f"[red]damaged[/]: `mdmf cache verify {report['path']} --repair` marks the damaged units pending, "
                      "then the same `mdmf extract` redoes them", highlight=False)
