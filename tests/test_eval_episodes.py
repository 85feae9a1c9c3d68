import pytest
import torch

from mmdistill.eval.episodes import sample_episodes


def make_labels(counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


NAMES = [f"stroke {c}" for c in range(8)]  # any label strings: labels index this list


def test_same_seed_same_episodes_other_seed_other_episodes():
    labels = make_labels([20] * 8)
    a = sample_episodes(labels, NAMES, 5, 1, 15, 50, seed=3)
    b = sample_episodes(labels, NAMES, 5, 1, 15, 50, seed=3)
    c = sample_episodes(labels, NAMES, 5, 1, 15, 50, seed=4)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert torch.equal(a.classes, b.classes)
    assert not torch.equal(a.query, c.query)


def test_episodes_ignore_the_global_rng():
    labels = make_labels([20] * 8)
    torch.manual_seed(0)
    a = sample_episodes(labels, NAMES, 5, 1, 15, 5, seed=1)
    torch.manual_seed(123)
    torch.rand(10)
    b = sample_episodes(labels, NAMES, 5, 1, 15, 5, seed=1)
    assert torch.equal(a.query, b.query)


def test_golden_episode_is_stable_across_machines_and_versions():
    # Pinned output of the seeded CPU generator: if this changes, published numbers stop being
    # reproducible, so a change here must be deliberate.
    labels = make_labels([4] * 6)
    e = sample_episodes(labels, NAMES[:6], 3, 1, 2, 2, seed=0)
    assert e.classes.tolist() == GOLDEN_CLASSES
    assert e.support.tolist() == GOLDEN_SUPPORT
    assert e.query.tolist() == GOLDEN_QUERY


GOLDEN_CLASSES = [[2, 5, 3], [4, 2, 1]]
GOLDEN_SUPPORT = [[11, 21, 14], [17, 11, 5]]
GOLDEN_QUERY = [[10, 8, 20, 23, 13, 15], [19, 16, 8, 10, 6, 7]]


@pytest.mark.parametrize("n_way,k_shot,q_query", [(5, 1, 15), (3, 5, 4), (7, 2, 3)])
def test_disjoint_support_and_query_from_the_right_classes(n_way, k_shot, q_query):
    labels = make_labels([5, 25, 30, 22, 40, 21, 19, 26])
    e = sample_episodes(labels, NAMES, n_way, k_shot, q_query, 40, seed=0)
    assert e.support.shape == (40, n_way * k_shot) and e.query.shape == (40, n_way * q_query)
    for i in range(40):
        support, query = set(e.support[i].tolist()), set(e.query[i].tolist())
        assert len(support) == n_way * k_shot and len(query) == n_way * q_query  # no repeats
        assert not support & query
        assert len(set(e.classes[i].tolist())) == n_way
        # every clip carries the global class its episode label stands for
        assert torch.equal(labels[e.support[i]], e.classes[i][e.support_labels[i]])
        assert torch.equal(labels[e.query[i]], e.classes[i][e.query_labels[i]])
    assert e.support_labels[0].tolist() == [j for j in range(n_way) for _ in range(k_shot)]


def test_classes_with_too_few_clips_are_excluded_and_reported():
    labels = make_labels([16, 15, 16, 3, 16, 16, 0, 40])
    e = sample_episodes(labels, NAMES, 5, 1, 15, 200, seed=0)
    assert e.excluded == {"stroke 1": 15, "stroke 3": 3, "stroke 6": 0}
    assert set(e.eligible) == {"stroke 0", "stroke 2", "stroke 4", "stroke 5", "stroke 7"}
    drawn = set(e.classes.flatten().tolist())
    assert drawn == {0, 2, 4, 5, 7}


def test_uniform_class_draws():
    labels = make_labels([20] * 8)
    e = sample_episodes(labels, NAMES, 2, 1, 1, 4000, seed=0)
    counts = torch.bincount(e.classes.flatten(), minlength=8).float()
    assert (counts / counts.sum() - 1 / 8).abs().max() < 0.02


def test_too_few_classes_error_says_how_many_qualify():
    labels = make_labels([16, 16, 16, 5])
    with pytest.raises(ValueError, match=r"only 3 qualify"):
        sample_episodes(labels, NAMES[:4], 5, 1, 15, 10)


def test_unlabelled_clips_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unlabelled"):
        sample_episodes(torch.tensor([0, 1, -1]), NAMES[:2], 2, 1, 1, 1)
    with pytest.raises(ValueError, match="n_way"):
        sample_episodes(make_labels([5, 5]), NAMES[:2], 0, 1, 1, 1)
