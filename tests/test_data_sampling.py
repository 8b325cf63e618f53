import numpy as np
import pytest

from mdmf.pipeline.data.sampling import frame_indices, reference_indices, tsn_indices, view_rng


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


# ---- the authors' sampler (`reference`): expectations written out by hand from their video_reader.py get_seq ----------

def by_hand(start: int, end: int, t: int = 8) -> list[int]:
    """int() of linspace(start, end, t), in exact integer arithmetic: start + floor(i·(end - start)/(t - 1))."""
    return [start + (i * (end - start)) // (t - 1) for i in range(t)]


def reference_by_hand(n: int, rng, t: int = 8) -> list[int]:
    """The authors' rule, written out: pad = int(min(5, (n - t)/2)); start ~ U{0..pad}, end ~ U{n-1-pad..n-1} (train)
    or 1, n-2 (test); the whole video when pad < 1 or end - start < t."""
    if rng is None:
        start, end = 1, n - 2
    else:
        pad = int(min(5, (n - t) / 2))
        start, end = (0, n - 1) if pad < 1 else (int(rng.integers(0, pad + 1)), int(rng.integers(n - 1 - pad, n)))
    if end - start < t:
        start, end = 0, n - 1
    return by_hand(start, end, t)


def test_reference_indices_by_hand_literals():
    # n = 40, seed 0: pad = min(5, 16) = 5; this generator draws start 5 (of 0..5), then end 37 (of 34..39)
    g = np.random.default_rng(0)
    assert (int(g.integers(0, 6)), int(g.integers(34, 40))) == (5, 37)
    # linspace(5, 37, 8) = 5 + i·32/7 = 5, 9.57, 14.14, 18.71, 23.29, 27.86, 32.43, 37
    assert reference_indices(40, 8, np.random.default_rng(0)).tolist() == [5, 9, 14, 18, 23, 27, 32, 37]
    # test views: linspace(1, n-2, 8); n = 100: 1 + i·97/7 = 1, 14.86, 28.71, 42.57, 56.43, 70.29, 84.14, 98
    assert reference_indices(100, 8).tolist() == [1, 14, 28, 42, 56, 70, 84, 98]
    # n = 40 test: 1 + i·37/7 = 1, 6.29, 11.57, 16.86, 22.14, 27.43, 32.71, 38
    assert reference_indices(40, 8).tolist() == [1, 6, 11, 16, 22, 27, 32, 38]
    # n = 7 < T: pad = int(-0.5) = 0 -> linspace(0, 6, 8) = i·6/7 = 0, .86, 1.71, 2.57, 3.43, 4.29, 5.14, 6
    for rng in (None, np.random.default_rng(0)):
        assert reference_indices(7, 8, rng).tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
        # n = 3: i·2/7 = 0, .29, .57, .86, 1.14, 1.43, 1.71, 2
        assert reference_indices(3, 8, rng).tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
        assert reference_indices(1, 8, rng).tolist() == [0] * 8
        assert reference_indices(8, 8, rng).tolist() == list(range(8))  # their range(n) case
    # n = 10 test: end - start = 7 < 8 -> the whole video, i·9/7 = 0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9
    assert reference_indices(10, 8).tolist() == [0, 1, 2, 3, 5, 6, 7, 9]
    # n = 11 test: end - start = 8 is enough: linspace(1, 9, 8) = 1 + i·8/7
    assert reference_indices(11, 8).tolist() == [1, 2, 3, 4, 5, 6, 7, 9]


@pytest.mark.parametrize("n", [40, 100, 7, 3, 10, 12, 18, 19])
def test_reference_train_indices_follow_the_hand_written_rule(n):
    for seed in range(40):
        got = reference_indices(n, 8, np.random.default_rng(seed))
        assert got.tolist() == reference_by_hand(n, np.random.default_rng(seed)), seed
    assert reference_indices(n, 8).tolist() == reference_by_hand(n, None)


def test_reference_jitter_covers_its_whole_range():
    starts, ends = set(), set()
    for seed in range(400):
        idx = reference_indices(40, 8, np.random.default_rng(seed))
        starts.add(int(idx[0]))
        ends.add(int(idx[-1]))
    assert starts == set(range(0, 6)) and ends == set(range(34, 40))  # pad = 5, both ends inclusive
    # n = 14: pad = int(min(5, 3.0)) = 3
    firsts = {int(reference_indices(14, 8, np.random.default_rng(s))[0]) for s in range(300)}
    lasts = {int(reference_indices(14, 8, np.random.default_rng(s))[-1]) for s in range(300)}
    assert firsts == {0, 1, 2, 3} and lasts == {10, 11, 12, 13}


@pytest.mark.parametrize("sampling", ["tsn", "reference"])
def test_indices_are_sorted_in_range_and_of_length_t(sampling):
    for n in [1, 2, 3, 5, 7, 8, 9, 10, 11, 17, 33, 250]:
        for t in [1, 4, 8, 16]:
            for rng in [None, *(np.random.default_rng(s) for s in range(5))]:
                idx = frame_indices(sampling, n, t, rng)
                assert idx.shape == (t,) and idx.dtype == np.int64
                assert np.all(idx >= 0) and np.all(idx < n) and np.all(np.diff(idx) >= 0), (n, t)


def test_reference_single_frame_and_the_dispatcher():
    # T = 1: the authors draw from start..end-1; train draws it the same way, eval takes the middle
    picks = {int(reference_indices(40, 1, np.random.default_rng(s))[0]) for s in range(300)}
    assert min(picks) >= 0 and max(picks) <= 38 and len(picks) > 20
    assert reference_indices(40, 1).tolist() == [(1 + 38 - 1) // 2]
    np.testing.assert_array_equal(frame_indices("tsn", 32, 8), tsn_indices(32, 8))
    with pytest.raises(ValueError, match="tsn, reference"):
        frame_indices("uniform", 32, 8)
    with pytest.raises(ValueError):
        reference_indices(0, 8)
