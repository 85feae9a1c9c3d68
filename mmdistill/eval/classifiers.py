"""Few-shot classifiers, each solved for all episodes at once.

Every classifier maps support `(E, S, D)`, support labels `(E, S)` in `0..N-1` and queries
`(E, Q, D)` to class probabilities `(E, Q, N)`, so ensembles can average any of them. The
centroid and nearest-neighbour classifiers always L2-normalise their inputs; the logistic
regression uses the features as given unless `fewshot_logistic.l2_normalize = True`.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Mapping

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
    if not (torch.isfinite(support).all() and torch.isfinite(query).all()):
        raise ValueError("few-shot features contain NaN or infinite values; check the model's "
                         "outputs (e.g. fp16 overflow: evaluate with bf16 or fp32)")


def _one_hot_mean(support: torch.Tensor, support_labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-episode class means (E, N, D)."""
    one_hot = F.one_hot(support_labels, n_way).to(support.dtype)  # (E, S, N)
    sums = one_hot.transpose(1, 2) @ support
    return sums / one_hot.sum(1).clamp_min(1).unsqueeze(-1)


def _precondition(support: torch.Tensor, n_way: int) -> torch.Tensor:
    """A with A^T H A = I for H the Hessian at zero weights; support rows are [x, 1].

    At zero weights every class has probability 1/N, so the data term's curvature is about
    `X^T X / N` (X with a column of ones for the intercept) and the penalty adds the identity on
    the weight rows. Solving for V with W = A V is the same problem with a well scaled start
    whatever the feature norm: raw features (norm ~ sqrt(D) after a LayerNorm) otherwise take
    hundreds of L-BFGS iterations, more still since all episodes share one line search.
    """
    width = support.shape[-1]
    penalised = torch.ones(width, dtype=support.dtype, device=support.device)
    penalised[-1] = 0.0
    curvature = support.transpose(1, 2) @ support / n_way + torch.diag(penalised)
    lower = torch.linalg.cholesky(curvature)
    eye = torch.eye(width, dtype=support.dtype, device=support.device).expand_as(curvature)
    return torch.linalg.solve_triangular(lower.transpose(1, 2), eye, upper=True)


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)


@gin.configurable("fewshot_logistic", denylist=["support", "support_labels", "query", "n_way"])
def logistic_regression(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                        n_way: int, C: float = 1.0, max_iter: int = 1000,
                        tolerance: float = 1e-6, l2_normalize: bool = False) -> torch.Tensor:
    """Multinomial logistic regression with scikit-learn's objective, all episodes at once.

    Minimises, per episode, `C * sum(cross_entropy) + 0.5 * ||W||^2` with an unpenalised
    intercept: the optimum of `sklearn.linear_model.LogisticRegression(C=C)` (lbfgs,
    multinomial). Features are used as given unless `l2_normalize`: MM-CDFSL's `LR_ensemble`
    fits on the raw pooled features. Hand-written in torch rather than calling scikit-learn per
    episode so that all episodes are one L-BFGS problem (the episodes are independent, so the
    minimum of the sum is every episode's minimum) that runs on the GPU. Solved in float64 so
    the stopping tolerance is meaningful.

    The optimal weights lie in the span of the episode's support features (the penalty removes
    any other component), so features are first expressed in an orthonormal basis of that span:
    S coordinates instead of D (5 instead of 768 at 5-way 1-shot). The problem and its optimum
    are unchanged (the basis is an isometry), while L-BFGS's vector work shrinks D/S-fold.
    Two classes are fitted multinomially too, as MM-CDFSL's `multi_class="multinomial"`
    asked; current scikit-learn, which no longer takes that argument, fits a binomial model then.
    """
    _check(support, support_labels, query, n_way)
    x, q = support.detach().double(), query.detach().float()
    if l2_normalize:
        x, q = F.normalize(x, dim=-1), F.normalize(q, dim=-1)
    basis = torch.linalg.qr(x.transpose(1, 2)).Q  # (E, D, min(D, S)), orthonormal columns
    x = _with_ones(x @ basis)
    # Queries outnumber support clips: project them in float32, only the result in float64.
    q = _with_ones((q @ basis.float()).double())
    precondition = _precondition(x, n_way)
    x_pre = x @ precondition
    y = support_labels.reshape(-1)
    episodes, _, width = x.shape
    with torch.enable_grad():
        v = torch.zeros(episodes, width, n_way, dtype=x.dtype, device=x.device,
                        requires_grad=True)
        optimizer = torch.optim.LBFGS([v], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                      tolerance_grad=tolerance, tolerance_change=1e-12,
                                      history_size=20, line_search_fn="strong_wolfe")

        def objective():
            optimizer.zero_grad()
            weight = (precondition @ v)[:, :-1]  # the intercept row is not penalised
            loss = C * F.cross_entropy((x_pre @ v).reshape(-1, n_way), y, reduction="sum")
            loss = loss + 0.5 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(objective)
    state = optimizer.state[v]
    if state["n_iter"] >= max_iter or state["func_evals"] >= 2 * max_iter:
        warnings.warn(f"few-shot logistic regression: L-BFGS stopped at max_iter={max_iter} "
                      f"before the gradient fell below tolerance={tolerance}; raise "
                      "fewshot_logistic.max_iter", RuntimeWarning, stacklevel=2)
    with torch.no_grad():
        return torch.softmax(q @ (precondition @ v), dim=-1).float()


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


def euclidean_centroid(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                       n_way: int) -> torch.Tensor:
    """Nearest class mean by Euclidean distance on the features as given (no centring, no
    normalisation): the appearance baseline's classifier. softmax(-squared distance)."""
    _check(support, support_labels, query, n_way)
    centroids = _one_hot_mean(support.float(), support_labels, n_way)
    return torch.softmax(-torch.cdist(query.float(), centroids).pow(2), dim=-1)


CLASSIFIERS: dict[str, Classifier] = {
    "logistic": logistic_regression,
    "centroid": nearest_centroid,
    "euclidean_centroid": euclidean_centroid,
    "cosine_nn": cosine_nearest_neighbour,
}


def get_classifier(name: str) -> Classifier:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown few-shot classifier {name!r}; choose one of "
                         f"{sorted(CLASSIFIERS)} "
                         "(gin: fewshot.classifier = 'logistic')")
    return CLASSIFIERS[name]


def classifier_options(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword settings classifier `name` runs with: defaults < gin bindings < `overrides`.

    Reports record these, so a run says e.g. whether its features were L2-normalised.
    """
    classify = get_classifier(name)
    options = {p.name: p.default for p in inspect.signature(classify).parameters.values()
               if p.default is not inspect.Parameter.empty}
    if options:
        options.update(gin.get_bindings(classify))
    unknown = sorted(set(overrides or {}) - set(options))
    if unknown:
        raise ValueError(f"few-shot classifier {name!r} has no option(s) {unknown}; its options "
                         f"are {sorted(options) or 'none'}")
    options.update(overrides or {})
    return options
