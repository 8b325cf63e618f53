"""Distributed start-up under torchrun, measured in one run (NCCL on CUDA, gloo on the CPU).

1. **process group**: `torchrun --standalone --nproc_per_node 1` of this script's worker: `init_process_group`, a
   DistributedDataParallel module on the device, two forward + backward passes (the gradients all-reduced) and an
   all-reduce of 4 MB, each timed. mdmf itself starts no process group for one process, so this is the check that
   the backend starts on the machine.
2. **one process**: `mdmf train --stage head` on a synthetic store, plainly and under `torchrun --nproc_per_node 1`:
   the wall-time difference is the launcher's start-up, and the two updates (Adam's first moment after 2 steps) must
   be equal.
3. **two processes** (only where 2 or more GPUs, or on the CPU with `--processes 2`): `torchrun --nproc_per_node 2`
   with the defaults (16 episodes per step, 8 per process) against one plain process with `--batch-episodes 8` (the
   same passes), as tests/test_train_loop.py checks with gloo: Adam's first moments equal within rtol 1e-4, atol 1e-6,
   and the training rows within 1e-4. On CUDA the runs have TF32 off (NVIDIA_TF32_OVERRIDE=0): cuDNN's TF32
   convolutions would differ by more than that between any two batchings.

    python benchmarks/ddp.py --device cuda --json ddp.json      # a GPU machine (not yet run on one)
    python benchmarks/ddp.py --device cpu --dim 32 --set heads=4 --set mlp_dim=32   # gloo, a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def gpu_count() -> int:
    """CUDA devices, asked in a subprocess: this process stays free of torch (and of a CUDA context) for the launch."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0


def worker(device_name: str, dim: int, out: Path) -> None:
    """Under torchrun: start the process group and run DDP passes, timing each; rank 0 writes `out`."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if device_name == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    times = {}
    t = time.perf_counter()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    times["init_process_group_s"] = time.perf_counter() - t
    model = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))
    t = time.perf_counter()
    net = DistributedDataParallel(model.to(device), device_ids=[local] if device.type == "cuda" else None)
    times["ddp_wrap_s"] = time.perf_counter() - t
    x = torch.randn(256, dim, device=device)
    for name in ("first_step_s", "second_step_s"):
        t = time.perf_counter()
        net(x).square().mean().backward()  # DDP all-reduces the gradients in backward
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times[name] = time.perf_counter() - t
    buf = torch.ones(2**20, device=device)
    t = time.perf_counter()
    dist.all_reduce(buf)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times["all_reduce_4mb_s"] = time.perf_counter() - t
    world = dist.get_world_size()
    ok = bool((buf == world).all())
    backend = dist.get_backend()
    dist.destroy_process_group()
    if rank == 0:
        out.write_text(json.dumps({"backend": backend, "world": world, "all_reduce_correct": ok, **times}))


def train_run(args, store: Path, runs: Path, name: str, processes: int, extra: list[str], env: dict) -> dict:
    """`mdmf train --stage head` (plain, or under torchrun with `processes` processes): wall time and last.pt."""
    cmd = ["train", "--stage", "head", "--cache", str(store), "--runs", str(runs), "--name", name, "--steps", "2",
           "--lr", "1e-3", "--val-every", "2", "--val-episodes", "20", "--device", args.device, "--quiet",
           "--set", "ce_reduction=mean", *sum((["--set", s] for s in args.sets), []), *extra]
    launcher = [*TORCHRUN, "--nproc_per_node", str(processes), "-m", "mdmf"] if processes else [sys.executable, "-m",
                                                                                                  "mdmf"]
    t = time.perf_counter()
    proc = subprocess.run([*launcher, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return {"wall_s": wall, "run": runs / name}


def compare(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-6) -> dict:
    """Adam's first moments and the training rows of two runs: max differences, and equal within the tolerances."""
    import torch

    sa = torch.load(a / "last.pt", weights_only=False)["optimizer"]["state"]
    sb = torch.load(b / "last.pt", weights_only=False)["optimizer"]["state"]
    pairs = [(x["exp_avg"].double(), y["exp_avg"].double()) for x, y in zip(sa.values(), sb.values())]
    diff = max(float((x - y).abs().max()) for x, y in pairs)
    rel = max(float(((x - y).abs() / y.abs().clamp_min(atol)).max()) for x, y in pairs)
    close = len(sa) == len(sb) and all(torch.allclose(y, x, rtol=rtol, atol=atol) for x, y in pairs)
    rows = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines() if "loss" in x]  # noqa
    ra, rb = rows(a), rows(b)
    rows_close = len(ra) == len(rb) and all(list(x) == list(y) and all(abs(x[k] - y[k]) < 1e-4 for k in x
                                                                     if k != "seconds") for x, y in zip(ra, rb))
    return {"tensors": len(pairs), "max_abs_diff": diff, "max_rel_diff": rel, "rtol": rtol, "atol": atol,
            "equal": bool(close and rows_close), "moments_equal": bool(close), "rows_equal": bool(rows_close)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (NCCL) or cpu (gloo)")
    ap.add_argument("--dim", type=int, default=512, help="feature width of the synthetic store and the worker's net")
    ap.add_argument("--processes", type=int, default=None,
                    help="processes of the comparison (3.); default: 2 where 2+ GPUs, else none")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="model setting passed to mdmf train (e.g. heads=4 for a quick CPU check)")
    ap.add_argument("--group-only", action="store_true", help="only part 1, the process group (a quick check)")
    ap.add_argument("--json", type=Path, help="write the numbers here (rewritten after every part)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: the torchrun worker of part 1
    args = ap.parse_args()
    if args.worker:
        return worker(args.device, args.dim, args.worker)

    gpus = gpu_count() if args.device == "cuda" else 0
    if args.device == "cuda" and not gpus:
        raise SystemExit("ddp.py --device cuda: no CUDA device (use --device cpu for gloo)")
    processes = args.processes if args.processes is not None else (2 if gpus >= 2 else 0)
    backend = "nccl" if args.device == "cuda" else "gloo"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"), "NVIDIA_TF32_OVERRIDE": "0", "HF_HUB_OFFLINE": "1"}
    result = {"backend": backend, "gpus": gpus, "rows": []}

    def record(row: dict) -> None:
        result["rows"].append(row)
        print(f"  {row['summary']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))

    work = Path(tempfile.mkdtemp(prefix="mdmf-bench-ddp-"))
    try:
        t = time.perf_counter()
        out = work / "worker.json"
        proc = subprocess.run([*TORCHRUN, "--nproc_per_node", "1", str(Path(__file__).resolve()), "--device",
                               args.device, "--dim", str(args.dim), "--worker", str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"the {backend} worker failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        w = json.loads(out.read_text())
        record({"part": "process group", "processes": 1, "wall_s": time.perf_counter() - t, **w,
                "summary": f"{w['backend']} process group, 1 process: init {w['init_process_group_s']:.2f} s, DDP "
                           f"steps {w['first_step_s']:.3f} / {w['second_step_s']:.3f} s, all-reduce of 4 MB "
                           f"{w['all_reduce_4mb_s'] * 1e3:.1f} ms, "
                           f"{'correct' if w['all_reduce_correct'] else 'WRONG'}"})

        if args.group_only:
            return
        sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
        from synthetic import make_store

        store = make_store(work / "store", per_class=20, dim=args.dim).path
        plain = train_run(args, store, work, "plain", 0, [], env)
        one = train_run(args, store, work, "torchrun1", 1, [], env)
        same = compare(plain["run"], one["run"])
        record({"part": "mdmf train, 1 process", "processes": 1, "plain_wall_s": plain["wall_s"],
                "torchrun_wall_s": one["wall_s"], "launcher_overhead_s": one["wall_s"] - plain["wall_s"], **same,
                "summary": f"mdmf train under torchrun, 1 process: {one['wall_s']:.1f} s vs {plain['wall_s']:.1f} s "
                           f"plain (launcher +{one['wall_s'] - plain['wall_s']:.1f} s), same update: "
                           f"{'yes' if same['equal'] else 'NO'} (max diff {same['max_abs_diff']:.1e})"})
        if processes >= 2:
            ref = train_run(args, store, work, "plain-batch8", 0, ["--batch-episodes", str(16 // processes)], env)
            many = train_run(args, store, work, f"torchrun{processes}", processes, [], env)
            same = compare(ref["run"], many["run"])
            record({"part": f"mdmf train, {processes} processes", "processes": processes,
                    "plain_wall_s": ref["wall_s"], "torchrun_wall_s": many["wall_s"], **same,
                    "summary": f"{processes} {backend} processes vs 1: same update "
                               f"{'yes' if same['equal'] else 'NO'} (max diff {same['max_abs_diff']:.1e}, "
                               f"rel {same['max_rel_diff']:.1e})"})
        else:
            result["two_processes"] = f"not run: {gpus} GPU(s) (needs 2 or more, or --processes 2)"
            print(f"  two processes: {result['two_processes']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
