"""Stage-two throughput, measured in one run: head training and evaluation on cached features, for every head.

For each head of `mdmf.registry.MODELS` (`--models`; a head's `reference-<name>` preset gives its model settings
where one is shipped, else the defaults), each width D (1024: RN50, 512: ViT-B/16) and each shot (5-way 1-shot and
5-shot), on synthetic features of a real test split's size (default: UCF101 test, 2,745 videos in 21 classes, class
sizes read from splits/ucf101/test.txt):

* matmul throughput: a large float32 matmul on the device (the precision evaluation uses), measured again before
  every distinct pass so that the ratio compares numbers taken minutes apart, not half an hour apart;
* the distinct pass: `encode` of every video, `fuse` of every video with its class prompt (supports) and `fuse` of
  every distinct (video, prompt) pair the episodes' queries ask for, timed alone; its FLOPs are counted from the
  model config for mdmf (convolutions, attention projections and products, MLP) and checked with torch's
  FlopCounterMode, which alone counts them for the other heads;
* the sampling pass: drawing the episodes and choosing their queries' prompts, exactly as `evaluate` plans them (PPS
  similarity, `EpisodeSampler`, `plan_queries`, the `PairTable` that gives every distinct pair its row), timed alone;
* the score pass: `score` of every episode once on the distinct pass's tensors, through the evaluator's
  `score_planned` (the gather of each chunk's tokens from the tables, `score` or `score_prototypes`, worker threads
  on a CPU), timed alone. Encode and fuse are the episode-independent work, done once per video or pair; `score`
  depends on the episode's support set and is the per-episode work (per head: docs/HEADS.md, "What is
  episode-independent"). For OTAM-, TRX-, HyRSM- and CrossTransformer-like heads it is most of the work; for
  protonet and clip-zeroshot the distinct pass is nearly empty and sampling is a large part;
* the evaluation of `--episodes` episodes with reuse (what `mdmf eval` runs) and without (the model's full `forward` on
  every episode); the naive one may be timed on the first `--naive-episodes` episodes and extrapolated linearly, and
  its predictions are compared with the reused run's on the same episodes. Matmul, sampling, distinct pass, score
  pass and reused eval are run `--repeats` times, alternating, and the fastest of each counts; their CPU seconds are
  reported too (on a shared CPU the wall time of a pass depends on what else runs);
* two ratios: eval / distinct (`eval_vs_distinct_pass`, issue 4's target) and eval / (sampling + distinct + score)
  (`eval_vs_necessary_work`): how much the evaluator's glue (interleaving, bookkeeping, accuracy per class) adds to
  the work it cannot avoid; both also in CPU seconds (`..._cpu_time`). A head that `merges_shots` runs its 5-shot
  episodes whole (`eval_path` naive): no score pass, no second ratio;
* head training (heads with something to train): optimizer steps of `mdmf.pipeline.train.loop.train` (forward,
  backward, Adam; 5 queries per class) on a small synthetic store, step times read from the run's metrics.jsonl (the
  first step is left out as warm-up).

Targets (issue 4): eval time <= 1.5 x distinct-pass time; distinct pass >= 50 % of measured matmul FLOP/s. Issue 21:
eval time <= 1.5 x (sampling + distinct + score). `--for HEAD:KEY=N` sets a count for one head (episodes, naive
episodes, batch episodes, repeats, training steps or episodes per step), so that cheap heads get many episodes and
TRX few in one run.

    python benchmarks/eval.py --device cpu --prompts peaked --episodes 2000 --naive-episodes 100 \
        --batch-episodes 100 --repeats 1 --train-steps 3 --for otam:episodes=10000 ... --json bench-eval-cpu.json
        # every head on 1 thread of a shared 2-core CPU: 36 min (the full command: BENCHMARKS.md, "Every head")
    python benchmarks/eval.py --device cuda --json bench-eval-cuda.json   # an H100: about 2 min per head
    python benchmarks/eval.py --device cpu --dims 64 --shots 1 --episodes 200 --naive-episodes 100 --repeats 1 \
        --train-steps 2   # a smoke run of every head (minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mdmf.config import ModelConfig  # noqa: E402
from mdmf.registry import MODELS, build_model  # noqa: E402
from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec  # noqa: E402
from mdmf.pipeline.episodes.scoring import (  # noqa: E402
    EpisodeIndependentWork, PairTable, plan_queries, pps_similarity, score_chunk_size, score_planned)
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate, has_reusable_work  # noqa: E402


# ---- measuring ---------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    """(seconds, result) of `fn()`, with the device's queue drained before and after."""
    seconds, _, out = timed_cpu(device, fn)
    return seconds, out


def timed_cpu(device: torch.device, fn):
    """(wall seconds, CPU seconds of this process, all threads, result) of `fn()`.

    On a shared machine the wall time of a pass depends on what else runs; its CPU time much less so.
    """
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu, out


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None) -> float:
    """FLOP/s of an n×n by n×n matmul (the best of a few, after a warm-up)."""
    n = n or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 5
    a @ b
    # the fastest of a few: on a shared machine that is the closest to what the hardware can do
    return 2 * n**3 / min(timed(device, lambda: a @ b)[0] for _ in range(reps))


# ---- FLOPs -------------------------------------------------------------------------------------------------------
def analytic_flops(cfg: ModelConfig) -> dict[str, float]:
    """FLOPs per video of MDMF's `encode` and of one `fuse` (all views), counting multiply-adds as 2.

    encode: LTCE two D->D convolutions of width k over T frames; GTCE per dilation two such (causal) convolutions.
    fuse, per view and block on L = T+1 tokens: Q, K, V and output projections (4·2·L·D²), the attention products
    QKᵀ and AV (2·2·L²·D) and the MLP D -> mlp_dim -> D (2·2·L·D·mlp_dim). Norms, activations and adds are not
    counted.
    """
    if cfg.name != "mdmf":
        raise ValueError("the analytic count is written for mdmf")
    D, T, L, k = cfg.dim, cfg.frames, cfg.frames + 1, cfg.tcn_kernel
    views = {"both": ("global", "local"), "local": ("local",), "global": ("global",), "ntc": ("ntc",)}[cfg.views]
    conv = 2 * 3 * D * D * T  # LTCE's kernel is 3
    encode = ("local" in views) * 2 * conv + ("global" in views) * len(cfg.tcn_dilations) * 2 * (2 * k * D * D * T)
    block = 4 * 2 * L * D * D + 2 * 2 * L * L * D + 2 * 2 * L * D * cfg.mlp_dim
    return {"encode": float(encode), "fuse": float(len(views) * cfg.depth * block)}


def counted_flops(model, device: torch.device) -> dict[str, float]:
    """The same per-video numbers from torch's FlopCounterMode on 4 videos (it may not count fused CPU attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    c = model.config
    frames = torch.randn(4, c.frames, c.dim, device=device)
    prompts = torch.randn(4, c.dim, device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as enc:
            encoded = model.encode(frames)
        with FlopCounterMode(display=False) as fus:
            model.fuse(encoded, prompts, role="query")
    return {"encode": enc.get_total_flops() / 4, "fuse": fus.get_total_flops() / 4}


# ---- data --------------------------------------------------------------------------------------------------------
def split_class_sizes(split_file: Path | None, videos: int, classes: int) -> np.ndarray:
    """Videos per class of a real split file (`<class>\\t<id>` lines), or `videos` spread over `classes`."""
    if split_file is not None and split_file.is_file():
        lines = [ln for ln in split_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return np.array(list(Counter(ln.split("\t")[0] for ln in lines).values()))
    return np.full(classes, videos // classes) + (np.arange(classes) < videos % classes)


PROMPTS = ("peaked", "uniform")
NOISE = 5.0  # per-frame noise around the class trajectory: accuracy well below 100 %, so predictions can differ


def synthetic_split(sizes: np.ndarray, dim: int, prompts: str = "peaked", frames: int = 8, seed: int = 0):
    """features `(V, 1, T, D)` float16, labels `(V,)`, prompt embeddings `(C, D)`: a class trajectory plus noise.

    How many distinct (video, prompt) pairs PPS asks for depends on the prompts; the two settings bracket real data:
    `peaked`: each prompt is near its class's mean frame, PPS mostly gives a query its own class (1.9-2.8 pairs per
    video, the least distinct work, so the per-episode overhead weighs most); `uniform`: the prompts are the same
    vector up to 1e-4, PPS draws nearly uniformly from the episode's classes (~11 pairs per video out of 21 possible,
    close to the issue's "a tenth of the naive work").
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), frames, dim)).astype(np.float32)
    feats = centres[labels] + NOISE * rng.normal(size=(len(labels), frames, dim)).astype(np.float32)
    if prompts == "peaked":
        embeddings = centres.mean(1) + 0.5 * rng.normal(size=(len(sizes), dim))
    elif prompts == "uniform":
        embeddings = rng.normal(size=(1, dim)) + 1e-4 * rng.normal(size=(len(sizes), dim))
    else:
        raise ValueError(f"prompts must be one of {PROMPTS}; got {prompts!r}")
    return feats[:, None].astype(np.float16), labels, embeddings.astype(np.float32)


# ---- the parts ---------------------------------------------------------------------------------------------------
def sampling_pass(model, labels: np.ndarray, frames: torch.Tensor, prompts: torch.Tensor, cfg: EvalConfig):
    """Drawing the episodes and choosing their queries' prompts, exactly as `evaluate` plans them (PPS similarity,
    `EpisodeSampler`, `plan_queries`, the `PairTable` of distinct (video, prompt class) pairs), nothing else.

    -> (planned: (start, batch, slots, query class) per episode batch, as `score_planned` takes it, pair videos,
    pair classes), the pairs in order of first request."""
    sampler = EpisodeSampler(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), seed=cfg.seed, views=1)
    table = PairTable(frames.shape[0], prompts.shape[0])
    planned, videos, classes = [], [], []
    for start, batch, query_class in plan_queries(model, sampler, pps_similarity(model, frames, prompts), cfg):
        slots, new_videos, new_classes = table.assign(batch.query, query_class)
        planned.append((start, batch, slots, query_class))
        videos.append(new_videos)
        classes.append(new_classes)
    return planned, torch.cat(videos), torch.cat(classes)


def own_class_rate(planned, labels: np.ndarray) -> float:
    """How often PPS gave a query its own class's prompt."""
    own = [(query_class == torch.as_tensor(labels)[batch.query]).reshape(-1) for _, batch, _, query_class in planned]
    return float(torch.cat(own).double().mean())


def distinct_pass(model, frames, prompts, labels, pair_videos, pair_classes, batch_videos: int):
    """encode + support fuse of every video, query fuse of every pair: the evaluator's own code, nothing else.
    Returns the `EpisodeIndependentWork` (slot i = pair i, as the sampling pass's slots say)."""
    work = EpisodeIndependentWork(model, frames, prompts, labels, len(pair_videos), batch_videos)
    work.request(pair_videos, pair_classes)
    work.finish()
    return work


def score_pass(model, work: EpisodeIndependentWork, planned, cfg: EvalConfig, device: torch.device) -> None:
    """`score` of every episode once, on the distinct pass's tensors: the evaluator's `score_planned` (gathering the
    episodes' tokens from the tables, `score` / `score_prototypes` in worker threads on a CPU) and the argmax."""
    chunk = cfg.score_episodes or score_chunk_size(cfg, device, work.support)
    for _, _, logits, _ in score_planned(model, work, planned, chunk, device):
        logits.argmax(-1)


def head_config(name: str, dim: int) -> ModelConfig:
    """The benchmarked config of a head: its `reference-<name>` preset's model settings where shipped, at width D."""
    from mdmf.pipeline.apps.demo_compare import head_settings

    return ModelConfig.from_dict({**head_settings(name)[0], "dim": dim})


def per_video_flops(model, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
    """(FLOPs per video used for the ratios, FlopCounterMode's): the analytic count where written (mdmf)."""
    counted = counted_flops(model, device)
    try:
        return analytic_flops(model.config), counted
    except ValueError:
        return counted, counted


def timed_passes(model, frames, prompts, labels, video_labels, feats, prompt_np, classes: int, base: dict, args,
                 device: torch.device) -> dict:
    """`--repeats` alternating rounds of: matmul peak, sampling pass, distinct pass, score pass (on that distinct
    pass's tensors), reused eval. -> lists of wall and CPU seconds per part, the planning's outputs and the reused
    eval's result (of the last round)."""
    cfg = EvalConfig(**base, episodes=args.episodes)
    reuses = has_reusable_work(model, cfg.shot)  # as `evaluate` decides; else every episode runs whole
    t = {k: [] for k in ("matmul", "sampling", "sampling_cpu", "distinct", "distinct_cpu", "score", "score_cpu",
                         "eval", "eval_cpu")}
    for _ in range(args.repeats):
        t["matmul"].append(matmul_flops(device, n=args.matmul_size))
        wall, cpu, (planned, pair_videos, pair_classes) = timed_cpu(
            device, lambda: sampling_pass(model, labels, frames, prompts, cfg))
        t["sampling"].append(wall)
        t["sampling_cpu"].append(cpu)
        wall, cpu, work = timed_cpu(device, lambda: distinct_pass(model, frames, prompts, video_labels, pair_videos,
                                                                  pair_classes, args.batch_videos))
        t["distinct"].append(wall)
        t["distinct_cpu"].append(cpu)
        if reuses:
            wall, cpu, _ = timed_cpu(device, lambda: score_pass(model, work, planned, cfg, device))
            t["score"].append(wall)
            t["score_cpu"].append(cpu)
        del work  # the tables (GBs for trx at D = 1024) are not held while the eval builds its own
        wall, cpu, reused = timed_cpu(device, lambda: evaluate(
            model, feats, labels, prompt_np, [str(c) for c in range(classes)],
            EvalConfig(**base, episodes=args.episodes, keep_predictions=True)))
        t["eval"].append(wall)
        t["eval_cpu"].append(cpu)
    return {"times": t, "planned": planned, "pair_videos": pair_videos, "pair_classes": pair_classes,
            "reused": reused, "reuses": reuses}


def bench_eval(name: str, dim: int, shot: int, prompt_kind: str, sizes: np.ndarray, args,
               device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build_model(head_config(name, dim)).to(device).eval()
    feats, labels, prompt_np = synthetic_split(sizes, dim, prompt_kind)
    frames = torch.as_tensor(feats[:, 0], dtype=torch.float32, device=device)
    prompts = torch.as_tensor(prompt_np, device=device)
    video_labels = torch.as_tensor(labels, dtype=torch.long)
    V = len(labels)
    base = dict(way=5, shot=shot, queries=1, seed=0, batch_episodes=args.batch_episodes,
                batch_videos=args.batch_videos, device=str(device), progress=False)

    flops, counted = per_video_flops(model, device)
    with torch.no_grad():  # warm-up: first-call costs (kernel choice, allocator) stay out of the timings
        warm = EvalConfig(**{**base, "batch_episodes": min(64, args.batch_episodes)}, episodes=64)
        planned, pv, pc = sampling_pass(model, labels[: args.batch_videos], frames[: args.batch_videos], prompts,
                                        warm)
        work = distinct_pass(model, frames[: args.batch_videos], prompts, video_labels[: args.batch_videos], pv, pc,
                             args.batch_videos)
        if has_reusable_work(model, shot):
            score_pass(model, work, planned, warm, device)
        del work
    with torch.no_grad():
        run = timed_passes(model, frames, prompts, labels, video_labels, feats, prompt_np, len(sizes), base, args,
                           device)
    t, reused, P = run["times"], run["reused"], len(run["pair_videos"])
    fastest = {k: (min(v) if v else None) for k, v in t.items() if k != "matmul"}
    distinct_flops = V * flops["encode"] + V * flops["fuse"] + P * flops["fuse"]
    naive_flops = args.episodes * (5 * shot + 5) * (flops["encode"] + flops["fuse"])
    necessary = (None if fastest["score"] is None else fastest["sampling"] + fastest["distinct"] + fastest["score"])
    necessary_cpu = (None if fastest["score_cpu"] is None
                     else fastest["sampling_cpu"] + fastest["distinct_cpu"] + fastest["score_cpu"])
    peak, distinct_s, eval_s = max(t["matmul"]), fastest["distinct"], fastest["eval"]
    print(f"  {name} D={dim} {shot}-shot, {prompt_kind} prompts: {P} distinct query pairs ({P / V:.2f} per video); "
          f"sampling {fastest['sampling']:.2f} s, distinct pass {distinct_flops / 1e12:.2f} TFLOP in {distinct_s:.2f} "
          f"s, score pass " + ("(none: episodes run whole)" if necessary is None else f"{fastest['score']:.2f} s")
          + f"; reused eval of {args.episodes} episodes {eval_s:.2f} s"
          + ("" if necessary is None else f" = {eval_s / necessary:.2f} x the three")
          + f", accuracy {reused.accuracy:.4f} %", flush=True)

    n = args.naive_episodes or args.episodes
    if n < args.episodes:  # whole batches, so that the PPS draws use the same generators as the full run
        n = min(args.episodes, -(-n // args.batch_episodes) * args.batch_episodes)
    naive = evaluate(model, feats, labels, prompt_np, [str(c) for c in range(len(sizes))],
                     EvalConfig(**base, episodes=n, reuse=False, keep_predictions=True))
    same = reused.predictions[:n] == naive.predictions
    subset_acc = lambda p: 100.0 * float((p == torch.arange(5)).double().mean())  # noqa: E731  query m has label m
    naive_full_s = naive.seconds * args.episodes / n
    print(f"  naive eval {n} episodes: {naive.seconds:.1f} s"
          + (f" (x{args.episodes / n:g} = {naive_full_s:.0f} s extrapolated)" if n < args.episodes else "")
          + f", predictions identical: {bool(same.all())}", flush=True)
    return {
        "model": name, "dim": dim, "shot": shot, "prompts": prompt_kind, "videos": V, "classes": len(sizes),
        "episodes": args.episodes, "distinct_query_pairs": P, "pairs_per_video": P / V,
        "pps_own_class_rate": own_class_rate(run["planned"], labels),
        "flops_per_video": flops, "flops_per_video_flopcounter": counted,
        "distinct_pass_flops": distinct_flops, "naive_flops": naive_flops,
        "matmul_flops_per_s": peak, "matmul_flops_per_s_all": t["matmul"],
        "plan_s": fastest["sampling"], "distinct_pass_s": distinct_s, "distinct_pass_s_all": t["distinct"],
        "distinct_pass_flops_per_s": distinct_flops / distinct_s,
        "distinct_pass_vs_matmul": distinct_flops / distinct_s / peak,
        "eval_reuse_s": eval_s, "eval_reuse_s_all": t["eval"], "eval_reuse_episodes_per_s": args.episodes / eval_s,
        "eval_vs_distinct_pass": eval_s / distinct_s,
        "distinct_pass_cpu_s_all": t["distinct_cpu"], "eval_reuse_cpu_s_all": t["eval_cpu"],
        "eval_vs_distinct_pass_cpu_time": fastest["eval_cpu"] / fastest["distinct_cpu"],
        "eval_path": "reused" if run["reuses"] else "naive (merges_shots)",
        "sampling_pass_s": fastest["sampling"], "sampling_pass_s_all": t["sampling"],
        "sampling_pass_cpu_s_all": t["sampling_cpu"],
        "score_pass_s": fastest["score"], "score_pass_s_all": t["score"], "score_pass_cpu_s_all": t["score_cpu"],
        "necessary_work_s": necessary, "necessary_work_cpu_s": necessary_cpu,
        "eval_vs_necessary_work": None if necessary is None else eval_s / necessary,
        "eval_vs_necessary_work_cpu_time": None if necessary_cpu is None else fastest["eval_cpu"] / necessary_cpu,
        "accuracy_reuse": reused.accuracy,
        "naive_episodes_timed": n, "naive_timed_s": naive.seconds, "eval_naive_s": naive_full_s,
        "naive_extrapolated": n < args.episodes, "eval_naive_episodes_per_s": n / naive.seconds,
        "naive_vs_reuse_time": naive_full_s / eval_s,
        "accuracy_naive": naive.accuracy,
        "accuracy_reuse_same_episodes": subset_acc(reused.predictions[:n]),
        "accuracy_naive_same_episodes": subset_acc(naive.predictions),
        "load_average": list(os.getloadavg()),
        "predictions_identical": bool(same.all()), "queries_differing": int((~same).sum()),
        "accuracy_identical": subset_acc(reused.predictions[:n]) == subset_acc(naive.predictions),
    }


def bench_train(name: str, dim: int, shot: int, store, args, device: torch.device, work: Path) -> dict:
    """Head-training episodes/s of one head through `train.loop.train` (`benchmarks/heads.py`'s `time_head`), with
    the model settings this benchmark evaluates it with."""
    from heads import time_head

    settings = {k: v for k, v in head_config(name, dim).to_dict().items() if k not in ("name", "dim", "frames")}
    r = time_head(name, dim, shot, store, args.train_steps, device, work, settings,
                  episodes_per_step=args.train_episodes_per_step) | {"model": name}
    print(f"  {name} D={dim} {shot}-shot training: {r['seconds_per_step']:.2f} s per step of {r['episodes_per_step']} "
          f"episodes = {r['train_episodes_per_s']:.2f} episodes/s", flush=True)
    return r


PER_HEAD = {"episodes": int, "naive_episodes": int, "batch_episodes": int, "repeats": int, "train_steps": int,
            "train_episodes_per_step": int}


def head_args(args, name: str) -> argparse.Namespace:
    """`args` with the `--for HEAD:KEY=VALUE` settings of head `name` in place."""
    out = argparse.Namespace(**vars(args))
    for item in args.per_head:
        head, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        if head == name:
            setattr(out, key.replace("-", "_"), PER_HEAD[key.replace("-", "_")](value))
    return out


def check_per_head(ap: argparse.ArgumentParser, items: list[str]) -> None:
    for item in items:
        head, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        if head not in MODELS or key.replace("-", "_") not in PER_HEAD or not value.isdigit() or int(value) < 1:
            ap.error(f"--for {item}: expected HEAD:KEY=N with HEAD one of {', '.join(MODELS)}, KEY one of "
                     f"{', '.join(PER_HEAD)} and N >= 1")


# ---- report ------------------------------------------------------------------------------------------------------
def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    train = Table(title="head training (forward + backward + Adam, 5-way, 5 queries/class)")
    for col in ("model", "D", "shot", "episodes/s", "s/step", "episodes/step", "steps timed"):
        train.add_column(col, justify="right")
    for r in result["train"]:
        train.add_row(r["model"], str(r["dim"]), str(r["shot"]), f"{r['train_episodes_per_s']:.2f}",
                      f"{r['seconds_per_step']:.2f}", str(r["episodes_per_step"]), str(r["steps_timed"]))
    console.print(train)
    first = result["eval"][0]
    where = (f"{first['episodes']} episodes, 5-way, 1 query/class, {first['videos']} videos in "
             f"{first['classes']} classes")
    work = Table(title=f"evaluation: the distinct pass ({where})")
    timing = Table(title=f"evaluation: time and equality ({where})")
    for col in ("model", "D", "shot", "prompts", "pairs/video", "distinct TFLOP", "naive TFLOP", "matmul GFLOP/s",
                "distinct s", "distinct GFLOP/s", "distinct/matmul"):
        work.add_column(col, justify="right")
    for col in ("model", "D", "shot", "prompts", "eval s", "eval/distinct", "same, CPU s", "eval ep/s", "naive s",
                "naive ep/s", "naive/eval", "acc reuse %", "acc naive %", "same preds"):
        timing.add_column(col, justify="right")
    mark = lambda ok: "" if ok else " ✗"  # noqa: E731
    for r in result["eval"]:
        key = (r["model"], str(r["dim"]), str(r["shot"]), r["prompts"])
        work.add_row(*key, f"{r['pairs_per_video']:.2f}", f"{r['distinct_pass_flops'] / 1e12:.2f}",
                     f"{r['naive_flops'] / 1e12:.1f}", f"{r['matmul_flops_per_s'] / 1e9:.0f}",
                     f"{r['distinct_pass_s']:.2f}", f"{r['distinct_pass_flops_per_s'] / 1e9:.0f}",
                     f"{r['distinct_pass_vs_matmul']:.2f}{mark(r['distinct_pass_vs_matmul'] >= 0.5)}")
        timing.add_row(*key, f"{r['eval_reuse_s']:.2f}",
                       f"{r['eval_vs_distinct_pass']:.2f}{mark(r['eval_vs_distinct_pass'] <= 1.5)}",
                       f"{r['eval_vs_distinct_pass_cpu_time']:.2f}", f"{r['eval_reuse_episodes_per_s']:.0f}",
                       f"{r['eval_naive_s']:.1f}" + ("*" if r["naive_extrapolated"] else ""),
                       f"{r['eval_naive_episodes_per_s']:.1f}", f"{r['naive_vs_reuse_time']:.1f}",
                       f"{r['accuracy_reuse_same_episodes']:.4f}", f"{r['accuracy_naive_same_episodes']:.4f}",
                       "yes" if r["predictions_identical"] else f"no ({r['queries_differing']} queries)")
    glue = Table(title=f"evaluation: the work it cannot avoid ({where})")
    for col in ("model", "D", "shot", "prompts", "path", "sampling s", "distinct s", "score s", "eval s",
                "eval/distinct", "eval/(sampling+distinct+score)", "same, CPU s", "load avg"):
        glue.add_column(col, justify="right")
    for r in result["eval"]:
        ratio, cpu = r["eval_vs_necessary_work"], r["eval_vs_necessary_work_cpu_time"]
        glue.add_row(r["model"], str(r["dim"]), str(r["shot"]), r["prompts"], r["eval_path"].split()[0],
                     f"{r['sampling_pass_s']:.2f}", f"{r['distinct_pass_s']:.2f}",
                     "—" if r["score_pass_s"] is None else f"{r['score_pass_s']:.2f}", f"{r['eval_reuse_s']:.2f}",
                     f"{r['eval_vs_distinct_pass']:.2f}",
                     "—" if ratio is None else f"{ratio:.2f}{mark(ratio <= 1.5)}",
                     "—" if cpu is None else f"{cpu:.2f}", f"{r['load_average'][0]:.1f}")
    console.print(work)
    console.print(timing)
    console.print(glue)
    timed_naive = sorted({r["naive_episodes_timed"] for r in result["eval"] if r["naive_extrapolated"]})
    if timed_naive:
        console.print(f"* naive time: the first {' / '.join(map(str, timed_naive))} episodes of a cell timed "
                      "(naive_episodes_timed), extrapolated linearly; the accuracies and predictions compared are on "
                      "those episodes")
    console.print("targets: distinct/matmul >= 0.5, eval/distinct <= 1.5 (✗ marks a miss); eval/(sampling+distinct+"
                  "score) <= 1.5 is what the evaluator's glue adds to the work it cannot avoid; 'same, CPU s' is the "
                  "ratio before it in CPU seconds of this process (on a shared CPU less noisy than wall time; on a "
                  "GPU it counts only the host's part); path naive: the episodes run whole (merges_shots), no score "
                  "pass; load avg: the 1-minute load average after the cell")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--models", default=None, help="heads to measure, comma-separated (default: every head of MODELS)")
    ap.add_argument("--dims", default="1024,512", help="feature widths: 1024 = RN50, 512 = ViT-B/16")
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--prompts", default=",".join(PROMPTS), help="synthetic prompt settings (see synthetic_split)")
    ap.add_argument("--episodes", type=int, default=10_000)
    ap.add_argument("--naive-episodes", type=int, default=None,
                    help="time the naive eval on this many episodes (rounded up to whole batches) and extrapolate")
    ap.add_argument("--split-file", type=Path, default=ROOT / "splits" / "ucf101" / "test.txt",
                    help="class sizes of the synthetic split come from this split file")
    ap.add_argument("--batch-episodes", type=int, default=500)
    ap.add_argument("--batch-videos", type=int, default=None, help="default: 1024 on CPU, 4096 on CUDA")
    ap.add_argument("--train-steps", type=int, default=None, help="default: 5 on CPU, 20 on CUDA (first is warm-up)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="distinct pass and reused eval are each run this many times, alternating; the fastest counts")
    ap.add_argument("--matmul-size", type=int, default=None,
                    help="n of the n×n float32 matmul that measures the peak (default: 8192 on CUDA, 4096 on CPU)")
    ap.add_argument("--train-episodes-per-step", type=int, default=None,
                    help="episodes per training step (default: training's, 16)")
    ap.add_argument("--for", dest="per_head", action="append", default=[], metavar="HEAD:KEY=N",
                    help=f"a per-head count, e.g. trx:episodes=500 (keys: {', '.join(PER_HEAD)}); repeatable")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.batch_videos = args.batch_videos or (4096 if device.type == "cuda" else 1024)
    args.train_steps = max(2, args.train_steps or (20 if device.type == "cuda" else 5))
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; heads: {', '.join(MODELS)}")
    check_per_head(ap, args.per_head)
    dims = [int(d) for d in args.dims.split(",")]
    shots = [int(s) for s in args.shots.split(",")]
    sizes = split_class_sizes(args.split_file, 2745, 21)
    machine = (f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, device {device}"
               + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(machine, flush=True)
    result = {"machine": machine, "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "float32_matmul_precision": torch.get_float32_matmul_precision(),
              "matmul_flops_per_s": {"float32": matmul_flops(device, n=args.matmul_size)}, "train": [], "eval": []}
    if device.type == "cuda":  # for reference only: evaluation runs in float32
        result["matmul_flops_per_s"]["bfloat16"] = matmul_flops(device, torch.bfloat16, args.matmul_size)
    print("matmul GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in result["matmul_flops_per_s"].items()),
          flush=True)

    result["load_average_start"] = list(os.getloadavg())
    began = time.perf_counter(), time.process_time()
    work = Path(tempfile.mkdtemp(prefix="mdmf-bench-eval-"))
    try:
        if not args.skip_train:
            from synthetic import make_store

            for dim in dims:
                store = make_store(work / f"store-{dim}", per_class=20, dim=dim)
                for name in (m for m in models if MODELS[m].needs_training):
                    for shot in shots:
                        result["train"].append(bench_train(name, dim, shot, store, head_args(args, name), device,
                                                           work))
        for name in models:
            for dim in dims:
                for shot in shots:
                    for kind in args.prompts.split(","):
                        result["eval"].append(bench_eval(name, dim, shot, kind, sizes, head_args(args, name),
                                                         device))
                    if args.json:  # partial results survive an interrupted run
                        args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result |= {"load_average_end": list(os.getloadavg()), "wall_s": time.perf_counter() - began[0],
               "cpu_s": time.process_time() - began[1]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print_tables(result)
    print(f"wall {result['wall_s']:.0f} s, CPU {result['cpu_s']:.0f} s; load average (1, 5, 15 min) at the start "
          f"{result['load_average_start']}, at the end {result['load_average_end']}")


if __name__ == "__main__":
    main()
