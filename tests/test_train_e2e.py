"""Stage two end to end on a micro open_clip ViT and generated videos: frames, training, resume, DDP, evaluation."""

import json
import zlib
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import MICRO_CONFIG
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.train.loop import TrainConfig, train

MICRO_RN = Path(__file__).parent / "assets" / "mdmf-micro-rn.json"
REPO = Path(__file__).resolve().parents[1]
HEADS = {"name": "mdmf", "heads": 4, "mlp_dim": 32}
# the train classes are three close shades of red (random features barely tell them apart: the CE starts high)
COLOURS = [(200, 40, 40), (170, 60, 40), (200, 40, 90), (230, 210, 40), (200, 60, 220), (40, 210, 220)]


def write_clip(path: Path, colour, direction: str, seed: int, frames: int = 16, size: int = 64) -> None:
    """A square of the class colour moving (r)ight, (l)eft, (d)own or (u)p on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=16)
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "2"}
        for t in range(frames):
            img = rng.integers(0, 30, (size, size, 3)).astype(np.uint8)
            along = int((t if direction in "rd" else frames - 1 - t) / (frames - 1) * (size - 24))
            across = 12 + int(rng.integers(0, 16))
            x, y = (along, across) if direction in "rl" else (across, along)
            img[y : y + 24, x : x + 24] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(root, splits): 3 train classes × 3 videos (every episode sees the same videos), 3 val and 3 test classes."""
    base = tmp_path_factory.mktemp("e2e_data")
    root, splits = base / "videos", base / "splits"
    splits.mkdir(parents=True)
    layout = {"train": [(0, "r"), (1, "r"), (2, "r")], "val": [(3, "r"), (4, "l"), (5, "u")],
              "test": [(1, "u"), (1, "r"), (2, "l")]}
    for split, classes in layout.items():
        names, lines = [], []
        for colour, direction in classes:
            name = f"c{colour}{direction}_{split}"
            names.append(name)
            for j in range(3):
                write_clip(root / name / f"{name}_{j}.mp4", COLOURS[colour], direction, seed=zlib.crc32(f"{split}{name}{j}".encode()))
                lines.append(f"{name}\t{name}_{j}")
        (splits / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{split}_classes.txt").write_text("\n".join(names) + "\n")
    (splits / "info.json").write_text(json.dumps({"name": "e2e", "layout": "class_folders", "flip": True,
                                                  "extensions": ["mp4"], "source": "tests/test_train_e2e.py"}))
    return root, splits


def extract(dataset, out, backbone=MICRO_CONFIG, save_frames=True):
    from mdmf.pipeline.features.extract import run_extract
    from mdmf.pipeline.features.recipe import ExtractConfig

    root, splits = dataset
    run_extract(ExtractConfig(dataset="e2e", root=str(root), splits_dir=str(splits), out=str(out),
                              backbone=str(backbone), weights="random", train_views=2, chunk_videos=4,
                              save_frames=save_frames, workers=0, progress=False))
    return FeatureStore.open(out)


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory):
    return extract(dataset, tmp_path_factory.mktemp("e2e_store") / "store")


def config(store, run_dir, **kw):
    e2e = {"workers": 0, "backbone_lr": 1e-3, **kw.pop("e2e", {})}
    base = dict(stage="e2e", store=str(store.path), run_dir=str(run_dir), model=HEADS, way=3, shot=1, queries=2,
                steps=4, episodes_per_step=2, batch_episodes=1, lr=1e-3, val_every=2, val_episodes=30,
                progress=False, device="cpu", e2e=e2e)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A short e2e run; the text encoder must never be called while it trains."""
    from mdmf.pipeline.features.backbones import Backbone

    run = tmp_path_factory.mktemp("e2e_runs") / "run"
    prompts = store.group("train")["prompt_embeddings"][:]

    def no_text(*args, **kw):
        raise AssertionError("the text encoder ran during e2e training")

    original, Backbone.encode_text = Backbone.encode_text, no_text
    try:
        train(config(store, run, steps=32, episodes_per_step=2, val_every=16, e2e={"backbone_lr": 3e-4}, lr=3e-4))
    finally:
        Backbone.encode_text = original
    np.testing.assert_array_equal(prompts, store.group("train")["prompt_embeddings"][:])
    return run


def test_decoding_gives_the_frame_store_and_the_encoder_gives_stage_one_features(store):
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone
    from mdmf.visual_encoder import VisualEncoder
    from mdmf.pipeline.features.recipe import extract_config_of, frame_source, preprocessor_of, split_videos

    ecfg = extract_config_of(store)
    pre = preprocessor_of(store, ecfg)
    backbone = load_backbone(resolve_backbone(str(MICRO_CONFIG), "random"))
    encoder = VisualEncoder(backbone.model.visual, pre).eval()
    for split in ("train", "test"):
        data = store.load(split)
        videos = split_videos(store, split, data, None, ecfg)
        assert len(videos.video_ids) == 9
        decoded, kind_d = frame_source(store, ecfg, pre, "decode", videos=[videos])
        stored, kind_s = frame_source(store, ecfg, pre, "auto", videos=[videos])
        assert (kind_d, kind_s) == ("decode", "store")
        for i in range(0, len(videos.video_ids), 2):
            for view in range(store.views(split)):
                crops = decoded.read(videos, i, view)
                torch.testing.assert_close(crops, stored.read(videos, i, view), rtol=0, atol=0)
                with torch.no_grad():
                    feats = encoder(crops[None])[0]
                torch.testing.assert_close(feats.half().float(), torch.as_tensor(data.features[i, view]).float(),
                                           rtol=1e-2, atol=1e-3)


def test_e2e_trains_the_backbone_lowers_the_loss_and_leaves_the_text_alone(store, trained):
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone

    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    ce = [x["ce"] for x in lines if "loss" in x]
    assert len(ce) == 32 and [x["step"] for x in lines if "val_accuracy" in x] == [16, 32]
    # Mean CE of the last 8 steps against the first 8 (2 episodes a step: single steps are noisy). Measured on seeds
    # 0-5: drops of 0.26-0.59 (seed 0: 0.84 -> 0.45); 16 steps had dropped by as little as 0.0 on one seed.
    assert np.mean(ce[-8:]) < np.mean(ce[:8]) - 0.15, ce
    assert {p.name for p in trained.iterdir()} >= {"config.json", "metrics.jsonl", "last.pt", "best.pt", "visual.pt",
                                                    "mdmf-micro.json"}
    start = load_backbone(resolve_backbone(str(MICRO_CONFIG), "random")).model.visual.state_dict()
    tuned = torch.load(trained / "visual.pt", weights_only=False)["visual"]
    assert set(tuned) == set(start)
    assert sum(not torch.equal(start[k], tuned[k]) for k in start) > len(start) // 2  # the backbone moved
    assert json.loads((trained / "config.json").read_text())["train"]["e2e"]["backbone_lr"] == 3e-4


def test_resume_continues_the_same_run(store, tmp_path):
    train(config(store, tmp_path / "straight"))
    train(config(store, tmp_path / "split", steps=2))
    train(config(store, tmp_path / "split", lr=5.0), resume=True, steps=4)  # saved config used; steps extended
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert b["step"] == 4
    for part in ("model", "visual"):
        for key, value in a[part].items():
            torch.testing.assert_close(value, b[part][key], rtol=0, atol=0, msg=f"{part}.{key}")
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"}  # noqa: E731
                       for x in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "straight") == strip(tmp_path / "split")


def test_two_processes_compute_the_update_of_one(store, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo) through the CLI: each rank one episode of the step, gradients averaged.

    Compared after one optimizer step: Adam's first moment (the averaged gradient) and the parameters. Adam's first
    step is ±lr wherever the gradient is not ~0, so parameters whose gradient is rounding noise (attention key biases
    get exactly zero gradient in exact arithmetic) may move differently; those are left out of the parameter check."""
    import os

    # The tolerances below are float32 reduction-order noise for gradients of the mean CE; the summed CE (the
    # default) scales every gradient by the episode's query count, and that noise with it.
    train(config(store, tmp_path / "one", steps=1, val_every=1, model={**HEADS, "ce_reduction": "mean"}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mdmf",
           "train", "--stage", "e2e", "--cache", str(store.path), "--runs", str(tmp_path), "--name", "two",
           "--set", "heads=4", "--set", "mlp_dim=32", "--set", "ce_reduction=mean", "--way", "3", "--shot", "1", "--queries", "2", "--steps", "1",
           "--episodes-per-step", "2", "--batch-episodes", "1", "--lr", "1e-3", "--backbone-lr", "1e-3",
           "--val-every", "1", "--val-episodes", "30", "--workers", "0", "--device", "cpu", "--quiet", "--tracker", "csv"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    grads_a = [s["exp_avg"] / 0.1 for s in a["optimizer"]["state"].values()]  # (1 - beta1) * gradient
    grads_b = [s["exp_avg"] / 0.1 for s in b["optimizer"]["state"].values()]
    assert len(grads_a) == len(grads_b) > 60
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)
    checked = 0
    for ga, (group, name) in zip(grads_a, _param_names(a)):
        clear = ga.abs() > 1e-4
        torch.testing.assert_close(b[group][name][clear], a[group][name][clear], rtol=0, atol=1e-6, msg=name)
        checked += int(clear.sum())
    assert checked > 0.8 * sum(g.numel() for g in grads_a)  # measured: 87 % of the elements
    la = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    x, y = json.loads(la[0]), json.loads(lb[0])
    assert list(x) == list(y) and x["train_accuracy"] == y["train_accuracy"]
    assert all(abs(x[k] - y[k]) < 1e-5 for k in x if k not in ("seconds", "step", "episodes"))
    import csv

    for kind in ("train", "val"):  # --log csv (--tracker: torchrun's parser takes --log for its --log-dir): rank 0
        # alone writes the rows of metrics.jsonl, once
        with open(tmp_path / "two" / f"{kind}.csv", newline="") as f:
            got = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        want = [{k: float(v) for k, v in json.loads(line).items()} for line in lb
                if ("val_accuracy" in line) == (kind == "val")]
        assert got == want and len(got) == 1, kind


def _param_names(state: dict) -> list[tuple[str, str]]:
    """(part, name) of the optimizer's parameters, in its order: the heads' trainable ones, then the encoder's."""
    from mdmf.config import ModelConfig
    from mdmf.registry import build_model
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone

    heads = build_model(ModelConfig.from_dict(state["model_config"]))
    visual = load_backbone(resolve_backbone(str(MICRO_CONFIG), "random")).model.visual
    return ([("model", n) for n, p in heads.named_parameters() if p.requires_grad]
            + [("visual", n) for n, p in visual.named_parameters() if p.requires_grad])


def test_cached_eval_and_from_frames_eval_agree(store, trained):
    from mdmf.pipeline.apps.e2e_eval import evaluate_run_cached, evaluate_run_from_frames, extract_run_store, run_weights_sha256
    from mdmf.pipeline.evaluate.episodic import EvalConfig

    cfg = EvalConfig(way=3, shot=1, episodes=300, batch_episodes=100, progress=False)
    cached = evaluate_run_cached(trained, "test", cfg, workers=0)
    frames = evaluate_run_from_frames(trained, "test", cfg, workers=0)
    assert cached.accuracy == frames.accuracy and cached.per_class == frames.per_class
    tuned = extract_run_store(trained, "test", workers=0)  # reused, not extracted again
    assert tuned.path.name == f"test-{run_weights_sha256(trained)[:12]}"
    assert tuned.meta["identity"]["weights_sha256"] == run_weights_sha256(trained)
    assert tuned.meta["identity"]["weights_sha256"] != store.meta["identity"]["weights_sha256"]
    np.testing.assert_array_equal(tuned.load("test").prompt_embeddings, store.load("test").prompt_embeddings)
    assert not np.allclose(tuned.load("test").features, store.load("test").features, atol=1e-2)


def test_a_run_folder_is_a_weights_choice(store, trained):
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone, run_backbone
    from mdmf.pipeline.features.recipe import ExtractConfig

    assert run_backbone(str(trained)) == str(trained / "mdmf-micro.json") and run_backbone("random") is None
    spec = resolve_backbone(str(MICRO_CONFIG), str(trained))
    loaded = load_backbone(spec).model.visual.state_dict()
    tuned = torch.load(trained / "visual.pt", weights_only=False)["visual"]
    for key, value in tuned.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    cfg = ExtractConfig(dataset="e2e", root="x", weights=str(trained))
    assert cfg.resolved_backbone() == str(trained / "mdmf-micro.json")
    assert cfg.store_path() == Path("cache") / "e2e" / f"mdmf-micro-{trained.name}"
    with pytest.raises(MdmfError, match="fine-tuned mdmf-micro"):
        resolve_backbone("RN50", str(trained))


def test_store_and_request_mismatches_fail_before_training(store, dataset, tmp_path):
    import open_clip

    with pytest.raises(MdmfError, match="--frames 4"):
        train(config(store, tmp_path / "a", e2e={"frames": 4}))
    with pytest.raises(MdmfError, match="--backbone ViT-B-16"):
        train(config(store, tmp_path / "b", e2e={"backbone": "ViT-B-16"}))
    with torch.random.fork_rng():
        torch.manual_seed(123)
        other = open_clip.create_model("mdmf-micro", pretrained=None)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(MdmfError, match="not the weights the store"):
        train(config(store, tmp_path / "c", e2e={"weights": str(tmp_path / "other.pt")}))
    with pytest.raises(MdmfError, match="fresh"):
        train(config(store, tmp_path / "d", e2e={"frames_from": "store", "augment": "fresh"}))
    bare = extract(dataset, tmp_path / "bare", save_frames=False)
    with pytest.raises(MdmfError, match="no frame store"):
        train(config(bare, tmp_path / "e", e2e={"frames_from": "store"}))
    (tmp_path / "moved").mkdir()
    with pytest.raises(MdmfError, match="not where the store says"):
        train(config(bare, tmp_path / "f", e2e={"root": str(tmp_path / "moved")}))
    assert not any((tmp_path / r / "config.json").exists() for r in "abcdef")


def test_fresh_augmentation_is_a_function_of_seed_episode_and_video(store):
    from mdmf.pipeline.features.recipe import extract_config_of, preprocessor_of, split_videos
    from mdmf.pipeline.features.frames import DecodedFrames

    ecfg = extract_config_of(store)
    pre = preprocessor_of(store, ecfg)
    videos = split_videos(store, "train", store.load("train"), None, ecfg)
    fresh = DecodedFrames(8, pre, ecfg.seed, True, "fresh", train_seed=5)
    a, b, c = fresh.read(videos, 0, 0, episode=7), fresh.read(videos, 0, 1, episode=7), fresh.read(videos, 0, 0, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("config_file", [MICRO_CONFIG, MICRO_RN])
def test_checkpointing_gives_the_same_gradients_and_bn_stays_frozen(config_file):
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone
    from mdmf.visual_encoder import VisualEncoder
    from mdmf.pipeline.data.transforms import FramePreprocessor

    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    grads, stats = [], []
    for ckpt in (False, True):
        b = load_backbone(resolve_backbone(str(config_file), "random"))
        enc = VisualEncoder(b.model.visual, FramePreprocessor(32, b.mean, b.std), grad_checkpointing=ckpt).train()
        before = {k: v.clone() for k, v in enc.state_dict().items() if "running" in k}
        enc(frames).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters()})
        stats.append(all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items()))
    assert all(stats)  # frozen BN: CLIP's statistics untouched by training forwards
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    if config_file == MICRO_RN:
        b = load_backbone(resolve_backbone(str(config_file), "random"))
        enc = VisualEncoder(b.model.visual, FramePreprocessor(32, b.mean, b.std), bn="train").train()
        before = enc.visual.bn1.running_mean.clone()
        enc(frames)
        assert not torch.equal(before, enc.visual.bn1.running_mean)


def test_eval_of_an_e2e_run_reads_best_pt_once(trained, monkeypatch):
    """`mdmf eval --run <e2e run>`: the request, the re-extraction and the evaluation share one read of best.pt."""
    import mdmf.pipeline.runs as runs
    from mdmf.pipeline.apps.evaluate_run import EvalRequest, evaluate_request

    reads, real = [], runs.load_checkpoint
    monkeypatch.setattr(runs, "load_checkpoint", lambda path: reads.append(path) or real(path))
    for from_frames in (False, True):
        reads.clear()
        result, out, title = evaluate_request(EvalRequest(run=str(trained), way=3, episodes=50, batch_episodes=50,
                                                          workers=0, from_frames=from_frames, device="cpu",
                                                          progress=False))
        assert reads == [trained / "best.pt"] and out == runs.RunDir(trained).eval_path("test", 3, 1, 0, from_frames)
        assert title.endswith("e2e) on test") and out.is_file()


def _group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `pgid`, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


def test_sigterm_to_the_job_stops_e2e_training_with_decode_workers_and_resume_finishes(store, tmp_path):
    """What Slurm does at the end of a job's time: SIGTERM to every process of the job (the process group), here an
    e2e run decoding frames in 2 worker processes. The workers ignore it, the trainer finishes its optimizer step,
    saves last.pt and exits 143 with one resume line, and no worker is left behind; --resume then completes the run
    with every step logged once."""
    import os
    import signal
    import time

    cmd = [sys.executable, "-m", "mdmf", "train", "--stage", "e2e", "--cache", str(store.path), "--runs",
           str(tmp_path), "--name", "cut", "--set", "heads=4", "--set", "mlp_dim=32", "--way", "3", "--shot", "1",
           "--queries", "2", "--episodes-per-step", "2", "--batch-episodes", "1", "--val-every", "1000",
           "--val-episodes", "30", "--frames-from", "decode", "--workers", "2", "--device", "cpu", "--threads", "1",
           "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "--steps", "400"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)  # its own group, as a batch job has
    metrics, deadline = tmp_path / "cut" / "metrics.jsonl", time.time() + 180
    while (not metrics.is_file() or len(metrics.read_text().splitlines()) < 2) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert len(_group_members(proc.pid)) >= 3  # the trainer and its 2 decode workers
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    told = [line for line in err.splitlines() if "run the same command again with --resume" in line]
    assert len(told) == 1 and "interrupted by SIGTERM" in told[0] and "Traceback" not in err, err[-3000:]
    deadline = time.time() + 10
    while _group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == []  # no decode worker outlives the job
    stopped = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"]
    assert 2 <= stopped < 400

    final = stopped + 2
    done = subprocess.run([*cmd, "--steps", str(final), "--resume"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if "loss" in x]
    assert steps == list(range(1, final + 1))
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == final
