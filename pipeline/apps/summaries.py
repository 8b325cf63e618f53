"""Human-readable tables for what the pipeline returns (the same data is always also written as JSON)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_extract_summary(summary, console: Console, first_failures: int = 5) -> None:
    table = Table(title=f"feature store {summary.store}")
    for col in ("split", "videos", "ok", "short (<T frames)", "failed", "pending"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, c in summary.per_split.items():
        table.add_row(split, str(c["total"]), str(c["ok"]), str(c["short"]), str(c["failed"]), str(c["pending"]))
    console.print(table)
    console.print(f"{summary.videos_done} videos processed in {summary.seconds:.1f} s")
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
    console.print(f"backbone {b['backbone']} ({b['open_clip_model']}), weights {b['weights']}, sha256 {b['weights_sha256'][:16]}…")
    console.print(f"image size {b['image_size']}, mean {b['mean']}, std {b['std']}, D={info['dim']}, T={info['frames']}")
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
