"""Seeded N-way K-shot Q-query episodes over a labelled clip set.

Episodes are index tensors into the feature bank, so sampling never touches the network. A
dedicated CPU `torch.Generator` makes the same seed give the same episodes on every machine,
whatever the global RNG state, the device or the number of workers.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Episodes:
    """`E` episodes; rows of `support`/`query` index the clip set (feature bank rows).

    Episode label `j` of episode `e` is the global class `classes[e, j]`; support and query
    are ordered class-major (all K clips of episode label 0, then label 1, ...).
    """

    support: torch.Tensor  # (E, N*K) long
    support_labels: torch.Tensor  # (E, N*K) long in 0..N-1
    query: torch.Tensor  # (E, N*Q) long
    query_labels: torch.Tensor  # (E, N*Q) long in 0..N-1
    classes: torch.Tensor  # (E, N) long, global class ids
    eligible: dict[str, int]  # class name -> clip count, classes that can be drawn
    excluded: dict[str, int]  # class name -> clip count, classes with fewer than K+Q clips

    def __len__(self) -> int:
        return self.support.shape[0]


def class_counts(labels: torch.Tensor, class_names: Sequence[str]) -> list[int]:
    """Clips per class; rejects labels that do not index `class_names` (e.g. -1 = unlabelled)."""
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(class_names)):
        bad = labels[(labels < 0) | (labels >= len(class_names))].unique().tolist()
        raise ValueError(
            f"labels {bad} do not index the {len(class_names)} class names; few-shot evaluation "
            "needs every clip labelled (-1 means unlabelled: use the labelled annotation file)")
    return torch.bincount(labels, minlength=len(class_names)).tolist()


def sample_episodes(labels: torch.Tensor, class_names: Sequence[str], n_way: int, k_shot: int,
                    q_query: int, episodes: int, seed: int = 0) -> Episodes:
    """Draw `episodes` episodes; classes uniformly among those with at least K+Q clips."""
    for name, value in (("n_way", n_way), ("k_shot", k_shot), ("q_query", q_query),
                        ("episodes", episodes)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    labels = torch.as_tensor(labels).long().reshape(-1).cpu()
    counts = class_counts(labels, class_names)
    per_class = k_shot + q_query
    eligible_ids = [c for c, n in enumerate(counts) if n >= per_class]
    eligible = {class_names[c]: counts[c] for c in eligible_ids}
    excluded = {class_names[c]: n for c, n in enumerate(counts) if n < per_class}
    if len(eligible_ids) < n_way:
        raise ValueError(
            f"{n_way}-way {k_shot}-shot {q_query}-query needs {n_way} classes with at least "
            f"{per_class} clips each, but only {len(eligible_ids)} qualify "
            f"(eligible: {eligible}; too few clips: {excluded}). Lower n_way, k_shot or q_query, "
            "or add clips.")

    rows_of_class = [torch.nonzero(labels == c).flatten() for c in eligible_ids]
    eligible_tensor = torch.tensor(eligible_ids, dtype=torch.long)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    classes = torch.empty(episodes, n_way, dtype=torch.long)
    picks = torch.empty(episodes, n_way, per_class, dtype=torch.long)
    # A Python loop over episodes and classes: randperm per class keeps support and query
    # disjoint by construction and costs milliseconds even at 10,000 episodes.
    for e in range(episodes):
        chosen = torch.randperm(len(eligible_ids), generator=generator)[:n_way]
        classes[e] = eligible_tensor[chosen]
        for j, c in enumerate(chosen.tolist()):
            rows = rows_of_class[c]
            picks[e, j] = rows[torch.randperm(rows.numel(), generator=generator)[:per_class]]

    way_labels = torch.arange(n_way).view(1, n_way, 1)
    return Episodes(
        support=picks[:, :, :k_shot].reshape(episodes, -1),
        support_labels=way_labels.expand(episodes, n_way, k_shot).reshape(episodes, -1),
        query=picks[:, :, k_shot:].reshape(episodes, -1),
        query_labels=way_labels.expand(episodes, n_way, q_query).reshape(episodes, -1),
        classes=classes,
        eligible=eligible,
        excluded=excluded,
    )
