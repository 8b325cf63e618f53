import numpy as np
import pytest

from pipeline.sampling import tsn_indices, view_rng


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 32, 175, 1000])
def test_centre_indices_are_segment_centres(n):
    idx = tsn_indices(n, 8)
    assert idx.shape == (8,) and idx.dtype == np.int64
    assert np.all(idx >= 0) and np.all(idx < n) and np.all(np.diff(idx) >= 0)
    seg = n / 8
    np.testing.assert_array_equal(idx, np.floor((np.arange(8) + 0.5) * seg).astype(int).clip(0, n - 1))


def test_centre_indices_of_a_32_frame_clip():
    np.testing.assert_array_equal(tsn_indices(32, 8), [2, 6, 10, 14, 18, 22, 26, 30])


@pytest.mark.parametrize("n", [8, 13, 64, 300])
def test_random_indices_stay_inside_their_segment(n):
    rng = np.random.default_rng(0)
    lo = np.floor(np.arange(8) * n / 8).astype(int)
    hi = np.ceil((np.arange(8) + 1) * n / 8).astype(int)
    seen = set()
    for _ in range(300):
        idx = tsn_indices(n, 8, rng)
        assert np.all(idx >= lo) and np.all(idx < hi) and np.all(np.diff(idx) >= 0)
        seen.add(tuple(idx))
    if n == 8:
        assert seen == {tuple(range(8))}  # one frame per segment: nothing to draw
    else:
        assert len(seen) > 50  # random when segments hold several frames


def test_short_videos_repeat_frames():
    idx = tsn_indices(3, 8)
    assert sorted(set(idx.tolist())) == [0, 1, 2] and len(idx) == 8
    assert tsn_indices(1, 8).tolist() == [0] * 8


def test_view_rng_depends_on_video_and_view_only():
    a = view_rng(0, "train", "vid1", 0).random(4)
    np.testing.assert_array_equal(a, view_rng(0, "train", "vid1", 0).random(4))
    for other in [view_rng(1, "train", "vid1", 0), view_rng(0, "train", "vid2", 0), view_rng(0, "train", "vid1", 1)]:
        assert not np.allclose(a, other.random(4))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        tsn_indices(0, 8)
    with pytest.raises(ValueError):
        tsn_indices(10, 0)
