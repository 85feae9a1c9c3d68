import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdistill.eval.classifiers import CLASSIFIERS, get_classifier, logistic_regression


def gaussian_episodes(episodes, n_way, k_shot, q_query, dim, spread, seed=0):
    """Class means of norm ~`spread` plus unit noise: overlap grows as spread shrinks."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(episodes, n_way, dim, generator=g) * spread / dim ** 0.5
    support = means.repeat_interleave(k_shot, 1) + torch.randn(episodes, n_way * k_shot, dim,
                                                               generator=g) / dim ** 0.5
    query = means.repeat_interleave(q_query, 1) + torch.randn(episodes, n_way * q_query, dim,
                                                              generator=g) / dim ** 0.5
    support_labels = torch.arange(n_way).repeat_interleave(k_shot).expand(episodes, -1)
    query_labels = torch.arange(n_way).repeat_interleave(q_query).expand(episodes, -1)
    return support, support_labels, query, query_labels


def accuracy(probs, labels):
    return 100.0 * (probs.argmax(-1) == labels).double().mean().item()


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_separable_features_are_classified_perfectly(name):
    s, sl, q, ql = gaussian_episodes(20, 5, 2, 10, 32, spread=40.0)
    probs = get_classifier(name)(s, sl, q, 5)
    assert probs.shape == (20, 50, 5)
    assert torch.allclose(probs.sum(-1), torch.ones(20, 50), atol=1e-5)
    assert accuracy(probs, ql) == 100.0


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_random_features_give_chance_accuracy(name):
    g = torch.Generator().manual_seed(1)
    s, q = torch.randn(200, 5, 32, generator=g), torch.randn(200, 75, 32, generator=g)
    sl = torch.arange(5).expand(200, -1)
    ql = torch.randint(0, 5, (200, 75), generator=g)
    assert abs(accuracy(get_classifier(name)(s, sl, q, 5), ql) - 20.0) < 2.5


@pytest.mark.parametrize("k_shot,dim,spread", [(1, 64, 0.35), (5, 64, 0.35), (5, 8, 0.6)])
def test_logistic_regression_matches_scikit_learn(k_shot, dim, spread):
    # (5, 8): more support clips than feature dimensions, the other side of the span projection
    from sklearn.linear_model import LogisticRegression

    s, sl, q, ql = gaussian_episodes(30, 5, k_shot, 15, dim, spread=spread, seed=k_shot)
    ours = logistic_regression(s, sl, q, 5)
    theirs = []
    for e in range(30):
        xs, xq = F.normalize(s[e], dim=-1).numpy(), F.normalize(q[e], dim=-1).numpy()
        model = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(xs, sl[e].numpy())
        theirs.append(model.predict_proba(xq))
    theirs = torch.from_numpy(np.stack(theirs)).float()
    acc_ours, acc_theirs = accuracy(ours, ql), accuracy(theirs, ql)
    assert 25.0 < acc_theirs < 95.0  # a reference set where mistakes happen
    assert abs(acc_ours - acc_theirs) <= 1.0
    assert (ours - theirs).abs().max() < 1e-3  # the same optimum, not just similar accuracy


def test_batched_fit_equals_fitting_each_episode_alone():
    s, sl, q, ql = gaussian_episodes(6, 4, 3, 5, 16, spread=2.0)
    together = logistic_regression(s, sl, q, 4)
    alone = torch.cat([logistic_regression(s[e:e + 1], sl[e:e + 1], q[e:e + 1], 4)
                       for e in range(6)])
    assert (together - alone).abs().max() < 1e-4


def test_n_way_other_than_five():
    s, sl, q, ql = gaussian_episodes(5, 9, 1, 3, 32, spread=40.0)
    for name in CLASSIFIERS:
        probs = get_classifier(name)(s, sl, q, 9)
        assert probs.shape == (5, 27, 9) and accuracy(probs, ql) == 100.0


def test_centroid_centres_on_the_support_mean():
    # A large shared offset hides the classes from cosine similarity but not from CL2N.
    s, sl, q, ql = gaussian_episodes(10, 5, 5, 10, 32, spread=6.0)
    offset = torch.full((32,), 30.0)
    assert accuracy(CLASSIFIERS["centroid"](s + offset, sl, q + offset, 5), ql) > 90.0


def test_logistic_regression_runs_under_no_grad_and_keeps_inputs_untouched():
    s, sl, q, _ = gaussian_episodes(2, 3, 2, 2, 8, spread=3.0)
    before = s.clone()
    with torch.no_grad():
        probs = logistic_regression(s, sl, q, 3)
    assert torch.equal(s, before) and not probs.requires_grad


def test_bad_shapes_and_unknown_names_are_refused():
    s, sl, q, _ = gaussian_episodes(2, 3, 2, 2, 8, spread=3.0)
    with pytest.raises(ValueError, match="feature width"):
        logistic_regression(s, sl, q[..., :4], 3)
    with pytest.raises(ValueError, match="support labels"):
        logistic_regression(s, sl, q, 2)
    with pytest.raises(ValueError, match="choose one of"):
        get_classifier("svm")
