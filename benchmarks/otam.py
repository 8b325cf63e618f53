"""OTAM throughput, measured in one run: the column scan in `mdmf.otam` against two other ways to compute it.

Contenders, all from the frames (frame cost and alignment) and bidirectional (the distance the models use), float32:

* `cells`: a plain cell-by-cell loop, the reference recurrence (docs METHOD §5) transcribed with
  `torch.logsumexp(torch.stack(...))` per cell on slices of the padded cost, autograd for the backward;
* `rows`: the previous `mdmf.otam` (a copy of it is kept here, and only here): one row at a time with
  `torch.logcumsumexp` in `y = exp(-C/λ)`, both directions stacked, autograd for the backward;
* `columns`: the current `mdmf.otam.otam_distance`. Without a gradient on the CPU (the "forward" mode) it takes the
  exp-domain path from the frames (`_otam_frames_exp`), with one the log-domain column scan;
* `columns-log`: the same with the exp-domain path switched off (`EXP_DOMAIN_DEVICES` empty): the log-domain column
  scan on the full frame cost, which is what `columns` was before the exp-domain path.

`cells` and `rows` use the previous `frame_cost` (also kept here: four full-size passes, the cost laid out like the
matmul's result), `columns` the current one (three passes, laid out time-leading for the scan); both frame costs
are also timed alone.

Inputs: alignment-bound, 20,000 queries × 5 classes (shared supports), T = 8, D = 64 (the alignment is most of the
work); realistic, one evaluation batch of 500 episodes × 5 queries × 5 classes at D = 512 and 1024 (each episode its
own prototypes). Timed: forward under `no_grad` (evaluation), forward with autograd recording, and forward +
backward of the sum (training), the contenders interleaved (in an order that rotates from repeat to repeat),
`--repeats` times each; the fastest counts (on a shared machine, the closest to an unloaded one), ratios are of
those fastest times; wall time and CPU time of the process (on a loaded machine the CPU time moves less; with
`--threads 1` it is the work itself).

Operation counts per call (a proxy for CUDA kernel launches; measured on the CPU with torch.profiler): aten
operations that do work (leaves of the profiler's tree, views and allocations left out), forward and forward +
backward; for `columns` also with the CUDA code path (one torch.logaddexp per log-add-exp) forced on the CPU.

    python benchmarks/otam.py --json bench-otam.json   # 2 cores: about 3 minutes
    python benchmarks/otam.py --threads 1 --json bench-otam-1.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from mdmf import otam  # noqa: E402
from mdmf.otam import COSINE_EPS, frame_cost, otam_distance  # noqa: E402

LAM = 0.5


# ---- contenders --------------------------------------------------------------------------------------------------
def old_frame_cost(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The previous mdmf.otam.frame_cost, `(..., Q, T, D), (..., C, S, D) -> (..., Q, C, T, S)`."""
    Q, T, D = query.shape[-3:]
    C, S = support.shape[-3:-1]
    dots = query.reshape(*query.shape[:-3], Q * T, D) @ support.reshape(*support.shape[:-3], C * S, D).transpose(-1, -2)
    dots = dots.unflatten(-1, (C, S)).unflatten(-3, (Q, T)).transpose(-3, -2)  # (..., Q, C, T, S), a view
    norms = query.norm(dim=-1)[..., :, None, :, None] * support.norm(dim=-1)[..., None, :, None, :]
    return 1.0 - dots / (norms + COSINE_EPS)


def cells_cost(cost: torch.Tensor, lam: float) -> torch.Tensor:
    """One direction, `(..., T, S) -> (...)`, one cell at a time, exactly as METHOD §5 states the recurrence."""
    P = F.pad(cost, (1, 1))
    rows, width = P.shape[-2], P.shape[-1]  # T, S + 2
    smin = lambda *xs: -lam * torch.logsumexp(torch.stack(xs) / -lam, dim=0)  # noqa: E731
    zero = P.new_zeros(P.shape[:-2])
    C = [[zero] * width for _ in range(rows)]
    for m in range(1, width):
        C[0][m] = P[..., 0, m] + C[0][m - 1]
    for l in range(1, rows):
        C[l][1] = P[..., l, 1] + smin(C[l - 1][0], C[l - 1][1], C[l][0])
        for m in range(2, width - 1):
            C[l][m] = P[..., l, m] + smin(C[l - 1][m - 1], C[l][m - 1])
        C[l][width - 1] = P[..., l, width - 1] + smin(C[l - 1][width - 2], C[l - 1][width - 1], C[l][width - 2])
    return C[rows - 1][width - 1]


def cells_distance(query, support, lam=LAM):
    cost = old_frame_cost(query, support)
    return cells_cost(cost, lam) + cells_cost(cost.transpose(-1, -2), lam)


def rows_cost(cost: torch.Tensor, smoothing: float = 0.5) -> torch.Tensor:
    """The previous mdmf.otam.otam_cost (row-at-a-time logcumsumexp scan), kept for comparison only."""
    lam = float(smoothing)
    width = cost.shape[-1]  # S
    log_g = cost / -lam  # (..., T, S): log g_m for m = 1 … S; column S+1 (padding) has log g = 0
    G = log_g.cumsum(-1)
    G = torch.cat([G, G[..., -1:]], dim=-1)  # (..., T, S+1): G_m for m = 1 … S+1
    G_before = F.pad(G[..., :-1], (1, 0))  # (..., T, S+1): G_{m-1}, with G_0 = 0
    log_y = F.pad(G[..., 0, :], (1, 0))  # row 0 as log y: -C[0, m]/λ = G_m, and log y_0 = 0
    for l in range(1, cost.shape[-2]):
        log_h = torch.cat([  # (..., S+1) for m = 1 … S+1: the diagonal, and for m = 1 and m = S+1 the cell above
            torch.logaddexp(log_y[..., 0:1], log_y[..., 1:2]),
            log_y[..., 1:width],
            torch.logaddexp(log_y[..., width : width + 1], log_y[..., width + 1 :]),
        ], dim=-1)
        z = F.pad(log_h - G_before[..., l, :], (1, 0))  # z_0 = 0 … z_{S+1}
        log_y = F.pad(G[..., l, :] + torch.logcumsumexp(z, dim=-1)[..., 1:], (1, 0))  # C[l, 0] stays 0
    return log_y[..., width + 1] * -lam


def rows_distance(query, support, lam=LAM):
    """The previous mdmf.otam.otam_distance, bidirectional."""
    cost = old_frame_cost(query, support)
    if cost.shape[-1] == cost.shape[-2]:
        both = rows_cost(torch.stack([cost, cost.transpose(-1, -2)]), lam)
        return both[0] + both[1]
    return rows_cost(cost, lam) + rows_cost(cost.transpose(-1, -2), lam)


def columns_distance(query, support, lam=LAM):
    return otam_distance(query, support, lam, bidirectional=True)


def columns_log_distance(query, support, lam=LAM):
    saved = set(otam.EXP_DOMAIN_DEVICES)
    otam.EXP_DOMAIN_DEVICES.clear()
    try:
        return otam_distance(query, support, lam, bidirectional=True)
    finally:
        otam.EXP_DOMAIN_DEVICES.update(saved)


def frame_cost_only(query, support, lam=LAM):
    return frame_cost(query, support).sum((-1, -2))


def old_frame_cost_only(query, support, lam=LAM):
    return old_frame_cost(query, support).sum((-1, -2))


CONTENDERS = {"cells": cells_distance, "rows": rows_distance, "columns": columns_distance,
              "columns-log": columns_log_distance}
FRAME_COSTS = {"old frame_cost": old_frame_cost_only, "frame_cost": frame_cost_only}


# ---- inputs ------------------------------------------------------------------------------------------------------
def inputs(kind: str, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if kind == "alignment-bound":  # 20,000 queries against 5 shared class prototypes
        return torch.randn(20_000, 8, dim, generator=g), torch.randn(5, 8, dim, generator=g)
    # one evaluation batch: 500 episodes, 5 queries against the episode's 5 prototypes
    return torch.randn(500, 5, 8, dim, generator=g), torch.randn(500, 5, 8, dim, generator=g)


CASES = [("alignment-bound", 64), ("eval batch", 512), ("eval batch", 1024)]


# ---- measuring ---------------------------------------------------------------------------------------------------
MODES = ("forward", "forward recording", "forward+backward")


def time_once(fn, query, support, mode: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call: under no_grad (evaluation), with autograd
    recording (inputs that require grad, no backward), or with the backward of the sum (training)."""
    if mode == "forward":
        with torch.no_grad():
            start, cpu = time.perf_counter(), time.process_time()
            fn(query, support)
    else:
        q, u = query.detach().requires_grad_(), support.detach().requires_grad_()
        start, cpu = time.perf_counter(), time.process_time()
        d = fn(q, u)
        if mode == "forward+backward":
            d.sum().backward()
    return time.perf_counter() - start, time.process_time() - cpu


NOT_WORK = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::slice", "aten::select",
            "aten::as_strided", "aten::permute", "aten::expand", "aten::transpose", "aten::t", "aten::unsqueeze",
            "aten::squeeze", "aten::alias", "aten::reshape", "aten::_reshape_alias", "aten::unflatten",
            "aten::flatten", "aten::detach", "aten::resize_", "aten::lift_fresh", "aten::_unsafe_view",
            "aten::narrow", "aten::unbind", "aten::split", "aten::numpy_T", "aten::mT", "aten::contiguous",
            "aten::result_type", "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "detach",
            "aten::set_", "aten::zeros", "aten::new_empty", "aten::new_empty_strided", "aten::new_zeros",
            "aten::new_ones", "aten::scalar_tensor", "aten::to", "aten::_to_copy", "aten::ones_like",
            "aten::zeros_like", "aten::expand_as", "aten::view_as"}


def op_counts(fn, backward: bool) -> dict:
    """aten operations per call: all of them, and the leaves that do work (a proxy for kernel launches)."""
    from torch.profiler import ProfilerActivity, profile

    q, u = torch.randn(50, 8, 64), torch.randn(5, 8, 64)
    if backward:
        q.requires_grad_(), u.requires_grad_()
    fn(q, u)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        if backward:
            fn(q, u).sum().backward()
        else:
            with torch.no_grad():
                fn(q, u)
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    leaves = [e for e in events if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    work = [e for e in leaves if e.name not in NOT_WORK]
    # the frame cost's own operations (and `.sum()` for the backward) are in every contender's count
    return {"aten_ops": len(events), "working_leaf_ops": len(work)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = (f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads")
    print(machine, flush=True)
    result = {"machine": machine, "command": " ".join([Path(sys.executable).name, *sys.argv]), "cases": [],
              "op_counts": {}}

    # agreement: float64, a small case, both directions through the contenders; and float32 on a real input
    g = torch.Generator().manual_seed(1)
    q64, u64 = torch.randn(40, 8, 16, generator=g, dtype=torch.float64), torch.randn(5, 8, 16, generator=g,
                                                                                     dtype=torch.float64)
    ref = cells_distance(q64, u64)
    agree = {name: float(((fn(q64, u64) - ref).abs() / ref.abs()).max()) for name, fn in CONTENDERS.items()}
    print("float64, max relative difference to the cell loop: "
          + ", ".join(f"{k} {v:.1e}" for k, v in agree.items()), flush=True)
    result["float64_max_rel_diff_vs_cells"] = agree

    for kind, dim in CASES:
        query, support = inputs(kind, dim)
        pairs = query.shape[0] * (5 if kind == "alignment-bound" else 25)
        with torch.no_grad():
            f32 = {name: fn(query, support) for name, fn in CONTENDERS.items()}
        rel32 = max(float(((f32[n] - f32["cells"]).abs() / f32["cells"].abs()).max()) for n in f32)
        case = {"input": kind, "dim": dim, "query_shape": list(query.shape), "support_shape": list(support.shape),
                "pairs": pairs, "float32_max_rel_diff": rel32}
        print(f"{kind}, D = {dim}: query {tuple(query.shape)}, support {tuple(support.shape)}, {pairs} pairs; "
              f"float32 max relative difference {rel32:.1e}", flush=True)
        for what in MODES:
            fns = dict(CONTENDERS, **FRAME_COSTS)
            for fn in fns.values():  # warm-up
                time_once(fn, query, support, what)
            times = {name: [] for name in fns}
            names = list(fns)
            for r in range(args.repeats):  # the order rotates: the call after a big one (rows) faults in the pages
                for name in names[r % len(names):] + names[: r % len(names)]:  # it freed, once in a while only
                    times[name].append(time_once(fns[name], query, support, what))
            case[what] = {}
            for k, clock in enumerate(("wall", "cpu")):
                best = {name: min(t[k] for t in ts) for name, ts in times.items()}
                case[what][clock] = {"seconds_all": {name: [t[k] for t in ts] for name, ts in times.items()},
                                     "seconds": best, "cells_over_columns": best["cells"] / best["columns"],
                                     "rows_over_columns": best["rows"] / best["columns"],
                                     "columns_log_over_columns": best["columns-log"] / best["columns"],
                                     "cells_over_rows": best["cells"] / best["rows"]}
                print(f"  {what:17s} {clock:4s} " + ", ".join(f"{name} {best[name] * 1e3:.1f} ms" for name in fns)
                      + f"; cells/columns {best['cells'] / best['columns']:.2f}x, rows/columns "
                      f"{best['rows'] / best['columns']:.2f}x, columns-log/columns "
                      f"{best['columns-log'] / best['columns']:.2f}x", flush=True)
        result["cases"].append(case)

    for backward in (False, True):
        what = "forward+backward" if backward else "forward"
        counts = {name: op_counts(fn, backward) for name, fn in dict(CONTENDERS, **FRAME_COSTS).items()}
        saved = set(otam.COMPOSED_LOGADDEXP_DEVICES), set(otam.EXP_DOMAIN_DEVICES)
        otam.COMPOSED_LOGADDEXP_DEVICES.clear()  # the code path CUDA takes: log domain, torch.logaddexp
        otam.EXP_DOMAIN_DEVICES.clear()
        try:
            counts["columns, CUDA path"] = op_counts(columns_distance, backward)
        finally:
            otam.COMPOSED_LOGADDEXP_DEVICES.update(saved[0])
            otam.EXP_DOMAIN_DEVICES.update(saved[1])
        result["op_counts"][what] = counts
        print(f"ops per call, {what} (T = 8; working leaves / all aten ops): "
              + ", ".join(f"{n} {c['working_leaf_ops']} / {c['aten_ops']}" for n, c in counts.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
