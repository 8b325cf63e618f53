"""One prepared run for a lent GPU: every GPU table of BENCHMARKS.md, re-measured in 8 minutes, into one folder.

    bash benchmarks/device_check.sh --out DIR           # on a fresh GPU machine: set up, then the five sections
    python benchmarks/device_check.py --out DIR         # the sections alone, where mdmf is installed
    python benchmarks/device_check.py --smoke --out DIR # tiny sizes on a CPU, a minute or two (the test suite runs it)

Sections, each with its own time budget in seconds (full run / --smoke; the smoke budgets only catch a hang on a
loaded CPU); `bash benchmarks/device_check.sh` spends at most 30 s on set-up before them (installing carried wheels;
see the script), so the whole full run fits in 8 minutes:

  1 extraction  110 / 180  benchmarks/extract.py, RN50 and ViT-B-16, random weights, 192 generated UCF-like clips,
                           workers = cores - 2, then half that: decode-only, encode-only, full, full / max(decode,
                           encode) and where the main process waited
  2 evaluation   90 / 180  benchmarks/eval.py, D = 1024 and 512, 1- and 5-shot, peaked and uniform prompts, 10,000
                           episodes: eval / distinct pass, distinct pass / float32 matmul peak (same run), naive / reuse
  3 e2e         145 / 180  benchmarks/e2e.py, ViT-B-16 and RN50, 5-shot, AMP off/bf16 x checkpointing off/on:
                           steps/s and peak memory; frames decoded in the loader vs read from the frame store
  4 heads        60 / 180  benchmarks/heads.py, every head in mdmf.registry.MODELS, D = 1024 and 512, 1- and 5-shot:
                           head-training episodes/s
  5 ddp          45 / 180  benchmarks/ddp.py: `torchrun --nproc_per_node 1` with NCCL (start-up and the update of a
                           plain process); with 2+ GPUs two processes checked equal to one

Each section runs its benchmark as a subprocess (its own process group) that is stopped when the budget is spent, and
writes DIR/<n>-<name>.json and DIR/<n>-<name>.md as soon as it ends: a section that runs out of time still leaves the
sections before it, and keeps what its benchmark measured before the limit. DIR/tables.md holds every table so far,
DIR/run.json the machine, commit and each section's status; the benchmarks' own output is in DIR/logs/. Sections that
need CUDA (the full sizes) or NCCL say so in their JSON instead of failing. `--bundle FILE` also writes DIR as a
.tar.gz after every section (a device run returns few files: bundle into $OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


# ---- context and running one benchmark -----------------------------------------------------------------------------
@dataclass
class Context:
    """What every section needs: where to write, sizes, the machine, and its own deadline."""

    out: Path
    smoke: bool
    machine: dict
    python: str = sys.executable
    work: Path = Path(".")  # scratch (generated clips): not in `out`, which is bundled and copied back
    deadline: float = 0.0
    logs: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return bool(self.machine.get("cuda"))

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def bench(self, name: str, argv: list[str], json_path: Path, min_left: float = 1.0) -> dict:
        """Run a benchmark script until it ends or this section's budget is spent; its JSON (partial if stopped).

        Returns {"status": ok | timed out | failed | skipped, "seconds", "data": the JSON or None, "log", "error"}.
        """
        if self.left() < min_left:
            return {"status": "skipped", "why": f"{self.left():.0f} s of the budget left, {min_left:.0f} s needed",
                    "data": None}
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        self.logs.append(str(log.relative_to(self.out)))
        cmd = [self.python, *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        start = time.monotonic()
        with open(log, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # its own process group: stopped with its workers
            try:
                rc = proc.wait(timeout=max(self.left(), 0.1))
                status = "ok" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                stop_group(proc)
                rc, status = None, "timed out"
        shown = " ".join("python" if c == self.python else c.replace(f"{ROOT}/", "") for c in cmd)
        out = {"status": status, "seconds": round(time.monotonic() - start, 1), "log": str(log.relative_to(self.out)),
               "command": shown, "data": None}
        if json_path.is_file():
            try:
                out["data"] = json.loads(json_path.read_text())
            except json.JSONDecodeError:  # stopped while writing
                pass
        if status == "failed":
            out["error"] = f"exit {rc}: " + " | ".join(log.read_text().strip().splitlines()[-3:])[-600:]
        return out


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the benchmark's process group (its loader workers, torchrun's children), SIGKILL 10 s later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def needs(ctx: Context, what: str) -> dict:
    """A section that cannot run here: says so, and why."""
    have = ctx.machine
    why = (f"torch {have.get('torch')} sees no CUDA device" + (f" (NCCL available: {have.get('nccl')})"
                                                               if "NCCL" in what else "")
           + ("" if ctx.smoke else "; the full sizes are for a GPU (--smoke: tiny sizes on a CPU)"))
    return {"status": f"needs {what}", "why": why, "rows": [], "summary": why}


def merge_runs(runs: list[dict]) -> str:
    """One status for a section that ran several benchmarks: the worst of theirs."""
    statuses = [r["status"] for r in runs] or ["skipped"]
    for worst in ("failed", "timed out", "skipped"):
        if worst in statuses:
            return "ok, partly skipped" if worst == "skipped" and "ok" in statuses else worst
    return "ok"


def fmt(value, digits: int = 2) -> str:
    return "" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def span(values: list[float], digits: int = 2) -> str:
    """`lo–hi` of the values (or the one value), for a one-line result."""
    values = [v for v in values if v is not None]
    if not values:
        return "none"
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{lo:.{digits}f}–{hi:.{digits}f}"


# ---- 1 extraction --------------------------------------------------------------------------------------------------
def extraction(ctx: Context) -> dict:
    if ctx.smoke:
        plan = [("tiny", 1)]
        sizes = ["--videos", "8", "--frames", "40", "--size", "96x64"]
    else:
        if not ctx.cuda:
            return needs(ctx, "CUDA")
        many = max(1, (ctx.machine.get("cpu_count") or 4) - 2)  # the main process and its threads keep two cores
        plan = [("RN50", many), ("ViT-B-16", many)] + [(b, max(1, many // 2)) for b in ("RN50", "ViT-B-16")]
        sizes = ["--videos", "192"]
    runs, rows = [], []
    for backbone, workers in plan:
        path = ctx.out / "raw" / f"extract-{backbone}-w{workers}.json"
        run = ctx.bench(f"1-extract-{backbone}-w{workers}", [
            str(BENCH / "extract.py"), *sizes, "--backbone", backbone, "--weights", "random", "--workers",
            str(workers), "--device", ctx.device, "--clips", str(ctx.work / "clips"), "--json", str(path)],
            path, min_left=1 if ctx.smoke else 20)
        runs.append(run | {"backbone": backbone, "workers": workers})
        d = run["data"]
        if d:
            times = d.get("full_times_s") or {}
            rows.append({"backbone": backbone, "workers": workers, "videos": d["videos"],
                         "decode-only videos/s": d["decode_only_videos_per_s"],
                         "encode-only frames/s": d["encode_only_frames_per_s"],
                         "full videos/s": d["full_videos_per_s"], "full / max(decode, encode)": d["overlap_ratio"],
                         "main process: waiting for decode / encoding / waiting for writer, s": " / ".join(
                             fmt(times.get(k)) for k in ("waiting_for_decode", "encoding", "waiting_for_writer"))})
    ratios = ", ".join(f"{r['backbone']} w{r['workers']} {r['full / max(decode, encode)']:.2f}" for r in rows)
    return {"status": merge_runs(runs), "runs": runs, "rows": rows,
            "summary": f"full / max(decode, encode): {ratios or 'nothing measured'} (target <= 1.2)"}


# ---- 2 evaluation --------------------------------------------------------------------------------------------------
def evaluation(ctx: Context) -> dict:
    path = ctx.out / "raw" / "eval.json"
    if ctx.smoke:
        args = ["--device", ctx.device, "--dims", "32", "--shots", "1", "--prompts", "peaked", "--episodes", "100",
                "--naive-episodes", "50", "--batch-episodes", "50", "--batch-videos", "512", "--repeats", "1",
                "--matmul-size", "256"]
    elif not ctx.cuda:
        return needs(ctx, "CUDA")
    else:
        args = ["--device", "cuda", "--dims", "1024,512", "--shots", "1,5"]
    run = ctx.bench("2-eval", [str(BENCH / "eval.py"), *args, "--skip-train", "--json", str(path)], path)
    cells = (run["data"] or {}).get("eval", [])
    rows = [{"D": c["dim"], "shot": c["shot"], "prompts": c["prompts"], "pairs / video": c["pairs_per_video"],
             "distinct TFLOP": c["distinct_pass_flops"] / 1e12, "matmul TFLOP/s": c["matmul_flops_per_s"] / 1e12,
             "distinct s": c["distinct_pass_s"], "distinct / matmul": c["distinct_pass_vs_matmul"],
             "eval s": c["eval_reuse_s"], "eval / distinct": c["eval_vs_distinct_pass"],
             "eval episodes/s": c["eval_reuse_episodes_per_s"], "naive s": c["eval_naive_s"],
             "naive / eval": c["naive_vs_reuse_time"], "acc. reuse %": c["accuracy_reuse_same_episodes"],
             "acc. naive %": c["accuracy_naive_same_episodes"],
             "same predictions": "yes" if c["predictions_identical"] else f"no: {c['queries_differing']} queries"}
            for c in cells]
    same = sum(r["same predictions"] == "yes" for r in rows)
    summary = (f"eval / distinct {span([r['eval / distinct'] for r in rows])} (target <= 1.5), distinct / matmul "
               f"{span([r['distinct / matmul'] for r in rows])} (>= 0.5), naive / eval "
               f"{span([r['naive / eval'] for r in rows], 1)}, same predictions in {same}/{len(rows)} cells")
    return {"status": merge_runs([run]), "runs": [run], "rows": rows, "summary": summary,
            "float32_matmul_precision": (run["data"] or {}).get("float32_matmul_precision")}


# ---- 3 end to end --------------------------------------------------------------------------------------------------
E2E_EPISODES_PER_STEP = 16  # the e2e default (TrainConfig, one process): steps/s = 1 / (16 x s/episode)


def end_to_end(ctx: Context) -> dict:
    path = ctx.out / "raw" / "e2e.json"
    if ctx.smoke:
        args = ["--backbones", str(ROOT / "tests" / "assets" / "mdmf-micro.json"), "--device", ctx.device,
                "--shots", "1", "--amp", "off", "--checkpointing", "off,on", "--steps", "2", "--episodes-per-step",
                "1", "--workers", "0", "--size", "64x48", "--clip-frames", "16", "--load-episodes", "1"]
    elif not ctx.cuda:
        return needs(ctx, "CUDA")
    else:
        workers = max(1, min(8, (ctx.machine.get("cpu_count") or 4) - 2))
        args = ["--backbones", "ViT-B-16,RN50", "--shots", "5", "--steps", "2", "--episodes-per-step", "2",
                "--load-episodes", "2", "--workers", str(workers), "--device", "cuda"]
    run = ctx.bench("3-e2e", [str(BENCH / "e2e.py"), *args, "--json", str(path)], path)
    data = run["data"] or {}
    rows = []
    for r in data.get("training", []):
        spe = r.get("s_per_episode")
        rows.append({"backbone": r["backbone"], "shot": r["shot"], "AMP": r["amp"],
                     "checkpointing": "on" if r["checkpointing"] else "off",
                     "s / episode": spe if r["status"] == "ok" else r["status"],
                     f"steps/s ({E2E_EPISODES_PER_STEP} episodes)": 1 / (E2E_EPISODES_PER_STEP * spe) if spe else None,
                     "peak GiB": r.get("peak_gib"),
                     "fits 24 GB": None if r.get("peak_gib") is None else
                     ("yes" if r["status"] == "ok" and r["peak_gib"] <= 24 else "no")})
    loading = [{k.replace("s_per_episode_", "s / episode, ").replace("1proc", "1 process"): v for k, v in r.items()}
               for r in data.get("loading", [])]
    fast = [r["s / episode"] for r in rows if isinstance(r["s / episode"], float)]
    peaks = [r["peak GiB"] for r in rows if r["peak GiB"] is not None]
    loads = [f"{r['source']} {r['shot']}-shot {r['s / episode, 1 process']:.3f}" for r in loading
             if r.get("s / episode, 1 process") is not None]
    summary = (f"{len(fast)}/{len(rows)} training configs ran, s/episode {span(fast, 3)}"
               + (f", peak {span(peaks, 1)} GiB" if peaks else "")
               + f"; frame loading s/episode, 1 process: {', '.join(loads) or 'not measured'}")
    return {"status": merge_runs([run]), "runs": [run], "rows": rows, "loading": loading, "summary": summary,
            "device": data.get("device"), "torch": data.get("torch")}


# ---- 4 head training -----------------------------------------------------------------------------------------------
def heads(ctx: Context) -> dict:
    path = ctx.out / "raw" / "heads.json"
    if ctx.smoke:
        args = ["--device", ctx.device, "--dims", "32", "--shots", "1", "--steps", "2", "--episodes-per-step", "2",
                "--set", "heads=4", "--set", "mlp_dim=32"]
    elif not ctx.cuda:
        return needs(ctx, "CUDA")
    else:
        args = ["--device", "cuda", "--dims", "1024,512", "--shots", "1,5", "--steps", "6"]
    run = ctx.bench("4-heads", [str(BENCH / "heads.py"), *args, "--json", str(path)], path)
    data = run["data"] or {}
    rows = [{"head": r["head"], "D": r["dim"], "shot": r["shot"],
             "episodes/s": r.get("train_episodes_per_s"), "s / step": r.get("seconds_per_step"),
             "episodes / step": r.get("episodes_per_step"), "status": r["status"]} for r in data.get("rows", [])]
    done = {r["head"] for r in rows}
    missing = [h for h in data.get("heads", []) if h not in done]
    rates = ", ".join(f"{r['head']} D={r['D']} {r['shot']}-shot {r['episodes/s']:.1f}" for r in rows
                      if r["status"] == "ok")
    summary = (f"episodes/s: {rates or 'none measured'}"
               + "".join(f"; {r['head']}: {r['status']}" for r in rows if r["status"] != "ok" and r["D"] == rows[0]["D"]
                         and r["shot"] == rows[0]["shot"])
               + (f"; not reached: {', '.join(missing)}" if missing else ""))
    return {"status": merge_runs([run]), "runs": [run], "rows": rows, "heads": data.get("heads"),
            "summary": summary}


# ---- 5 DDP start-up ------------------------------------------------------------------------------------------------
def ddp(ctx: Context) -> dict:
    path = ctx.out / "raw" / "ddp.json"
    if not (ctx.cuda and ctx.machine.get("nccl")):
        base = needs(ctx, "CUDA and NCCL")
        if not ctx.smoke:
            return base
        # the same launcher and process-group path with gloo on the CPU, so that the script cannot rot between
        # device sessions (the mdmf train parts take a minute on 2 loaded cores: not in the smoke run)
        args = ["--device", "cpu", "--dim", "32", "--group-only"]
    else:
        base, args = {}, ["--device", "cuda"]
    run = ctx.bench("5-ddp", [str(BENCH / "ddp.py"), *args, "--json", str(path)], path)
    data = run["data"] or {}
    rows = [{"part": r["part"], "processes": r["processes"], "backend": data.get("backend"),
             "wall s": r.get("wall_s", r.get("torchrun_wall_s")), "plain process s": r.get("plain_wall_s"),
             "init_process_group s": r.get("init_process_group_s"), "first / second DDP step s":
             f"{r['first_step_s']:.3f} / {r['second_step_s']:.3f}" if "first_step_s" in r else None,
             "all-reduce 4 MB ms": r["all_reduce_4mb_s"] * 1e3 if "all_reduce_4mb_s" in r else None,
             "same update": None if "equal" not in r else ("yes" if r["equal"] else "NO"),
             "max abs diff": f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else None}
            for r in data.get("rows", [])]
    summary = "; ".join(r["summary"] for r in data.get("rows", [])) or "nothing measured"
    if data.get("two_processes"):
        summary += f"; two processes {data['two_processes']}"
    status = merge_runs([run])
    if base:  # gloo ran, NCCL did not: the status says what was not measured
        status, summary = base["status"] + f" (gloo on the CPU: {status})", f"{base['why']}; gloo: {summary}"
    return {"status": status, "runs": [run], "rows": rows, "summary": summary, "gpus": ctx.machine.get("gpus")}


@dataclass
class Section:
    key: str
    title: str
    budget_s: float  # full run
    smoke_budget_s: float
    run: Callable[[Context], dict]


SECTIONS = [
    Section("extraction", "stage one: extraction (benchmarks/extract.py)", 110, 180, extraction),
    Section("evaluation", "stage two: evaluation (benchmarks/eval.py)", 90, 180, evaluation),
    Section("e2e", "end-to-end training (benchmarks/e2e.py)", 145, 180, end_to_end),
    Section("heads", "head training, every registered head (benchmarks/heads.py)", 60, 180, heads),
    Section("ddp", "DDP start-up under torchrun (benchmarks/ddp.py)", 45, 180, ddp),
]
SETUP_BUDGET_S = 30  # benchmarks/device_check.sh, before the sections


# ---- writing -------------------------------------------------------------------------------------------------------
def markdown(number: int, section: Section, result: dict, header: dict) -> str:
    """The section's heading, what/where/when it was measured, its table(s), and its one-line result."""
    lines = [f"### {number}. {section.title}", "",
             f"Measured {header['date']} at commit {header['commit']} on {header['machine_line']}; "
             f"load average {result.get('load_before', '?')} before the section. Status: **{result['status']}** "
             f"({result['seconds']:.0f} s of a {result['budget_s']:.0f} s budget"
             + (", smoke sizes" if header["smoke"] else "") + ").", ""]
    for run in result.get("runs", []):
        lines.append(f"* `{run.get('command', '')}`: {run['status']}"
                     + (f" in {run['seconds']} s" if "seconds" in run else "")
                     + (f" ({run['why']})" if run.get("why") else "")
                     + (f": {run['error']}" if run.get("error") else ""))
    if result.get("why"):
        lines.append(f"* {result['why']}")
    for key in ("rows", "loading"):
        table = result.get(key) or []
        if table:
            cols = [c for c in dict.fromkeys(c for row in table for c in row)
                    if any(row.get(c) is not None for row in table)]  # a column nothing filled (peak memory on a CPU)
            lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(fmt(row.get(c), 3 if "s / episode" in c else 2) for c in cols) + " |"
                      for row in table]
    lines += ["", f"Result: {result['summary']}", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".partial")
    part.write_text(text)
    part.replace(path)


def bundle(out: Path, target: Path) -> None:
    """DIR as a .tar.gz at `target` (written beside it, then renamed: a stopped run keeps the previous bundle)."""
    part = target.with_name(target.name + ".partial")
    with tarfile.open(part, "w:gz") as tar:
        tar.add(out, arcname=out.name)
    part.replace(target)


# ---- the machine ---------------------------------------------------------------------------------------------------
PROBE = """
import json, os, platform, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda": cuda, "gpus": torch.cuda.device_count() if cuda else 0,
                  "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                               if cuda else [],
                  "cuda_version": torch.version.cuda, "nccl": bool(cuda and dist.is_nccl_available()),
                  "cpu_count": os.cpu_count(), "python": platform.python_version(),
                  "host": platform.node(), "cpu": platform.processor() or platform.machine()}))
"""


def probe_machine(python: str) -> dict:
    """torch, CUDA, GPUs and cores as the benchmarks' interpreter sees them (a subprocess: this one needs no torch)."""
    proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"device_check: {python} cannot import torch (set up first: bash benchmarks/device_check.sh)"
                         f"\n{proc.stderr.strip()[-1000:]}")
    machine = json.loads(proc.stdout.strip().splitlines()[-1])
    gpus = f"{machine['gpus']} × {machine['gpu_names'][0]}" if machine["gpus"] else "no GPU"
    machine["line"] = (f"{gpus}, {machine['cpu_count']} CPU cores, torch {machine['torch']}, Python "
                       f"{machine['python']} ({machine['host']})")
    return machine


def commit_of(given: str | None) -> str:
    """The commit measured: --commit, else git's HEAD (with '+changes' for a dirty tree), else 'unknown'."""
    if given:
        return given
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git; pass --commit)"
    if head.returncode != 0:
        return "unknown (no git repository here; pass --commit)"
    return head.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")


# ---- main ----------------------------------------------------------------------------------------------------------
def run_sections(sections: list[tuple[int, Section]], ctx: Context, header: dict, budgets: dict[str, float],
                 bundle_to: Path | None = None) -> list[dict]:
    """Each section in turn under its own budget; its files written as it ends, the run's files after each."""
    done = []
    for number, section in sections:
        budget = budgets[section.key]
        load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
        start = time.monotonic()
        ctx.deadline = start + budget
        try:
            result = section.run(ctx)
        except Exception as err:  # noqa: BLE001 - a broken section is recorded; the next one still runs
            result = {"status": "failed", "rows": [], "summary": f"{type(err).__name__}: {err}"}
        result |= {"section": section.key, "number": number, "title": section.title, "budget_s": budget,
                   "seconds": round(time.monotonic() - start, 1), "load_before": load}
        if result["status"] != "ok" and not result["summary"].startswith(result["status"]):
            result["summary"] = f"{result['status']}: {result['summary']}"
        stem = ctx.out / f"{number}-{section.key}"
        write_atomic(stem.with_suffix(".json"), json.dumps(result | {"header": header}, indent=2, default=str))
        write_atomic(stem.with_suffix(".md"), markdown(number, section, result, header))
        done.append(result)
        write_atomic(ctx.out / "tables.md", "\n".join(
            (ctx.out / f"{r['number']}-{r['section']}.md").read_text() for r in done))
        write_atomic(ctx.out / "run.json", json.dumps(header | {"sections": [
            {k: r[k] for k in ("number", "section", "status", "seconds", "budget_s", "summary")} for r in done]},
            indent=2))
        if bundle_to:
            bundle(ctx.out, bundle_to)
        print(f"[{number} {section.key}] {result['status']} in {result['seconds']:.0f} s of {budget:.0f}: "
              f"{result['summary']}", flush=True)
    return done


def parse_budgets(items: list[str], smoke: bool) -> dict[str, float]:
    budgets = {s.key: float(s.smoke_budget_s if smoke else s.budget_s) for s in SECTIONS}
    for item in items:
        key, _, value = item.partition("=")
        if key not in budgets:
            raise SystemExit(f"--budget {item}: the sections are {', '.join(budgets)}")
        budgets[key] = float(value)
    return budgets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created; files in it are replaced)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any machine (a CPU: a minute or two)")
    ap.add_argument("--sections", default=",".join(s.key for s in SECTIONS),
                    help="comma-separated names or numbers of the sections to run (default: all, in order)")
    ap.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS",
                    help="another time budget for a section (repeatable)")
    ap.add_argument("--commit", help="the commit measured, where the tree has no .git (default: git's HEAD)")
    ap.add_argument("--bundle", type=Path, help="also write the output folder as this .tar.gz after every section")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that runs the benchmarks")
    args = ap.parse_args(argv)

    wanted = {w.strip() for w in args.sections.split(",") if w.strip()}
    chosen = [(i, s) for i, s in enumerate(SECTIONS, 1) if s.key in wanted or str(i) in wanted]
    if not chosen:
        raise SystemExit(f"--sections {args.sections}: choose from {', '.join(s.key for s in SECTIONS)} or 1-5")
    budgets = parse_budgets(args.budget, args.smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = probe_machine(args.python)
    header = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit_of(args.commit),
              "machine": machine, "machine_line": machine["line"], "smoke": args.smoke,
              "command": " ".join(["benchmarks/device_check.py", *(argv if argv is not None else sys.argv[1:])]),
              "budgets_s": {s.key: budgets[s.key] for _, s in chosen}}
    total = sum(header["budgets_s"].values())
    print(f"device check at {header['commit']} on {machine['line']}: sections "
          f"{', '.join(f'{i} {s.key} ({budgets[s.key]:.0f} s)' for i, s in chosen)}; at most {total:.0f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="mdmf-device-check-"))
    try:
        ctx = Context(out=args.out, smoke=args.smoke, machine=machine, python=args.python, work=work)
        results = run_sections(chosen, ctx, header, budgets, args.bundle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"tables: {args.out / 'tables.md'}", flush=True)
    return 0 if all(r["status"] == "ok" or r["status"].startswith("needs") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
