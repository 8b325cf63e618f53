import numpy as np
import pytest
import torch

from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec, _distinct_positions
from mdmf.pipeline.core.errors import MdmfError

LABELS = np.repeat(np.arange(8), [10, 10, 10, 10, 10, 10, 3, 12])  # class 6 is too small for 1-shot + 5 queries


def test_episode_invariants():
    spec = EpisodeSpec(way=5, shot=2, queries=3)
    sampler = EpisodeSampler(LABELS, spec, seed=3)
    batch = sampler.batch(0, 200)
    assert batch.classes.shape == (200, 5) and batch.support.shape == (200, 5, 2) and batch.query.shape == (200, 15)
    for e in range(200):
        classes = batch.classes[e].numpy()
        assert len(set(classes)) == 5 and 6 not in classes  # distinct, and only eligible classes
        support, query = batch.support[e].numpy(), batch.query[e].numpy()
        assert not set(support.ravel()) & set(query)  # disjoint support and query
        assert len(set(support.ravel())) == 10 and len(set(query)) == 15
        for n, c in enumerate(classes):
            assert np.all(LABELS[support[n]] == c)
        np.testing.assert_array_equal(LABELS[query], classes[batch.query_labels[e].numpy()])
    assert batch.support_views.max() == 0 and batch.query_views.max() == 0
    counts = np.bincount(batch.classes.numpy().ravel(), minlength=8)
    assert counts[6] == 0 and counts[[0, 1, 2, 3, 4, 5, 7]].min() > 80  # all eligible classes drawn


def test_episode_i_is_a_function_of_seed_and_i():
    a = EpisodeSampler(LABELS, EpisodeSpec(), seed=1)
    b = EpisodeSampler(LABELS, EpisodeSpec(), seed=1)
    whole = a.batch(0, 50)
    part = b.batch(20, 10)
    for name in ("classes", "support", "query", "query_labels"):
        torch.testing.assert_close(getattr(whole, name)[20:30], getattr(part, name))
    across = EpisodeSampler(LABELS, EpisodeSpec(), seed=1).batch(250, 20)  # spans two draw blocks
    fresh = EpisodeSampler(LABELS, EpisodeSpec(), seed=1).batch(0, 300)
    for name in ("classes", "support", "query"):
        torch.testing.assert_close(getattr(fresh, name)[250:270], getattr(across, name))
        single = torch.from_numpy(np.asarray(a.episode(260)[("classes", "support", "query").index(name)]))
        torch.testing.assert_close(getattr(fresh, name)[260], single)
    other = EpisodeSampler(LABELS, EpisodeSpec(), seed=2).batch(0, 50)
    assert not torch.equal(whole.classes, other.classes)


def test_training_views_are_drawn():
    batch = EpisodeSampler(LABELS, EpisodeSpec(5, 1, 5), seed=0, views=4).batch(0, 100)
    assert set(batch.support_views.unique().tolist()) == {0, 1, 2, 3}
    assert set(batch.query_views.unique().tolist()) == {0, 1, 2, 3}


def test_too_few_classes_is_a_user_error():
    with pytest.raises(MdmfError, match="needs 5 classes"):
        EpisodeSampler(LABELS[LABELS < 4], EpisodeSpec(way=5))
    with pytest.raises(MdmfError, match="at least 13 videos"):
        EpisodeSampler(LABELS, EpisodeSpec(way=5, shot=5, queries=8))


def test_distinct_positions_are_a_uniform_ordered_sample():
    rng = np.random.default_rng(0)
    sizes = np.array([5, 3, 7] * 20_000)
    picks = _distinct_positions(rng, sizes, 3)  # (R, 3)
    assert picks.shape == (60_000, 3)
    assert (picks >= 0).all() and (picks < sizes[:, None]).all()
    assert (np.sort(picks, axis=1)[:, 1:] != np.sort(picks, axis=1)[:, :-1]).all()  # distinct within a row
    # every ordered triple of distinct positions of a 5-row is equally likely: 60 of them, 20,000 draws
    five = picks[sizes == 5]
    counts = np.bincount((five * [25, 5, 1]).sum(1), minlength=125)
    seen = counts[counts > 0]
    assert len(seen) == 60
    expected = len(five) / 60
    chi2 = ((seen - expected) ** 2 / expected).sum()
    assert chi2 < 100  # 59 degrees of freedom: the 99.9th percentile is ~96
    # a 3-row sample of all 3 positions is a uniform permutation
    assert len(np.unique((picks[sizes == 3] * [9, 3, 1]).sum(1))) == 6
