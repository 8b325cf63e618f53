"""The report's t-SNE backends, measured in one run: time and trustworthiness on the same points.

Points: `--classes` Gaussian clusters of `--per-class` points in `--dim` dimensions (the report's default figure is
10 classes × 60 videos of CLIP width 512), unit noise around centres drawn with unit variance. Each backend of
`mdmf.pipeline.apps.tsne.embed` (the same PCA to 50 dimensions, perplexity 30, 750 iterations, seed 0) runs
`--repeats` times; the fastest wall time counts. Trustworthiness (k = 10, Venna & Kaski; scikit-learn's function
when it is installed, else the test suite's) is computed against the original points. Backends not installed are
reported as such.

    python benchmarks/tsne.py                       # 600 × 512, about 20 s on 2 cores
    python benchmarks/tsne.py --per-class 200 --json bench-tsne.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from mdmf.pipeline.apps.tsne import BACKENDS, choose_backend, embed
from mdmf.pipeline.core.errors import MdmfError


def trustworthiness(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    try:
        from sklearn.manifold import trustworthiness as sk

        return float(sk(x, y, n_neighbors=k))
    except ImportError:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_apps_tsne import trustworthiness as ours

        return float(ours(x, y, k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (the exact backend)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = np.random.default_rng(0)
    centres = g.normal(size=(args.classes, args.dim))
    x = (np.repeat(centres, args.per_class, 0) + g.normal(size=(args.classes * args.per_class, args.dim)))
    x = x.astype(np.float32)
    rows = {}
    for backend in BACKENDS:
        try:
            choose_backend(backend)
        except MdmfError:
            rows[backend] = {"installed": False}
            print(f"{backend:9s} not installed")
            continue
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            points = embed(x, backend).points
            times.append(time.perf_counter() - start)
        rows[backend] = {"installed": True, "seconds": min(times), "trustworthiness": trustworthiness(x, points)}
        print(f"{backend:9s} {min(times):7.2f} s  trustworthiness {rows[backend]['trustworthiness']:.4f}")
    result = {"points": int(len(x)), "dim": args.dim, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "backends": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
