"""Stage one with the authors' choices (`--frame-sampling reference --normalize none --crop reference`, or
`--preset reference`): recorded in the store identity, honoured by everything that re-creates a store's frames
(e2e decoding, predict, e2e re-extraction), never mixed with a store made the other way."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MICRO_CONFIG
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.features.extract import run_extract
from mdmf.pipeline.features.recipe import ExtractConfig
from mdmf.pipeline.features.store import FeatureStore

REFERENCE = dict(frame_sampling="reference", normalize="none", crop="reference")
REPO = Path(__file__).resolve().parents[1]


def config(root, splits_dir, out, **kw):
    base = dict(dataset="small", root=str(root), splits_dir=str(splits_dir), out=str(out), backbone=str(MICRO_CONFIG),
                weights="random", train_views=2, chunk_videos=4, workers=0, progress=False)
    return ExtractConfig(**{**base, **kw})


def linspace_by_hand(start: int, end: int, t: int = 8) -> list[int]:
    return [start + (i * (end - start)) // (t - 1) for i in range(t)]


@pytest.fixture(scope="module")
def no_flip(small_dataset, tmp_path_factory):
    """The small dataset with flipping off in its info.json, as for SSv2."""
    root, splits = small_dataset
    copy = tmp_path_factory.mktemp("no_flip") / "splits"
    shutil.copytree(splits, copy)
    info = json.loads((copy / "info.json").read_text())
    (copy / "info.json").write_text(json.dumps({**info, "flip": False}))
    return root, copy


@pytest.fixture(scope="module")
def ref_store(no_flip, micro_backbone, tmp_path_factory):
    root, splits = no_flip
    out = tmp_path_factory.mktemp("ref") / "store"
    run_extract(config(root, splits, out, save_frames=True, splits=("train", "test"), **REFERENCE),
                backbone=micro_backbone)
    return FeatureStore.open(out)


def test_reference_store_records_its_settings_and_holds_the_authors_frames(ref_store, micro_backbone):
    ident = ref_store.meta["identity"]
    assert {k: ident[k] for k in REFERENCE} == REFERENCE
    assert ident["flip"] is True  # the authors flip on every dataset, SSv2 too
    assert ident["sampling"].startswith("reference")
    assert {k: ref_store.meta["config"][k] for k in REFERENCE} == REFERENCE
    test, train = ref_store.load("test"), ref_store.load("train")
    for row, vid in enumerate(test.video_ids):
        n = 24 + int(vid.rsplit("_", 1)[1])
        assert test.frame_indices[row, 0].tolist() == linspace_by_hand(1, n - 2)  # test: linspace(1, n-2, 8)
    for row, vid in enumerate(train.video_ids):
        n = 24 + int(vid.rsplit("_", 1)[1])
        pad = 5  # int(min(5, (n - 8) / 2)) for n >= 18
        for v in range(2):
            idx = train.frame_indices[row, v].tolist()
            assert 0 <= idx[0] <= pad and n - 1 - pad <= idx[-1] <= n - 1
            assert idx == linspace_by_hand(idx[0], idx[-1])
    # the features are CLIP of the stored crops in [0, 1], no mean/std
    frames = ref_store.group("test")["frames"][:2, 0]  # (2, T, S, S, 3) uint8
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).reshape(-1, 3, 32, 32).float() / 255
    with torch.no_grad():
        want = micro_backbone.encode_images(x).float().reshape(2, 8, -1)
        other = micro_backbone.encode_images(micro_backbone_normalized(micro_backbone, x)).float().reshape(2, 8, -1)
    got = torch.as_tensor(test.features[:2, 0]).float()
    torch.testing.assert_close(got, want, rtol=1e-2, atol=2e-3)
    assert (got - other).abs().max() > 1e-2


def micro_backbone_normalized(backbone, x):
    mean = torch.tensor(backbone.mean).view(3, 1, 1)
    std = torch.tensor(backbone.std).view(3, 1, 1)
    return (x - mean) / std


def test_decoding_and_predict_use_the_stores_settings(ref_store, micro_backbone):
    from mdmf.visual_encoder import VisualEncoder
    from mdmf.pipeline.features.recipe import extract_config_of, frame_source, preprocessor_of, split_videos
    from mdmf.pipeline.features.recipe import EncodeRecipe
    from mdmf.pipeline.features.video_encoder import VideoEncoder

    ecfg = extract_config_of(ref_store)
    pre = preprocessor_of(ref_store, ecfg)
    assert (pre.crop_mode, pre.normalization) == ("reference", "none")
    for split in ("train", "test"):
        data = ref_store.load(split)
        videos = split_videos(ref_store, split, data, None, ecfg)
        decoded, _ = frame_source(ref_store, ecfg, pre, "decode", videos=[videos])
        stored, _ = frame_source(ref_store, ecfg, pre, "store", videos=[videos])
        for i in range(0, len(videos.video_ids), 2):
            for view in range(ref_store.views(split)):
                torch.testing.assert_close(decoded.read(videos, i, view), stored.read(videos, i, view), rtol=0, atol=0)
    visual = VisualEncoder(micro_backbone.model.visual, pre).eval()  # e2e's encoder: the store's normalisation too
    test = ref_store.load("test")
    with torch.no_grad():
        feats = visual(torch.from_numpy(ref_store.group("test")["frames"][:3, 0]).permute(0, 1, 4, 2, 3))
    torch.testing.assert_close(feats, torch.as_tensor(test.features[:3, 0]).float(), rtol=0, atol=2e-3)
    encoder = VideoEncoder(EncodeRecipe.from_store(ref_store), backbone=micro_backbone)
    assert encoder.describe()["frame_sampling"] == "reference" and encoder.pre.normalization == "none"
    test = ref_store.load("test")
    paths = [Path(p) for p in ref_store.strings("test", "paths")]
    crops, idx = encoder.crops(paths[0])
    assert idx.tolist() == test.frame_indices[0, 0].tolist()
    np.testing.assert_array_equal(crops.permute(0, 2, 3, 1).numpy(), ref_store.group("test")["frames"][0, 0])
    torch.testing.assert_close(encoder.encode_videos(paths[:3]), torch.as_tensor(test.features[:3, 0]).float(),
                               rtol=0, atol=2e-3)


def test_e2e_reextraction_passes_the_base_stores_settings(ref_store, monkeypatch, tmp_path):
    import mdmf.pipeline.apps.e2e_eval as ee
    from mdmf.pipeline.runs import RunDir

    seen = {}

    class Stop(Exception):
        pass

    def fake_extract(cfg):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(RunDir, "best_state", lambda self: {})
    monkeypatch.setattr(ee, "_check_run", lambda run, state: ref_store)
    monkeypatch.setattr(ee, "run_weights_sha256", lambda run: "0" * 64)
    monkeypatch.setattr(ee, "run_extract", fake_extract)
    with pytest.raises(Stop):
        ee.extract_run_store(tmp_path / "run", "test")
    assert {k: getattr(seen["cfg"], k) for k in REFERENCE} == REFERENCE


@pytest.mark.parametrize("field,value", [("frame_sampling", "reference"), ("normalize", "none"), ("crop", "reference")])
def test_a_resume_with_other_settings_fails_naming_the_setting(small_dataset, micro_backbone, tmp_path, field, value):
    root, splits = small_dataset
    run_extract(config(root, splits, tmp_path / "s", splits=("val",), **{field: value}), backbone=micro_backbone)
    with pytest.raises(MdmfError, match=f"made with {field}={value!r}, the command asks for {field}=") as err:
        run_extract(config(root, splits, tmp_path / "s", splits=("val",)), backbone=micro_backbone)
    assert "\n" not in str(err.value) and "--out" in str(err.value)
    again = run_extract(config(root, splits, tmp_path / "s", splits=("val",), **{field: value}), backbone=micro_backbone)
    assert again.videos_done == 0


def test_a_store_made_before_these_settings_opens_as_tsn_clip_tsn(small_dataset, micro_backbone, tmp_path):
    import zarr

    root, splits = small_dataset
    out = tmp_path / "old"
    run_extract(config(root, splits, out, splits=("val",)), backbone=micro_backbone)
    group = zarr.open_group(str(out), mode="r+")
    attrs = dict(group.attrs["mdmf"])
    attrs["identity"] = {k: v for k, v in attrs["identity"].items() if k not in REFERENCE}
    attrs["config"] = {k: v for k, v in attrs["config"].items() if k not in REFERENCE}
    group.attrs["mdmf"] = attrs  # as an older mdmf wrote it
    old = FeatureStore.open(out)
    assert {k: old.meta["identity"][k] for k in REFERENCE} == {"frame_sampling": "tsn", "normalize": "clip",
                                                               "crop": "tsn"}
    from mdmf.pipeline.features.recipe import extract_config_of

    assert extract_config_of(old).frame_sampling == "tsn"
    assert run_extract(config(root, splits, out, splits=("val",)), backbone=micro_backbone).videos_done == 0
    with pytest.raises(MdmfError, match="made with normalize='clip', the command asks for normalize='none'"):
        run_extract(config(root, splits, out, splits=("val",), normalize="none"), backbone=micro_backbone)


def test_bad_values_are_one_line_errors():
    with pytest.raises(MdmfError, match="--frame-sampling 'uniform': use one of tsn, reference"):
        ExtractConfig(dataset="toy", root=None, frame_sampling="uniform")
    with pytest.raises(MdmfError, match="--normalize"):
        ExtractConfig(dataset="toy", root=None, normalize="imagenet")


def test_preset_reference_through_the_cli(small_dataset, tmp_path):
    root, splits = small_dataset

    def extract(out, *extra):
        args = [sys.executable, "-m", "mdmf", "extract", "--dataset", "small", "--root", str(root), "--splits",
                str(splits), "--out", str(out), "--backbone", str(MICRO_CONFIG), "--weights", "random",
                "--split", "val", "--workers", "0", "--quiet", *extra]
        return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)

    done = extract(tmp_path / "ref", "--preset", "reference")
    assert done.returncode == 0, done.stderr
    ident = FeatureStore.open(tmp_path / "ref").meta["identity"]
    assert {k: ident[k] for k in REFERENCE} == REFERENCE
    mixed = extract(tmp_path / "mixed", "--preset", "reference", "--crop", "tsn")  # a flag given overrides the preset
    assert mixed.returncode == 0, mixed.stderr
    ident = FeatureStore.open(tmp_path / "mixed").meta["identity"]
    assert (ident["frame_sampling"], ident["normalize"], ident["crop"]) == ("reference", "none", "tsn")
    plain = extract(tmp_path / "ref")  # resuming without the preset: the defaults differ from the store
    assert plain.returncode == 2 and "made with crop='reference'" in plain.stderr and "Traceback" not in plain.stderr
    flags = extract(tmp_path / "flags", "--frame-sampling", "reference", "--normalize", "none", "--crop", "reference")
    assert flags.returncode == 0, flags.stderr
    a, b = FeatureStore.open(tmp_path / "ref"), FeatureStore.open(tmp_path / "flags")
    np.testing.assert_array_equal(a.load("val").features, b.load("val").features)
    unknown = extract(tmp_path / "x", "--preset", "nope")
    assert unknown.returncode == 2 and "reference" in unknown.stderr
