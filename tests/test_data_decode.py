import numpy as np
import pytest
import torch

from mdmf.pipeline.data.decode import VideoReadError, open_video, read_frames
from mdmf.pipeline.data.transforms import FramePreprocessor, ViewAugment
from videogen import read_frame_number, write_video


@pytest.mark.parametrize("ext", [".mp4", ".avi", ".mkv", ".webm"])
def test_decoded_frames_are_the_requested_ones(tmp_path, ext):
    path = write_video(tmp_path / f"v{ext}", 40, height=48, width=80)
    reader = open_video(path)
    assert len(reader) == 40
    idx = np.array([0, 1, 5, 5, 17, 39])
    frames = read_frames(reader, idx)
    assert frames.shape == (6, 48, 80, 3) and frames.dtype == np.uint8
    assert [read_frame_number(f) for f in frames] == idx.tolist()
    assert frames[0, 0, 0, 0] > 100 and frames[0, 0, 0, 1] < 30  # the red band: RGB order


def test_bad_files_raise_a_reason(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = write_video(tmp_path / "good.mp4", 30)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    for path, reason in [(tmp_path / "missing.mp4", "not found"), (empty, "empty"), (garbage, "cannot"),
                         (truncated, "cannot"), (text, "cannot")]:
        with pytest.raises(VideoReadError, match=reason):
            reader = open_video(path)
            read_frames(reader, np.arange(8))


def test_preprocessing_uses_the_model_constants():
    pre = FramePreprocessor(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    frames = np.full((3, 60, 90, 3), 255, np.uint8)
    x = pre(frames)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25
    assert pre.resize_to == 37  # round(32 * 256 / 224)


def test_crop_position_and_flip():
    pre = FramePreprocessor(image_size=16, mean=(0, 0, 0), std=(1, 1, 1), resize_ratio=1.0)
    frames = np.zeros((2, 16, 48, 3), np.uint8)
    frames[:, :, :16] = 255  # left third white
    left = pre.crop(frames, ViewAugment(0.5, 0.0, False))
    right = pre.crop(frames, ViewAugment(0.5, 1.0, False))
    centre = pre.crop(frames, ViewAugment())
    assert left.dtype == torch.uint8 and left.shape == (2, 3, 16, 16)
    assert left.float().mean() > 250 and right.float().mean() < 5 and centre.float().mean() < 5
    half = np.zeros((1, 16, 16, 3), np.uint8)
    half[:, :, :8] = 255
    flipped = pre.crop(half, ViewAugment(flip=True))
    assert flipped[0, 0, 0, :8].float().mean() < 5 and flipped[0, 0, 0, 8:].float().mean() > 250


def test_random_view_augment_respects_flip_permission():
    rng = np.random.default_rng(0)
    assert not any(ViewAugment.random(rng, allow_flip=False).flip for _ in range(50))
    flips = [ViewAugment.random(rng, allow_flip=True).flip for _ in range(200)]
    assert 60 < sum(flips) < 140


def test_decord_is_an_optional_extra_with_a_one_line_error_naming_it(monkeypatch, tmp_path):
    """decord serves only the reader mdmf replaced (and the benchmark comparing with it): without it, one line that
    names the extra; the installed metadata needs it only through an extra (decord has no aarch64 or arm64 wheels)."""
    import sys
    from importlib.metadata import requires

    from mdmf.pipeline.core.errors import MdmfError
    from mdmf.pipeline.data.decode import DecordBatchReader

    monkeypatch.setitem(sys.modules, "decord", None)  # what a machine without decord gives: ImportError
    with pytest.raises(MdmfError, match=r"pip install 'mdmf\[decord\]'") as err:
        DecordBatchReader(tmp_path / "x.avi")
    assert "\n" not in str(err.value)
    monkeypatch.delitem(sys.modules, "decord")
    needs_decord = [r for r in requires("mdmf") if r.lower().startswith("decord")]
    assert needs_decord and all("extra ==" in r for r in needs_decord), needs_decord
    assert not any(r.lower().startswith("decord") for r in requires("mdmf") if "extra ==" not in r)


def test_the_decord_reader_reads_where_decord_is_installed(tmp_path):
    pytest.importorskip("decord")
    from mdmf.pipeline.data.decode import DecordBatchReader

    path = tmp_path / "v.avi"
    write_video(path, 12, 48, 64)
    reader = DecordBatchReader(path)
    assert len(reader) == 12 and reader.read([0, 11]).shape == (2, 48, 64, 3)
