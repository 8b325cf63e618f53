"""How much the toy data + tiny backbone leave for a trained head: the untrained OTAM baseline, feature diversity, and
(optionally, `--head`) a quick trained temporal head, on the toy test split for several data seeds.

For each data seed: generate the toy set (`mdmf.pipeline.data.toy`, cached under `--data`), decode 8 segment-centre frames per
test video with decord, crop and normalise them as the pipeline does (`FramePreprocessor` with the model's own size,
mean and std), encode them with the tiny backbone, then

* feature cosine: the mean cosine between frames of *different* test videos (random pairs; near 1 = no information);
* OTAM: 5-way, 1- and 5-shot episodes on the test classes, one query per class, class prototype = mean of its support
  sequences, `mdmf.otam.otam_distance` (bidirectional, λ = 0.5); accuracy mean ± 95% interval over episodes, and per
  class;
* `--head`: a small temporal head (conv1d + self-attention, residual) trained episodically with OTAM cross-entropy on
  the train classes (two random TSN views per train video), the step kept by 1-shot accuracy on the val classes,
  evaluated on the same test episodes.

This does its own simple decode + preprocessing so that it runs before the rest of the pipeline; the official numbers
go through `mdmf extract` + `mdmf eval` (and `mdmf demo`) on the same data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_baseline.py                      # 3 seeds, 2,000 episodes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_baseline.py --seeds 0 --head --episodes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mdmf.otam import otam_distance  # noqa: E402
from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec  # noqa: E402
from mdmf.pipeline.data.sampling import tsn_indices  # noqa: E402
from mdmf.pipeline.data.toy import SPLIT_CLASSES, ToyConfig, generate_toy, video_id  # noqa: E402
from mdmf.pipeline.data.transforms import FramePreprocessor  # noqa: E402

TINY_DIR = REPO / "pipeline" / "assets" / "open_clip"
TINY_WEIGHTS = REPO / "pipeline" / "assets" / "mdmf-tiny-toy.pt"
FRAMES = 8


def load_tiny(weights: Path):
    import open_clip

    open_clip.add_model_config(TINY_DIR)
    model = open_clip.create_model("mdmf-tiny", pretrained=str(weights) if weights else None).eval()
    pp = model.visual.preprocess_cfg
    size = int(pp["size"][0] if isinstance(pp["size"], (tuple, list)) else pp["size"])
    return model, FramePreprocessor(size, tuple(pp["mean"]), tuple(pp["std"]))


@torch.no_grad()
def split_features(model, pre: FramePreprocessor, root: Path, split: str, config: ToyConfig, views: int = 1,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`(V, views, T, D)` float32 image embeddings and `(V,)` labels. View 0 of val/test: segment centres; train views:
    a random frame per segment (the crop stays central: this is a check, not an augmentation study)."""
    from mdmf.pipeline.data.decode import import_decord

    decord = import_decord()  # the optional extra mdmf[decord]
    crops, labels = [], []
    rng = np.random.default_rng(seed)
    for label, name in enumerate(SPLIT_CLASSES[split]):
        for i in range(config.videos_per_class):
            reader = decord.VideoReader(str(root / "videos" / name / f"{video_id(name, i)}.mp4"), num_threads=1)
            for v in range(views):
                idx = tsn_indices(len(reader), FRAMES, rng if split == "train" else None)
                crops.append(pre.crop(reader.get_batch(list(map(int, idx))).asnumpy()))
            labels.append(label)
    x = pre.normalize(torch.stack(crops))  # (V*views, T, 3, S, S)
    flat = x.flatten(0, 1)
    feats = torch.cat([model.encode_image(flat[i:i + 512]) for i in range(0, len(flat), 512)])
    return feats.view(len(labels), views, FRAMES, -1).float().numpy(), np.array(labels)


def mean_cross_video_cosine(features: np.ndarray, pairs: int = 20000, seed: int = 0) -> float:
    """Mean cosine between random frames of two different videos. `features (V, T, D)`."""
    rng = np.random.default_rng(seed)
    v = features.shape[0]
    a, b = rng.integers(0, v, pairs), rng.integers(0, v, pairs)
    keep = a != b
    ta, tb = rng.integers(0, FRAMES, pairs), rng.integers(0, FRAMES, pairs)
    x, y = features[a[keep], ta[keep]], features[b[keep], tb[keep]]
    cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1) + 1e-8)
    return float(cos.mean())


@torch.no_grad()
def evaluate(features: torch.Tensor, labels: np.ndarray, shot: int, episodes: int, seed: int,
             head: nn.Module | None = None) -> dict:
    """OTAM accuracy over `episodes` 5-way episodes (1 query per class). `features (V, T, D)`."""
    if head is not None:
        head.eval()
        features = torch.cat([head(features[i:i + 1024]) for i in range(0, len(features), 1024)])
    sampler = EpisodeSampler(labels, EpisodeSpec(way=5, shot=shot, queries=1), seed=seed)
    correct, per_class = [], {}
    for start in range(0, episodes, 250):
        b = sampler.batch(start, min(250, episodes - start))
        support = features[b.support].mean(2)  # (E, N, T, D): prototypes
        query = features[b.query]  # (E, M, T, D)
        pred = otam_distance(query, support).argmin(-1)  # (E, M)
        hit = (pred == b.query_labels).float()
        correct.append(hit.mean(1))
        true_class = torch.gather(b.classes, 1, b.query_labels)
        for c, h in zip(true_class.flatten().tolist(), hit.flatten().tolist()):
            per_class.setdefault(c, []).append(h)
    acc = torch.cat(correct).numpy() * 100
    return {"accuracy": float(acc.mean()), "ci95": float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))),
            "per_class": {int(c): float(np.mean(h) * 100) for c, h in sorted(per_class.items())}}


class TemporalHead(nn.Module):
    """A quick check head: residual conv1d over time, then one self-attention block; `(B, T, D) -> (B, T, D)`."""

    def __init__(self, dim: int, frames: int = FRAMES, heads: int = 4):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv1d(dim, dim, 3, padding=1))
        self.pos = nn.Parameter(torch.zeros(1, frames, dim))
        self.block = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        return self.block(x + self.pos)


def train_head(features: torch.Tensor, labels: np.ndarray, steps: int, seed: int, val: tuple | None = None,
               log: bool = True) -> nn.Module:
    """Episodic training on `features (V, views, T, D)`: 5-way 1-shot, 5 queries per class, 4 episodes per step.

    With `val = (features (V, T, D), labels)`, 1-shot accuracy on 500 val episodes is checked every 100 steps and the
    best state is returned (model selection on val, never on test).
    """
    torch.manual_seed(seed)
    head = TemporalHead(features.shape[-1])
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    sampler = EpisodeSampler(labels, EpisodeSpec(way=5, shot=1, queries=5), seed=seed + 1000,
                             views=features.shape[1])
    losses, best = [], (-1.0, 0, None)
    for step in range(steps):
        head.train()
        b = sampler.batch(step * 4, 4)
        e, n, k = b.support.shape
        sup = head(features[b.support.flatten(), b.support_views.flatten()]).view(e, n, k, FRAMES, -1).mean(2)
        qry = head(features[b.query.flatten(), b.query_views.flatten()]).view(e, -1, FRAMES, sup.shape[-1])
        logits = -otam_distance(qry, sup)  # (E, M, N)
        loss = F.cross_entropy(logits.flatten(0, 1), b.query_labels.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if val is not None and (step + 1) % 100 == 0:
            acc = evaluate(val[0], val[1], 1, 500, seed=seed + 2000, head=head)["accuracy"]
            if acc > best[0]:
                best = (acc, step + 1, {k: v.clone() for k, v in head.state_dict().items()})
            if log:
                print(f"    head step {step + 1:5d}  loss {np.mean(losses[-100:]):.3f}  val 1-shot {acc:.1f}", flush=True)
        elif log and val is None and (step + 1) % max(1, steps // 8) == 0:
            print(f"    head step {step + 1:5d}  loss {np.mean(losses[-50:]):.3f}", flush=True)
    if best[2] is not None:
        head.load_state_dict(best[2])
        if log:
            print(f"    kept step {best[1]} (val 1-shot {best[0]:.1f})", flush=True)
    return head


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="toy data seeds")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--videos-per-class", type=int, default=ToyConfig().videos_per_class)
    parser.add_argument("--weights", type=Path, default=TINY_WEIGHTS, help="tiny weights; 'none' for random init")
    parser.add_argument("--data", type=Path, default=REPO / "cache" / "toy_baseline", help="where toy sets are made")
    parser.add_argument("--head", action="store_true", help="also train and evaluate a quick temporal head")
    parser.add_argument("--head-steps", type=int, default=1500)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    weights = None if str(args.weights) == "none" else args.weights
    model, pre = load_tiny(weights)
    results = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        config = ToyConfig(seed=seed, videos_per_class=args.videos_per_class)
        root = generate_toy(args.data / f"seed{seed}-v{args.videos_per_class}", config, progress=False)
        t_gen = time.perf_counter() - t0
        test, test_labels = split_features(model, pre, root, "test", config)
        test = torch.from_numpy(test[:, 0])
        r = {"generate_s": round(t_gen, 1), "cosine": mean_cross_video_cosine(test.numpy(), seed=seed)}
        for shot in (1, 5):
            r[f"otam_{shot}shot"] = evaluate(test, test_labels, shot, args.episodes, seed=seed)
        line = (f"seed {seed}: cosine {r['cosine']:.3f}  OTAM 1-shot {r['otam_1shot']['accuracy']:.1f} ± "
                f"{r['otam_1shot']['ci95']:.1f}  5-shot {r['otam_5shot']['accuracy']:.1f} ± {r['otam_5shot']['ci95']:.1f}")
        print(line, flush=True)
        if args.head:
            t1 = time.perf_counter()
            train, train_labels = split_features(model, pre, root, "train", config, views=2, seed=seed)
            val, val_labels = split_features(model, pre, root, "val", config)
            head = train_head(torch.from_numpy(train), train_labels, args.head_steps, seed,
                              val=(torch.from_numpy(val[:, 0]), val_labels))
            r["head_train_s"] = round(time.perf_counter() - t1, 1)
            for shot in (1, 5):
                r[f"head_{shot}shot"] = evaluate(test, test_labels, shot, args.episodes, seed=seed, head=head)
            print(f"seed {seed}: head 1-shot {r['head_1shot']['accuracy']:.1f} ± {r['head_1shot']['ci95']:.1f}  "
                  f"5-shot {r['head_5shot']['accuracy']:.1f} ± {r['head_5shot']['ci95']:.1f}  "
                  f"({r['head_train_s']:.0f} s)", flush=True)
        names = SPLIT_CLASSES["test"]
        for key in [k for k in r if k.endswith("1shot")]:
            print(f"  {key} per class: " + ", ".join(f"{names[c]} {a:.0f}" for c, a in r[key]["per_class"].items()))
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results[seed] = r
    for key in [k for k in results[args.seeds[0]] if k.endswith("shot")]:
        accs = [results[s][key]["accuracy"] for s in args.seeds]
        print(f"{key}: " + "  ".join(f"{a:.1f}" for a in accs) + f"   mean {np.mean(accs):.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
