"""Episodic few-shot evaluation: settings, ensembles, statistics and the report.

`evaluate(bank, settings, ...)` is pure: features in, `Report` out (no run directory, no W&B).
`run_fewshot(model, loader, ...)` is the gin entry (`fewshot.*`) that extracts or loads features,
evaluates, prints the table and optionally logs / writes `summary.json`.

Ensemble members (each fitted by the chosen classifier on its own support features):
- `pooled`: fit and predict on the unmasked pooled feature;
- `masked<v>` (with mask views): fit on the support's masked view 0, predict query view v, as
  MM-CDFSL's "ensemble masked inference" (`top1_action_ensemble`);
- `cmt_<modality>` (with head views): fit and predict on that head's translated feature.
The ensemble averages probabilities over the masked views when there are any, else it is
`pooled`; with `ensemble_heads` the head views join it. Every member's own accuracy is reported.
Accuracies are in percent; std uses ddof=0, se = std/sqrt(episodes), ci95 = 1.96*se.

With groups (`fewshot.group_by` or `fewshot.groups_file`: the recording of each clip,
`mmdistill.data.groups`) every setting is also evaluated group-disjoint (`<setting>_disjoint`:
support and queries of a class from different recordings), beside the standard numbers.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import gin
import numpy as np
import torch

from mmdistill.eval.classifiers import classifier_options, get_classifier
from mmdistill.eval.episodes import Episodes, TooFewClasses, sample_episodes
from mmdistill.eval.features import (MASKED, POOLED, FeatureBank, dataset_fingerprint,
                                     extract_features, feature_cache_key, file_fingerprint,
                                     weights_fingerprint)
from mmdistill.data.groups import clip_groups, describe, groups_per_class
from mmdistill.eval.stats import STD_DDOF, Z_95, Summary, summarize

ENSEMBLE = "ensemble"
DISJOINT = "_disjoint"


@dataclasses.dataclass(frozen=True)
class FewShotSetting:
    """N-way K-shot with Q queries per class, averaged over `episodes` episodes."""

    n_way: int
    k_shot: int
    q_query: int = 15
    episodes: int = 400
    group_disjoint: bool = False  # support and queries of a class from different groups

    def __post_init__(self):
        for field in dataclasses.fields(self)[:4]:
            value = getattr(self, field.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"few-shot setting {field.name} must be a positive integer, "
                                 f"got {value!r}")
        if not isinstance(self.group_disjoint, bool):
            raise ValueError(f"few-shot setting group_disjoint must be True or False, got "
                             f"{self.group_disjoint!r}")

    @property
    def name(self) -> str:
        return f"{self.n_way}way_{self.k_shot}shot" + (DISJOINT if self.group_disjoint else "")

    @classmethod
    def coerce(cls, value: Any) -> "FewShotSetting":
        """A setting from a setting, a dict of fields or (n_way, k_shot[, q_query[, episodes]])."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if isinstance(value, (tuple, list)) and 2 <= len(value) <= 4:
            return cls(*value)
        raise ValueError(f"cannot read a few-shot setting from {value!r}; use "
                         "(n_way, k_shot, q_query, episodes), e.g. (5, 1, 15, 400)")


@dataclasses.dataclass
class SettingResult:
    setting: FewShotSetting
    accuracy: Summary  # the ensemble, in percent over episodes
    views: dict[str, Summary]  # each member on its own
    ensemble_members: list[str]
    per_class: dict[str, float]  # ensemble accuracy over all queries of each class, percent
    per_class_queries: dict[str, int]
    eligible: dict[str, int]
    excluded: dict[str, int]
    episode_accuracy: np.ndarray  # (E,) ensemble accuracy per episode


@dataclasses.dataclass
class Report:
    results: list[SettingResult]
    classifier: str
    seed: int
    num_clips: int
    num_classes: int
    num_skipped: int = 0
    classifier_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    groups_per_class: dict[str, int] | None = None  # class -> recordings, when grouped
    not_evaluated: dict[str, str] = dataclasses.field(default_factory=dict)  # setting -> why

    def __getitem__(self, name: str) -> SettingResult:
        for result in self.results:
            if result.setting.name == name:
                return result
        raise KeyError(f"no setting {name!r}; have {[r.setting.name for r in self.results]}")

    def as_summary(self) -> dict[str, float | int | str]:
        """Flat values for the W&B summary (numbers; a setting that could not be evaluated gives
        its reason under `fewshot/<setting>/not_evaluated`); MM-CDFSL's names refer to the FIRST
        setting."""
        out: dict[str, float | int | str] = {}
        for r in self.results:
            p = f"fewshot/{r.setting.name}"
            out.update({f"{p}/acc": r.accuracy.mean, f"{p}/std": r.accuracy.std,
                        f"{p}/se": r.accuracy.se, f"{p}/ci95": r.accuracy.ci95,
                        f"{p}/episodes": r.accuracy.n, f"{p}/q_query": r.setting.q_query,
                        f"{p}/num_excluded_classes": len(r.excluded)})
            for view, s in r.views.items():
                out[f"{p}/view/{view}/acc"] = s.mean
                out[f"{p}/view/{view}/ci95"] = s.ci95
            for name, acc in r.per_class.items():
                out[f"{p}/class/{name}/acc"] = acc
        for name, value in self.classifier_options.items():
            if isinstance(value, (bool, int, float)):
                out[f"fewshot/classifier/{name}"] = value
        for name, count in (self.groups_per_class or {}).items():
            out[f"fewshot/groups/{name}"] = count
        for name, why in self.not_evaluated.items():
            out[f"fewshot/{name}/not_evaluated"] = why
        if self.results:
            first = self.results[0].accuracy
            out.update({"top1_action_ensemble": first.mean, "top1_action_ensemble_std": first.std,
                        "top1_action_ensemble_std_error": first.se})
        return out

    def rows(self) -> tuple[list[str], list[list]]:
        """(columns, rows) of a W&B Table: one row per setting and view, the ensemble first."""
        columns = ["setting", "n_way", "k_shot", "q_query", "episodes", "view", "acc", "std",
                   "se", "ci95"]
        rows = []
        for r in self.results:
            s = r.setting
            for view, stat in [(ENSEMBLE, r.accuracy), *r.views.items()]:
                rows.append([s.name, s.n_way, s.k_shot, s.q_query, stat.n, view, stat.mean,
                             stat.std, stat.se, stat.ci95])
        return columns, rows

    def class_rows(self) -> tuple[list[str], list[list]]:
        columns = ["setting", "class", "acc", "queries"]
        rows = [[r.setting.name, name, acc, r.per_class_queries[name]]
                for r in self.results for name, acc in r.per_class.items()]
        return columns, rows

    def to_json(self) -> dict[str, Any]:
        """Everything, nested, for summary.json."""
        return {
            "summary": self.as_summary(),
            "classifier": self.classifier, "classifier_options": self.classifier_options,
            "seed": self.seed, "num_clips": self.num_clips,
            "num_classes": self.num_classes, "num_skipped_clips": self.num_skipped,
            "groups_per_class": self.groups_per_class, "not_evaluated": self.not_evaluated,
            "conventions": {"unit": "percent", "std_ddof": STD_DDOF, "se": "std / sqrt(episodes)",
                            "ci95": f"{Z_95} * se",
                            "aliases": "top1_action_ensemble* = first setting's ensemble"},
            "settings": [{
                **dataclasses.asdict(r.setting), "name": r.setting.name,
                "ensemble": r.accuracy.as_dict(), "ensemble_members": r.ensemble_members,
                "views": {v: s.as_dict() for v, s in r.views.items()},
                "per_class": r.per_class, "per_class_queries": r.per_class_queries,
                "eligible_classes": r.eligible, "excluded_classes": r.excluded,
            } for r in self.results],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    def log_to(self, logger) -> None:
        """Summary scalars and two tables through a `mmdistill.tracking.Logger`."""
        logger.summary(self.as_summary())
        logger.table("fewshot", *self.rows())
        logger.table("fewshot_per_class", *self.class_rows())

    def table(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.classifier_options.items())
        lines = [f"Few-shot evaluation: classifier {self.classifier}"
                 + (f" ({options})" if options else "") + f", seed {self.seed}, "
                 f"{self.num_clips} clips in {self.num_classes} classes"
                 + (f", {self.num_skipped} clips skipped as bad" if self.num_skipped else "")
                 + f". Accuracy in %, std ddof={STD_DDOF}, se = std/sqrt(episodes), "
                 f"ci95 = {Z_95}*se.",
                 f"{'setting':<12} {'episodes':>8} {'view':<14} {'acc':>7} {'std':>7} "
                 f"{'se':>6} {'ci95':>6}"]
        for r in self.results:
            for i, (view, s) in enumerate([(ENSEMBLE, r.accuracy), *r.views.items()]):
                head = f"{r.setting.name:<12} {s.n:>8}" if i == 0 else " " * 21
                lines.append(f"{head} {view:<14} {s.mean:7.2f} {s.std:7.2f} {s.se:6.2f} "
                             f"{s.ci95:6.2f}")
        for r in self.results:
            s = r.setting
            lines.append(f"{s.name} ensemble = mean probability of {' + '.join(r.ensemble_members)}")
            per_class = ", ".join(f"{n} {a:.1f}" for n, a in r.per_class.items())
            lines.append(f"{s.name} per-class accuracy (ensemble): {per_class}")
            if r.excluded:
                excluded = ", ".join(f"{n} ({c})" for n, c in r.excluded.items())
                why = (f"no split into {s.k_shot} support and {s.q_query} query clips from "
                       f"different groups" if s.group_disjoint
                       else f"fewer than {s.k_shot + s.q_query} clips")
                lines.append(f"{s.name} excluded ({why}): {excluded}")
        if self.groups_per_class is not None:
            lines.append(f"groups (recordings) per class: {describe(self.groups_per_class)}; "
                         f"*{DISJOINT}: support and queries of a class from different groups")
        for name, why in self.not_evaluated.items():
            lines.append(f"{name} not evaluated: {why}")
        return "\n".join(lines)


@dataclasses.dataclass
class _Group:
    """Members sharing one fitted classifier: the support view and one query view per member."""

    support: torch.Tensor  # (N_clips, D)
    queries: dict[str, torch.Tensor]  # member -> (N_clips, D)


def _groups(bank: FeatureBank, ensemble_heads: bool) -> tuple[list[_Group], list[str]]:
    groups = [_Group(bank.views[POOLED], {POOLED: bank.views[POOLED]})]
    ensemble = [POOLED]
    if bank.num_mask_views:
        masked = bank.views[MASKED]
        names = [f"masked{v}" for v in range(masked.shape[0])]
        groups.append(_Group(masked[0], dict(zip(names, masked))))
        ensemble = names
    for view in bank.head_views:
        groups.append(_Group(bank.views[view], {view: bank.views[view]}))
        if ensemble_heads:
            ensemble = ensemble + [view]
    if ensemble_heads and not bank.head_views:
        raise ValueError("ensemble_heads=True but the feature bank has no CMT head views; "
                         "extract with extra_heads (fewshot.use_heads = True)")
    return groups, ensemble


@functools.lru_cache(maxsize=32)
def _shared_episodes(labels: tuple[int, ...], class_names: tuple[str, ...], n_way: int, k_shot: int,
                     q_query: int, episodes: int, seed: int, groups: tuple[str, ...] | None) -> Episodes:
    """The episodes of one setting, drawn once for every model evaluated on the same clips (the
    demo's ten models drew the same recording-disjoint episodes ten times: a tenth of its
    evaluate step). Shared between callers: read them, never write into their tensors."""
    return sample_episodes(torch.tensor(labels, dtype=torch.long), class_names, n_way, k_shot, q_query,
                           episodes, seed, groups=groups)


def _evaluate_setting(bank: FeatureBank, setting: FewShotSetting, classify, seed: int,
                      ensemble_heads: bool, device: torch.device, chunk: int,
                      groups: Sequence[str] | None = None) -> SettingResult:
    episodes = _shared_episodes(tuple(bank.labels.tolist()), tuple(bank.class_names), setting.n_way,
                                setting.k_shot, setting.q_query, setting.episodes, seed,
                                tuple(groups) if setting.group_disjoint and groups is not None else None)
    groups, ensemble = _groups(bank, ensemble_heads)
    members = [m for g in groups for m in g.queries]
    correct = {m: [] for m in [ENSEMBLE, *members]}
    for start in range(0, setting.episodes, chunk):
        part = slice(start, start + chunk)
        support_idx, query_idx = episodes.support[part], episodes.query[part]
        support_labels = episodes.support_labels[part].to(device)
        query_labels = episodes.query_labels[part].to(device)
        probs = {}
        for group in groups:
            # One fit per group; the group's query views are stacked along the query axis.
            query = torch.cat([q[query_idx] for q in group.queries.values()], dim=1)
            p = classify(group.support[support_idx].to(device), support_labels, query.to(device),
                         setting.n_way)
            probs.update(zip(group.queries, p.split(query_idx.shape[1], dim=1)))
        probs[ENSEMBLE] = torch.stack([probs[m] for m in ensemble]).mean(0)
        for m, p in probs.items():
            correct[m].append((p.argmax(-1) == query_labels).cpu())
    correct = {m: torch.cat(c) for m, c in correct.items()}  # (E, N*Q) bool

    global_class = episodes.classes.gather(1, episodes.query_labels)  # (E, N*Q)
    num_classes = len(bank.class_names)
    hits = torch.bincount(global_class.flatten(), weights=correct[ENSEMBLE].flatten().double(),
                          minlength=num_classes)
    seen = torch.bincount(global_class.flatten(), minlength=num_classes)
    per_class = {bank.class_names[c]: 100.0 * hits[c].item() / seen[c].item()
                 for c in range(num_classes) if seen[c] > 0}
    per_class_queries = {bank.class_names[c]: int(seen[c]) for c in range(num_classes) if seen[c]}
    episode_acc = {m: 100.0 * c.double().mean(1).numpy() for m, c in correct.items()}
    return SettingResult(
        setting=setting, accuracy=summarize(episode_acc[ENSEMBLE]),
        views={m: summarize(episode_acc[m]) for m in members}, ensemble_members=ensemble,
        per_class=per_class, per_class_queries=per_class_queries, eligible=episodes.eligible,
        excluded=episodes.excluded, episode_accuracy=episode_acc[ENSEMBLE])


def evaluate(bank: FeatureBank, settings: Sequence[Any], classifier: str = "logistic",
             seed: int = 0, ensemble_heads: bool = False, device: torch.device | str = "cpu",
             episode_chunk: int = 1000,
             classifier_overrides: Mapping[str, Any] | None = None,
             groups: Sequence[str] | None = None) -> Report:
    """Every setting on the same features; each setting's episodes come from `seed` alone.

    The classifier runs with its gin-bound options (e.g. `fewshot_logistic.l2_normalize`),
    overridden by `classifier_overrides`; the report records the options used.
    `groups` (one per bank row): every setting is also evaluated group-disjoint; a disjoint
    setting with fewer than N classes that can give an episode is reported as not evaluated.
    """
    settings = [FewShotSetting.coerce(s) for s in settings]
    if groups is not None:
        if len(groups) != bank.num_clips:
            raise ValueError(f"{len(groups)} groups for {bank.num_clips} clips in the bank")
        # Each standard setting gets its disjoint twin unless one is listed (e.g. with fewer
        # queries, when few classes have enough recordings for the standard Q).
        listed = {s.name for s in settings}
        settings = settings + [dataclasses.replace(s, group_disjoint=True) for s in settings
                               if not s.group_disjoint
                               and dataclasses.replace(s, group_disjoint=True).name not in listed]
    if not settings:
        raise ValueError("no few-shot settings given")
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"few-shot settings {names} repeat an N-way K-shot pair; their report "
                         "keys would collide")
    options = classifier_options(classifier, classifier_overrides)
    classify = functools.partial(get_classifier(classifier), **options)
    results, not_evaluated = [], {}
    for s in settings:
        try:
            results.append(_evaluate_setting(bank, s, classify, seed, ensemble_heads,
                                             torch.device(device), episode_chunk, groups))
        except TooFewClasses as err:
            if not s.group_disjoint:
                raise
            not_evaluated[s.name] = str(err)
    per_class_groups = (None if groups is None else
                        groups_per_class(bank.labels.tolist(), groups, bank.class_names))
    return Report(results, classifier, seed, bank.num_clips, len(bank.class_names),
                  bank.num_skipped, options, per_class_groups, not_evaluated)


@gin.configurable("fewshot", denylist=["model", "loader", "device", "amp_dtype", "heads",
                                       "checkpoint", "logger", "summary_path", "input_key",
                                       "cache_dir"])
def run_fewshot(model, loader, device: torch.device | str = "cpu",
                amp_dtype: torch.dtype | None = None, heads: Mapping[str, Any] | None = None,
                checkpoint: str | Path | None = None, logger=None,
                summary_path: str | Path | None = None,
                settings: Sequence[Any] = ((5, 1, 15, 400),),
                classifier: str = "logistic", mask_views: int = 0, mask_ratio: float = 0.75,
                use_heads: bool = False, ensemble_heads: bool = False, seed: int = 0,
                mask_seed: int = 0, cache_dir: str | Path | None = None,
                progress: bool = True, input_key: str = "rgb", group_by: str | None = None,
                groups_file: str | Path | None = None) -> Report:
    """Extract (or load cached) features once, then evaluate every setting on them.

    `settings`: a list of (n_way, k_shot, q_query, episodes), each evaluated on the same
    features (the one spelling of a setting). `heads` are the CMT heads, used when `use_heads`.
    `cache_dir`: keep the features there (the evaluate stage passes its run folder's
    feature_cache when evaluate.cache_features, so it is not a binding).
    `checkpoint` names the weights' file for the cache key (else the weights are hashed).
    `seed` draws the episodes, `mask_seed` the tube masks, so a new episode seed reuses the cache.
    `input_key`: the batch field the model reads, its modality (a flow teacher reads 'flow').
    `group_by` ('video' | 'video_folder') or `groups_file`: the recording of each clip
    (`mmdistill.data.groups`); every setting is then also reported group-disjoint.
    """
    extra_heads = dict(heads or {}) if use_heads else {}
    if use_heads and not extra_heads:
        raise ValueError("fewshot.use_heads = True but no CMT heads were passed (heads=...)")

    def extract() -> FeatureBank:
        return extract_features(model, loader, device, amp_dtype, mask_views=mask_views,
                                mask_ratio=mask_ratio, extra_heads=extra_heads, seed=mask_seed,
                                input_key=input_key, progress=progress)

    if cache_dir is None:
        bank = extract()
    else:
        weights = (file_fingerprint(checkpoint) if checkpoint is not None
                   else weights_fingerprint([model, *extra_heads.values()]))
        views = {"mask_views": mask_views, "mask_ratio": mask_ratio if mask_views else None,
                 "heads": sorted(extra_heads), "mask_seed": mask_seed if mask_views else None,
                 "amp_dtype": str(amp_dtype)}
        if input_key != "rgb":  # rgb caches keep the keys they had before modalities existed
            views["input_key"] = input_key
        key = feature_cache_key(weights, dataset_fingerprint(loader.dataset), views)
        path = Path(cache_dir) / f"features-{key[:20]}.pt"
        if path.is_file():
            bank = FeatureBank.load(path, key)
            print(f"few-shot: features from cache {path}")
        else:
            bank = extract()
            bank.key = key
            bank.save(path)
            print(f"few-shot: features cached to {path}")
    groups = bank_groups(bank, loader.dataset, group_by, groups_file)
    report = evaluate(bank, settings, classifier, seed, ensemble_heads, device, groups=groups)
    print(report.table())
    if logger is not None:
        report.log_to(logger)
    if summary_path is not None:
        report.write_json(summary_path)
    return report


def bank_groups(bank: FeatureBank, dataset, group_by: str | None,
                groups_file: str | Path | None) -> list[str] | None:
    """The group of each bank row, from the dataset's clip records (None: not grouped)."""
    if group_by is None and groups_file is None:
        return None
    clips = getattr(dataset, "clips", None)
    if clips is None:
        raise ValueError(f"{type(dataset).__name__} has no `clips` list to take groups from")
    return clip_groups([clips[i].video for i in bank.indices.tolist()], group_by, groups_file)
