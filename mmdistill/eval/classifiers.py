"""Few-shot classifiers, each solved for all episodes at once.

Every classifier maps support `(E, S, D)`, support labels `(E, S)` in `0..N-1` and queries
`(E, Q, D)` to class probabilities `(E, Q, N)`, so ensembles can average any of them. Each one
normalises its own inputs, which makes every feature view "per-view normalised".
"""
from __future__ import annotations

from typing import Callable

import gin
import torch
import torch.nn.functional as F

Classifier = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _check(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
           n_way: int) -> None:
    if support.dim() != 3 or query.dim() != 3 or support_labels.shape != support.shape[:2]:
        raise ValueError(
            f"expected support (E, S, D), labels (E, S), query (E, Q, D); got "
            f"{tuple(support.shape)}, {tuple(support_labels.shape)}, {tuple(query.shape)}")
    if support.shape[0] != query.shape[0] or support.shape[2] != query.shape[2]:
        raise ValueError(f"support {tuple(support.shape)} and query {tuple(query.shape)} disagree "
                         "on episodes or feature width")
    if support_labels.min() < 0 or support_labels.max() >= n_way:
        raise ValueError(f"support labels must lie in 0..{n_way - 1}")


def _one_hot_mean(support: torch.Tensor, support_labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-episode class means (E, N, D)."""
    one_hot = F.one_hot(support_labels, n_way).to(support.dtype)  # (E, S, N)
    sums = one_hot.transpose(1, 2) @ support
    return sums / one_hot.sum(1).clamp_min(1).unsqueeze(-1)


@gin.configurable("fewshot_logistic", denylist=["support", "support_labels", "query", "n_way"])
def logistic_regression(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                        n_way: int, C: float = 1.0, max_iter: int = 1000,
                        tolerance: float = 1e-6) -> torch.Tensor:
    """Multinomial logistic regression on L2-normalised features, the original's classifier.

    Minimises, per episode, `C * sum(cross_entropy) + 0.5 * ||W||^2` with an unpenalised
    intercept: scikit-learn's `LogisticRegression(C=C)` objective. Hand-written in torch rather
    than calling scikit-learn per episode so that all episodes are one L-BFGS problem (the
    episodes are independent, so the minimum of the sum is every episode's minimum) that runs on
    the GPU. Solved in float64 so the stopping tolerance is meaningful.

    The optimal weights lie in the span of the episode's support features (the penalty removes
    any other component), so features are first expressed in an orthonormal basis of that span:
    S coordinates instead of D (5 instead of 768 at 5-way 1-shot). The problem and its optimum
    are unchanged (the basis is an isometry), while L-BFGS's vector work shrinks D/S-fold.
    """
    _check(support, support_labels, query, n_way)
    x = F.normalize(support.detach().double(), dim=-1)
    basis = torch.linalg.qr(x.transpose(1, 2)).Q  # (E, D, min(D, S)), orthonormal columns
    x = x @ basis
    # Queries outnumber support clips: project them in float32, only the result in float64.
    q = (F.normalize(query.detach().float(), dim=-1) @ basis.float()).double()
    y = support_labels.reshape(-1)
    episodes, _, width = x.shape
    with torch.enable_grad():
        weight = torch.zeros(episodes, width, n_way, dtype=x.dtype, device=x.device,
                             requires_grad=True)
        bias = torch.zeros(episodes, 1, n_way, dtype=x.dtype, device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter,
                                      tolerance_grad=tolerance, tolerance_change=1e-12,
                                      history_size=20, line_search_fn="strong_wolfe")

        def objective():
            optimizer.zero_grad()
            logits = torch.baddbmm(bias, x, weight)
            loss = C * F.cross_entropy(logits.reshape(-1, n_way), y, reduction="sum")
            loss = loss + 0.5 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(objective)
    with torch.no_grad():
        return torch.softmax(torch.baddbmm(bias, q, weight), dim=-1).float()


def nearest_centroid(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                     n_way: int) -> torch.Tensor:
    """SimpleShot CL2N: centre, L2-normalise, assign to the nearest class centroid.

    The centre is the episode's support mean (no base-class set exists at evaluation time).
    Probabilities are softmax(-squared distance), the ProtoNet convention.
    """
    _check(support, support_labels, query, n_way)
    centre = support.float().mean(1, keepdim=True)
    s = F.normalize(support.float() - centre, dim=-1)
    q = F.normalize(query.float() - centre, dim=-1)
    centroids = _one_hot_mean(s, support_labels, n_way)
    return torch.softmax(-torch.cdist(q, centroids).pow(2), dim=-1)


def cosine_nearest_neighbour(support: torch.Tensor, support_labels: torch.Tensor,
                             query: torch.Tensor, n_way: int) -> torch.Tensor:
    """Each class scores its most similar support clip (cosine).

    Probabilities are softmax(-squared distance to that clip on the unit sphere), i.e.
    softmax(2 * cosine), on the same scale as `nearest_centroid`.
    """
    _check(support, support_labels, query, n_way)
    s = F.normalize(support.float(), dim=-1)
    q = F.normalize(query.float(), dim=-1)
    similarity = q @ s.transpose(1, 2)  # (E, Q, S)
    other_class = F.one_hot(support_labels, n_way).transpose(1, 2).unsqueeze(1) == 0  # (E,1,N,S)
    best = similarity.unsqueeze(2).masked_fill(other_class, float("-inf")).amax(-1)  # (E, Q, N)
    return torch.softmax(2.0 * best, dim=-1)


CLASSIFIERS: dict[str, Classifier] = {
    "logistic": logistic_regression,
    "centroid": nearest_centroid,
    "cosine_nn": cosine_nearest_neighbour,
}


def get_classifier(name: str) -> Classifier:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown few-shot classifier {name!r}; choose one of "
                         f"{sorted(CLASSIFIERS)} "
                         "(gin: fewshot.classifier = 'logistic')")
    return CLASSIFIERS[name]
