"""The crop geometry and pixel normalisation choices of `FramePreprocessor` (tsn / reference, clip / none)."""

import numpy as np
import pytest
import torch
from PIL import Image

from mdmf.pipeline.data.decode import open_video, read_frames
from mdmf.pipeline.data.transforms import FramePreprocessor, ViewAugment
from videogen import write_video

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def reference(size=224, **kw):
    return FramePreprocessor(size, CLIP_MEAN, CLIP_STD, crop_mode="reference", **kw)


def test_normalize_none_keeps_a_decoded_clip_in_0_1(tmp_path):
    reader = open_video(write_video(tmp_path / "v.mp4", 20, height=48, width=80))
    frames = read_frames(reader, np.arange(0, 20, 3))
    crops = FramePreprocessor(32, CLIP_MEAN, CLIP_STD, normalization="none").crop(frames, ViewAugment())
    x = FramePreprocessor(32, CLIP_MEAN, CLIP_STD, normalization="none").normalize(crops)
    assert x.dtype == torch.float32 and x.shape == (7, 3, 32, 32)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.min()) < 0.1 and float(x.max()) > 0.9  # the clip spans the range: no mean/std applied
    torch.testing.assert_close(x, crops.double().div(255).float(), rtol=0, atol=1e-7)
    clip = FramePreprocessor(32, CLIP_MEAN, CLIP_STD).normalize(crops)  # the default: the model's mean/std
    assert float(clip.min()) < -1.0
    with pytest.raises(ValueError, match="clip, none"):
        FramePreprocessor(32, CLIP_MEAN, CLIP_STD, normalization="imagenet")


def test_reference_resize_is_the_authors_short_side_256():
    pre = reference()
    assert pre.resize_to == 256
    assert pre.resized_size(240, 320) == (256, 341)  # long side int(256 · 320 / 240) = int(341.33)
    assert pre.resized_size(320, 240) == (341, 256)
    assert pre.resized_size(240, 426) == (256, 454)  # int(454.4); the tsn resize rounds the same way here
    assert pre.resized_size(100, 179) == (256, 458)  # int(458.24) (upsampled, as their Resize does)
    assert pre.resized_size(480, 854) == (256, 455)  # int(455.47): truncated, where tsn rounds to 455 too
    assert pre.resized_size(480, 862) == (256, 459)  # int(459.73): tsn would round to 460
    assert FramePreprocessor(224, CLIP_MEAN, CLIP_STD).resized_size(480, 862) == (256, 460)
    assert pre.resized_size(256, 300) == (256, 300)  # short side already 256: no resize
    assert reference(size=32).resize_to == 37  # other image sizes: 256 scaled by S/224, round(32 · 256/224)


def test_reference_windows_are_centre_crop_at_test_and_uniform_integers_at_train():
    pre = reference()
    # CenterCrop(224) of 256 × 341: top (256-224)/2 = 16, left int(round(117/2)) = round(58.5) = 58 (halves to even)
    assert pre.window(256, 341, ViewAugment()) == (16, 58)
    assert pre.window(341, 256, ViewAugment()) == (58, 16)
    assert pre.window(256, 343, ViewAugment()) == (16, 60)  # round(59.5) = 60
    # RandomCrop: offsets uniform on 0..H-S and 0..W-S, both ends included
    assert pre.window(256, 341, ViewAugment(0.0, 0.0, drawn=True)) == (0, 0)
    assert pre.window(256, 341, ViewAugment(0.99999, 0.99999, drawn=True)) == (32, 117)
    rng = np.random.default_rng(0)
    lefts = np.array([pre.window(256, 341, ViewAugment.random(rng, True))[1] for _ in range(12000)])
    counts = np.bincount(lefts, minlength=118)
    assert counts.shape == (118,) and counts.min() > 0.6 * counts.mean()  # the ends as likely as the middle
    tsn = FramePreprocessor(224, CLIP_MEAN, CLIP_STD)
    assert tsn.window(256, 341, ViewAugment(0.5, 0.5, drawn=True)) == (16, 58)


def test_reference_crop_of_a_320x240_frame_is_pil_bilinear_resize_then_the_hand_window():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:240, 0:320]
    base = np.stack([xs * 255 / 319, ys * 255 / 239, (xs + ys) % 256], -1)
    frames = np.clip(base + rng.normal(0, 8, (2, 240, 320, 3)), 0, 255).astype(np.uint8)  # (T, H, W, 3)
    pre = reference()
    for aug, (top, left) in [(ViewAugment(), (16, 58)), (ViewAugment(0.5, 0.1, drawn=True), (16, 11)),
                             (ViewAugment(0.2, 0.9, flip=True, drawn=True), (6, 106))]:
        got = pre.crop(frames, aug)  # (T, 3, 224, 224) uint8
        assert got.shape == (2, 3, 224, 224) and got.dtype == torch.uint8
        for t in range(2):
            # the authors: PIL Resize to 341 × 256 (bilinear), [flip,] crop box (left, top, left + 224, top + 224)
            img = Image.fromarray(frames[t]).resize((341, 256), Image.BILINEAR)
            want = np.asarray(img)[top : top + 224, left : left + 224]
            if aug.flip:
                want = want[:, ::-1]
            diff = np.abs(got[t].permute(1, 2, 0).numpy().astype(int) - want.astype(int))
            assert diff.max() <= 2 and diff.mean() < 0.5  # torch's antialiased bilinear is PIL's filter, up to rounding


def test_reference_crop_without_resize_is_the_exact_window():
    frames = np.random.default_rng(1).integers(0, 256, (3, 256, 341, 3), dtype=np.uint8)
    got = reference().crop(frames, ViewAugment())
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), frames[:, 16:240, 58:282])
    with pytest.raises(ValueError, match="tsn, reference"):
        FramePreprocessor(224, CLIP_MEAN, CLIP_STD, crop_mode="random")
