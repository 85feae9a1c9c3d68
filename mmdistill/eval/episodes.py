"""Seeded N-way K-shot Q-query episodes over a labelled clip set.

Episodes are index tensors into the feature bank, so sampling never touches the network. A
dedicated CPU `torch.Generator` makes the same seed give the same episodes on every machine,
whatever the global RNG state, the device or the number of workers.

With `groups` (the recording of each clip, `mmdistill.data.groups`) every episode is
group-disjoint: no group gives both a support clip and a query clip, so a query never meets a
support clip of its own recording. A class is drawn only if its groups can be split into a side
with at least K clips and a side with at least Q; the others are excluded and listed (never
merged with another class). Groups of one class each (a recording of one stroke) are split class
by class; when a group holds clips of several classes (a recording of several actions, as in the
demo world), the episode's groups are split once into a support side and a query side, so a
query never meets a support clip of its own recording under another class either.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
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
    # (group-disjoint: classes whose groups cannot give K support and Q query clips apart)
    groups_per_class: dict[str, int] | None = None  # class name -> groups, when grouped

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


class TooFewClasses(ValueError):
    """Fewer than N classes can give an episode (too few clips, or too few groups)."""


def _splittable(sizes: list[int], k_shot: int, q_query: int) -> bool:
    """Can groups of these sizes be split into a side of >= K clips and one of >= Q clips?"""
    total = sum(sizes)
    reachable = 1  # bit s set: some subset of the groups holds exactly s clips
    for size in sizes:
        reachable |= reachable << size
    return any(reachable >> s & 1 for s in range(k_shot, total - q_query + 1))


def _split_groups(rows_by_group: list[torch.Tensor], k_shot: int, q_query: int,
                  generator: torch.Generator, tries: int = 1000) -> torch.Tensor:
    """K support rows from some groups, then Q query rows from the other groups.

    Groups in a random order fill the support side until it holds K clips; the rest is the query
    side. Any valid split is some order's prefix, so a splittable class succeeds within a few
    orders (the cap only guards against a bug)."""
    for _ in range(tries):
        order = torch.randperm(len(rows_by_group), generator=generator).tolist()
        support, taken = [], 0
        for position, g in enumerate(order):
            support.append(rows_by_group[g])
            taken += rows_by_group[g].numel()
            if taken >= k_shot:
                break
        rest = [rows_by_group[g] for g in order[position + 1:]]
        if rest and sum(r.numel() for r in rest) >= q_query:
            support, query = torch.cat(support), torch.cat(rest)
            support = support[torch.randperm(support.numel(), generator=generator)[:k_shot]]
            query = query[torch.randperm(query.numel(), generator=generator)[:q_query]]
            return torch.cat([support, query])
    raise RuntimeError("no group-disjoint split found for a class checked splittable")


def _split_episode(rows: list[torch.Tensor], row_groups: list[list[str]], k_shot: int,
                   q_query: int, generator: torch.Generator, tries: int = 1000) -> torch.Tensor:
    """(N, K+Q) rows of one episode whose groups span classes: the groups in a random order join
    the support side while some class still lacks K clips there (a group that adds no clip to such
    a class is left to the query side); every class then needs Q clips in the other groups.

    Unlike a class's own groups, a split that suits every class at once need not exist for every
    draw of classes: an episode that finds none in `tries` orders raises TooFewClasses."""
    names = sorted({g for groups in row_groups for g in groups})
    clips_in = [Counter(groups) for groups in row_groups]  # per class: group -> its clips
    for _ in range(tries):
        order = torch.randperm(len(names), generator=generator).tolist()
        support_side: set[str] = set()
        have = [0] * len(rows)
        for g in (names[i] for i in order):
            gains = [counts[g] for counts in clips_in]
            if any(n and have[c] < k_shot for c, n in enumerate(gains)):
                support_side.add(g)
                have = [h + n for h, n in zip(have, gains)]
                if min(have) >= k_shot:
                    break
        if min(have) < k_shot:
            continue
        picks = []
        for class_rows, groups in zip(rows, row_groups):
            in_support = torch.tensor([g in support_side for g in groups])
            support, query = class_rows[in_support], class_rows[~in_support]
            if query.numel() < q_query:
                break
            picks.append(torch.cat([
                support[torch.randperm(support.numel(), generator=generator)[:k_shot]],
                query[torch.randperm(query.numel(), generator=generator)[:q_query]]]))
        else:
            return torch.stack(picks)
    raise TooFewClasses(f"no split of the episode's groups gives every class {k_shot} support and "
                        f"{q_query} query clips from different groups in {tries} tries (groups "
                        f"span classes here); lower k_shot or q_query, or add recordings")


def sample_episodes(labels: torch.Tensor, class_names: Sequence[str], n_way: int, k_shot: int,
                    q_query: int, episodes: int, seed: int = 0,
                    groups: Sequence[str] | None = None) -> Episodes:
    """Draw `episodes` episodes; classes uniformly among those that can give K+Q clips (with
    `groups`: K support and Q query clips from different groups)."""
    for name, value in (("n_way", n_way), ("k_shot", k_shot), ("q_query", q_query),
                        ("episodes", episodes)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    labels = torch.as_tensor(labels).long().reshape(-1).cpu()
    counts = class_counts(labels, class_names)
    per_class = k_shot + q_query
    rows_of_class = [torch.nonzero(labels == c).flatten() for c in range(len(class_names))]
    groups_of_class, per_class_groups, spanning = None, None, False
    if groups is not None:
        if len(groups) != labels.numel():
            raise ValueError(f"{len(groups)} groups for {labels.numel()} clips: give one per clip")
        groups_of_class = []
        for rows in rows_of_class:
            by_group: dict[str, list[int]] = {}
            for row in rows.tolist():
                by_group.setdefault(groups[row], []).append(row)
            groups_of_class.append([torch.tensor(r, dtype=torch.long) for r in by_group.values()])
        per_class_groups = {class_names[c]: len(g) for c, g in enumerate(groups_of_class)
                            if counts[c]}
        ok = [_splittable([r.numel() for r in g], k_shot, q_query) for g in groups_of_class]
        # Does some group hold clips of two classes? Then episodes are split as a whole.
        row_groups = [[groups[r] for r in rows.tolist()] for rows in rows_of_class]
        group_sets = [set(gs) for gs in row_groups]
        spanning = len(set().union(*group_sets)) < sum(len(gs) for gs in group_sets)
    else:
        ok = [n >= per_class for n in counts]
    eligible_ids = [c for c in range(len(class_names)) if ok[c]]
    eligible = {class_names[c]: counts[c] for c in eligible_ids}
    excluded = {class_names[c]: n for c, n in enumerate(counts) if not ok[c]}
    if len(eligible_ids) < n_way:
        need = (f"{k_shot} support and {q_query} query clips from different groups" if groups
                is not None else f"at least {per_class} clips each")
        groups_note = f"; groups per class: {per_class_groups}" if groups is not None else ""
        raise TooFewClasses(
            f"{n_way}-way {k_shot}-shot {q_query}-query needs {n_way} classes with {need}, but "
            f"only {len(eligible_ids)} qualify (eligible: {eligible}; excluded: {excluded}"
            f"{groups_note}). Lower n_way, k_shot or q_query, or add clips.")

    eligible_tensor = torch.tensor(eligible_ids, dtype=torch.long)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    classes = torch.empty(episodes, n_way, dtype=torch.long)
    picks = torch.empty(episodes, n_way, per_class, dtype=torch.long)
    # A Python loop over episodes and classes: randperm per class keeps support and query
    # disjoint by construction and costs milliseconds even at 10,000 episodes.
    for e in range(episodes):
        chosen = torch.randperm(len(eligible_ids), generator=generator)[:n_way]
        classes[e] = eligible_tensor[chosen]
        if spanning:
            chosen_classes = classes[e].tolist()
            picks[e] = _split_episode([rows_of_class[c] for c in chosen_classes],
                                      [row_groups[c] for c in chosen_classes], k_shot, q_query,
                                      generator)
            continue
        for j, c in enumerate(classes[e].tolist()):
            if groups_of_class is not None:
                picks[e, j] = _split_groups(groups_of_class[c], k_shot, q_query, generator)
            else:
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
        groups_per_class=per_class_groups,
    )
