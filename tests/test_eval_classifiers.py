from pathlib import Path

import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from mmdistill.data.sources import VideoFileSource
from mmdistill.eval.classifiers import (CLASSIFIERS, classifier_options, get_classifier,
                                        logistic_regression)
from mmdistill.eval.episodes import sample_episodes
from mmdistill.models.vit import video_vit

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"


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


def sklearn_probabilities(support, support_labels, query, dtype=np.float64, **kwargs):
    """scikit-learn's LogisticRegression(C=1, lbfgs) fitted per episode, as MM-CDFSL's LR_ensemble.

    With more than two classes lbfgs fits the multinomial model in every scikit-learn version
    (MM-CDFSL's models/lit_MMDistillTrainer.py LR_ensemble also passed `multi_class="multinomial"`,
    which current versions no longer take).
    One BLAS/OpenMP thread: tiny fits on a shared machine are otherwise mostly thread overhead.
    """
    from sklearn.linear_model import LogisticRegression

    probs = []
    with threadpool_limits(1):
        for xs, ys, xq in zip(support.numpy(), support_labels.numpy(), query.numpy()):
            model = LogisticRegression(C=1.0, solver="lbfgs", random_state=0, **kwargs)
            probs.append(model.fit(xs.astype(dtype), ys).predict_proba(xq.astype(dtype)))
    return torch.from_numpy(np.stack(probs)).float()


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
def test_logistic_regression_on_l2_normalised_features_matches_scikit_learn(k_shot, dim, spread):
    # (5, 8): more support clips than feature dimensions, the other side of the span projection
    from sklearn.linear_model import LogisticRegression

    s, sl, q, ql = gaussian_episodes(30, 5, k_shot, 15, dim, spread=spread, seed=k_shot)
    ours = logistic_regression(s, sl, q, 5, l2_normalize=True)
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


@pytest.mark.parametrize("k_shot", [1, 5])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_logistic_regression_on_raw_features_matches_scikit_learn(k_shot, scale):
    # A pooled ViT-S feature after fc_norm: LayerNorm output, norm ~ sqrt(384) ~ 20 times the
    # LayerNorm gain (4: a trained gain, norm ~ 80). Used as given, as MM-CDFSL's
    # LR_ensemble does (models/lit_MMDistillTrainer.py, norm=False).
    s, sl, q, ql = gaussian_episodes(30, 5, k_shot, 15, 384, spread=0.15, seed=k_shot)
    s, q = scale * F.layer_norm(s, (384,)), scale * F.layer_norm(q, (384,))
    ours = logistic_regression(s, sl, q, 5)
    theirs = sklearn_probabilities(s, sl, q, tol=1e-10, max_iter=10000)
    acc_ours, acc_theirs = accuracy(ours, ql), accuracy(theirs, ql)
    assert 25.0 < acc_theirs < 95.0
    assert abs(acc_ours - acc_theirs) <= 1.0
    assert (ours - theirs).abs().max() < 1e-3
    normalised = logistic_regression(s, sl, q, 5, l2_normalize=True)
    assert (normalised - theirs).abs().max() > 1e-2  # the switch changes the problem


def test_classifier_options_are_defaults_then_gin_then_overrides():
    assert classifier_options("logistic")["l2_normalize"] is False  # raw features by default
    gin.parse_config("fewshot_logistic.l2_normalize = True")
    assert classifier_options("logistic") == {"C": 1.0, "max_iter": 1000, "tolerance": 1e-6,
                                              "l2_normalize": True}
    assert classifier_options("logistic", {"l2_normalize": False})["l2_normalize"] is False
    assert classifier_options("centroid") == {}
    with pytest.raises(ValueError, match="has no option"):
        classifier_options("centroid", {"l2_normalize": True})


def test_logistic_regression_warns_when_it_stops_at_max_iter():
    s, sl, q, _ = gaussian_episodes(4, 5, 5, 3, 64, spread=0.5)
    with pytest.warns(RuntimeWarning, match="fewshot_logistic.max_iter"):
        logistic_regression(20 * s, sl, 20 * q, 5, max_iter=2)


@pytest.fixture(scope="module")
def tennis_features():
    """Pooled features (fc_norm output) of 40 real tennis clips from a seeded random tiny ViT."""
    if not CLIPS.is_dir():
        pytest.skip(f"real clips not found at {CLIPS}")
    classes = ["backhand", "forehand", "serve", "smash", "f_volley"]
    source = VideoFileSource(root=CLIPS)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    clips, labels = [], []
    for label, name in enumerate(classes):
        for number in range(1, 9):
            video = f"{name}/{name}{number}"
            frames = np.linspace(0, source.num_frames(video) - 1, 8).round().astype(int)
            x = torch.from_numpy(source.read(video, frames)).permute(3, 0, 1, 2).float() / 255
            x = F.interpolate(x, size=(64, 112), mode="bilinear", antialias=True)  # 240x426
            clips.append((x - mean) / std)
            labels.append(label)
    torch.manual_seed(0)
    model = video_vit("tiny", num_frames=8, img_size=(64, 112), use_mean_pooling=True).eval()
    with torch.no_grad():
        features = model(torch.stack(clips))[1]
    return features, torch.tensor(labels), classes


def test_logistic_regression_agrees_with_scikit_learn_on_real_extracted_features(tennis_features):
    features, labels, classes = tennis_features
    assert features.norm(dim=-1).min() > 10.0  # un-normalised: LayerNorm output, norm sqrt(192)
    ours, normalised, theirs = [], [], []
    for k_shot, q_query, episodes in [(1, 7, 200), (5, 3, 100)]:
        ep = sample_episodes(labels, classes, 5, k_shot, q_query, episodes, seed=0)
        s, q = features[ep.support], features[ep.query]
        ours.append(logistic_regression(s, ep.support_labels, q, 5).argmax(-1).flatten())
        normalised.append(logistic_regression(s, ep.support_labels, q, 5, l2_normalize=True)
                          .argmax(-1).flatten())
        # The original's call: float32 features, C=1, lbfgs, max_iter=1000, default tolerance.
        theirs.append(sklearn_probabilities(s, ep.support_labels, q, dtype=np.float32,
                                            max_iter=1000).argmax(-1).flatten())
    ours, normalised, theirs = torch.cat(ours), torch.cat(normalised), torch.cat(theirs)
    assert ours.numel() == 200 * 35 + 100 * 15
    assert (ours == theirs).double().mean() >= 0.99
    # Normalising first is a different classifier on these features: the test can tell them apart.
    assert (normalised == theirs).double().mean() < 0.95


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
    with pytest.raises(ValueError, match="NaN or infinite"):
        logistic_regression(s, sl, q.index_fill(1, torch.tensor([0]), float("nan")), 3)
    with pytest.raises(ValueError, match="choose one of"):
        get_classifier("svm")
