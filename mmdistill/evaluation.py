"""The `evaluate` stage: few-shot accuracy of the trained model and of baseline checkpoints
(each on its own modality), on the same clips and the same episodes, printed side by side.

gin scopes: fewshot_data/clip_data.*, fewshot_data/data_loader.* (the labelled evaluation clips).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import gin
import torch

from mmdistill.context import RunContext
from mmdistill.data.dataset import build_clip_dataset, build_loader
from mmdistill.eval import appearance
from mmdistill.eval.comparison_figure import draw_comparison
from mmdistill.eval.features import weights_fingerprint
from mmdistill.eval.fewshot import run_fewshot
from mmdistill.data.modalities.specs import all_specs, model_in_chans
from mmdistill.models.heads import FC_NORM_EPS, NormedPooling
from mmdistill.models.vit import video_vit
from mmdistill.ckpt.evaluation import models_for_evaluation
from mmdistill.ckpt.format import FORMAT

UNTRAINED = "untrained"
# evaluate.foreign_pooling: how the pooled feature of a checkpoint not written by mmdistill is
# read. 'mean': the encoder's own pooling (a pretraining encoder: mean of its normed tokens).
# 'fresh_layer_norm': that mean through an untrained LayerNorm (eps 1e-5, weight 1, bias 0), as
# MM-CDFSL's evaluation does: its classifier builds fc_norm with torch's default LayerNorm
# (models/videomae_classifier.py:196, 218-219) and loads only the checkpoint's `encoder.` keys
# (videomae_classifier.py:249-263), so even a distilled student's trained fc_norm is dropped.
FOREIGN_POOLING = ("mean", "fresh_layer_norm")


def _load_for_eval(path: str | Path, prefix: str | None, trust: bool, pooling: str = "mean"):
    """The encoder (and, for our distillation checkpoints, the CMT heads) stored in `path`."""
    model, heads, report = models_for_evaluation(path, prefix, trust)
    print(f"[evaluate] {path}: {report.format} checkpoint, model {report.prefix or '(root)'}"
          f", {report.loaded} tensors loaded", flush=True)
    return _foreign_pooling(model, report.format, pooling, path), heads


def _foreign_pooling(model, checkpoint_format: str, pooling: str, path: str | Path):
    """`model`, or for a foreign checkpoint under 'fresh_layer_norm' a NormedPooling of it."""
    if pooling == "mean" or checkpoint_format == FORMAT:
        return model
    if model.arch["use_mean_pooling"]:
        print(f"[evaluate] {path}: evaluate.foreign_pooling='fresh_layer_norm' not applied: the "
              f"model pools through its own trained fc_norm", flush=True)
        return model
    print(f"[evaluate] {path}: pooled feature through a fresh LayerNorm (eps {FC_NORM_EPS:g}; "
          f"evaluate.foreign_pooling='fresh_layer_norm')", flush=True)
    return NormedPooling(model, torch.nn.LayerNorm(model.embed_dim, eps=FC_NORM_EPS))


def _untrained_model(seed: int, modality: str = "rgb", scope: str = "student"):
    """The floor every trained model must clear: the student's architecture (student/video_vit)
    at its seeded random initialisation, no checkpoint; for a teacher's modality, the teacher's
    (encoder/video_vit) with that modality's input channels."""
    in_chans = model_in_chans(modality, data_scope="fewshot_data")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with gin.config_scope(scope):
            model = video_vit(in_chans=in_chans)
    print(f"[evaluate] untrained {modality}: {scope}/video_vit ({in_chans} channels) at random "
          f"initialisation (seed {seed}), no checkpoint", flush=True)
    return model, {}


@gin.configurable("evaluate", denylist=["ctx", "ckpt_path"])
def evaluate_stage(ctx: RunContext, ckpt_path: Path | None,
                   baselines: Mapping[str, str] | None = None, prefix: str | None = None,
                   trust_checkpoint: bool = False, cache_features: bool = True,
                   modalities: Mapping[str, str] | None = None,
                   untrained: bool = False, untrained_modalities: Sequence[str] = (),
                   foreign_pooling: str = "mean",
                   appearance_baseline: bool = True) -> dict[str, Any]:
    """Few-shot accuracy of the trained (or `experiment.ckpt_path`) model and of each baseline
    checkpoint (e.g. {'teacher_rgb': path}), on the same clips and the same episodes.

    `modalities` names the input of each model that does not read RGB, e.g. {'teacher_flow':
    'flow', 'teacher_skeleton': 'skeleton'}, so a teacher is judged on what it was trained on.
    Each modality's clips come from the same `fewshot_data/clip_data` annotations, checked equal,
    so every model meets identical episodes. The returned numbers reach summary.json and the W&B
    summary through experiment().

    untrained: also evaluate 'untrained', the student's architecture at its seeded random
    initialisation (`experiment.seed`), so a trained model is judged against what no training
    gives. The 'trained' model is compared with every other one per setting from the 95% CIs
    (`fewshot/<setting>/vs_<name>` = 'better' | 'overlap' | 'worse'), printed under the table.

    untrained_modalities: e.g. ('flow', 'skeleton'): also evaluate 'untrained_<modality>' for
    each, the teacher's architecture (encoder/video_vit) with that modality's channels at its
    seeded random initialisation, read on that modality: the floor of a teacher on its own input.

    foreign_pooling: 'mean' | 'fresh_layer_norm' for checkpoints mmdistill did not write (see
    FOREIGN_POOLING); ours always pool as they were trained.
    appearance_baseline: also evaluate 'colour_histogram' (`mmdistill.eval.appearance`): RGB
    colour histograms, nearest class mean, on the same episodes: what scene colour alone gives."""
    if foreign_pooling not in FOREIGN_POOLING:
        raise ValueError(f"evaluate.foreign_pooling={foreign_pooling!r}: choose 'mean' (the "
                         f"encoder's own pooling) or 'fresh_layer_norm' (MM-CDFSL's evaluation)")
    models: dict[str, str | Path | None] = {}
    if ckpt_path is not None:
        models["trained"] = ckpt_path
    if untrained:
        if UNTRAINED in (baselines or {}):
            raise ValueError(f"evaluate.baselines names '{UNTRAINED}', which evaluate.untrained "
                             f"= True adds itself: rename that baseline")
        models[UNTRAINED] = None
    modalities = dict(modalities or {})
    for modality in untrained_modalities:
        name = f"{UNTRAINED}_{modality}"
        if name in (baselines or {}) or name in modalities:
            raise ValueError(f"evaluate.baselines or evaluate.modalities names '{name}', which "
                             f"evaluate.untrained_modalities = {tuple(untrained_modalities)} adds "
                             f"itself: rename that baseline")
        models[name] = None
        modalities[name] = modality
    models.update(baselines or {})
    if appearance_baseline:
        if appearance.NAME in models:
            raise ValueError(f"evaluate.baselines names '{appearance.NAME}', which "
                             f"evaluate.appearance_baseline = True adds itself: rename that baseline")
        models[appearance.NAME] = appearance.NAME
    if not models:
        raise ValueError("nothing to evaluate: set experiment.ckpt_path (or train first), or "
                         "evaluate.baselines = {'name': 'path/to/checkpoint'}")
    unknown = set(modalities or {}) - set(models)
    if unknown:
        raise ValueError(f"evaluate.modalities names {sorted(unknown)}, which are not evaluated "
                         f"models {sorted(models)} ('trained' or an evaluate.baselines name)")
    _check_modality_names(modalities or {})
    for name, path in models.items():
        if path is not None and name != appearance.NAME and not Path(path).exists():
            raise FileNotFoundError(f"evaluate: checkpoint for '{name}' not found: {path}")
    if not ctx.is_main:
        return {}
    modality_of = {name: (modalities or {}).get(name, "rgb") for name in models}
    rgb_first = sorted(set(modality_of.values()), key=lambda m: (m != "rgb", m))
    loaders = _fewshot_loaders(ctx, rgb_first)
    summary: dict[str, Any] = {}
    reports = {}
    for name, path in models.items():
        modality = modality_of[name]
        if name == appearance.NAME:
            if modality != "rgb":
                raise ValueError(f"evaluate.modalities gives '{name}' {modality!r}; it reads RGB")
            model, heads = appearance.ColourHistogram(loaders["rgb"].dataset.normalize["rgb"]), {}
        else:
            model, heads = (_untrained_model(ctx.seed) if name == UNTRAINED else
                            _untrained_model(ctx.seed, modality, "encoder") if path is None else
                            _load_for_eval(path, prefix if name == "trained" else None,
                                           trust_checkpoint, foreign_pooling))
        _check_input_channels(name, model, modality, loaders[modality].dataset.channels(modality))
        extra = {} if heads else {"use_heads": False, "ensemble_heads": False}  # baselines
        if name == appearance.NAME:  # its own classifier, on the unmasked clip only
            extra.update(classifier=appearance.CLASSIFIER, mask_views=0)
        report = run_fewshot(model.to(ctx.device), loaders[modality], device=ctx.device,
                             amp_dtype=ctx.amp_dtype, heads={k: h.to(ctx.device) for k, h in heads.items()},
                             checkpoint=None, logger=None,  # cache keyed on the weights themselves
                             cache_dir=ctx.dir / "feature_cache" if cache_features else None,
                             input_key=modality, **extra)
        reports[name] = report
        # Which weights produced these numbers, so a run can prove it evaluated what it names.
        summary[f"evaluated/{name}/checkpoint"] = (
            f"none (random init, seed {ctx.seed}, {model.in_chans} channels)" if path is None else
            "none (RGB colour histograms, nearest class mean)" if name == appearance.NAME
            else str(path))
        encoder = model.encoder if isinstance(model, NormedPooling) else model
        summary[f"evaluated/{name}/weights_sha"] = weights_fingerprint([encoder])
        if encoder is not model:  # the pooled LayerNorm, fingerprinted on its own
            summary[f"evaluated/{name}/fc_norm_sha"] = weights_fingerprint([model.fc_norm])
        summary[f"evaluated/{name}/modality"] = modality
        for key, value in report.as_summary().items():
            summary[key if name == "trained" else f"{name}/{key}"] = value
        report.write_json(ctx.dir / f"fewshot_{name}.json")
        columns, rows = report.rows()
        ctx.logger.table(f"fewshot/{name}", ["model", *columns], [[name, *r] for r in rows])
    clip_counts = {name: (r.num_clips, r.num_skipped) for name, r in reports.items()}
    if len(set(clip_counts.values())) > 1:
        raise ValueError(f"the models were evaluated on different clips (clips, skipped as bad): "
                         f"{clip_counts}, so their episodes differ; fix or drop the bad clips of "
                         f"one modality (fewshot_data/clip_data.on_bad_clip = 'error' names them)")
    if len(reports) > 1:
        print(comparison_table(reports, modality_of), flush=True)
        picture = draw_comparison(reports, ctx.dir / "comparison.png",
                                  {n: f"{n} ({m})" for n, m in modality_of.items()})
        ctx.logger.image("fewshot/comparison", picture)
        print(f"[evaluate] comparison picture: {picture}", flush=True)
    if "trained" in reports and len(reports) > 1:
        verdicts = compare_with_baselines(reports)
        print(verdict_lines(reports, verdicts), flush=True)
        summary.update({f"fewshot/{setting}/vs_{name}": word
                        for (setting, name), word in verdicts.items()})
    return summary


def _check_modality_names(modalities: Mapping[str, str]) -> None:
    """A misspelt modality is named here, as an evaluate.modalities value, not later as a
    reader missing from clip_data.sources."""
    import difflib

    try:
        custom = set(gin.query_parameter("fewshot_data/clip_data.sources") or {})
    except ValueError:
        custom = set()
    known = sorted(set(all_specs()) | custom)
    for name, modality in modalities.items():
        if modality not in known:
            close = difflib.get_close_matches(str(modality), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"evaluate.modalities = {{{name!r}: {modality!r}}}: {modality!r} is not a "
                             f"modality ({', '.join(known)}){hint}")


def _fewshot_loaders(ctx: RunContext, modalities: Sequence[str]) -> dict[str, Any]:
    """One labelled loader per modality, all from `fewshot_data/clip_data`: the same clips, in the
    same order, with the same class indices (checked), hence the same episodes."""
    loaders, first = {}, None
    for modality in modalities:
        with gin.config_scope("fewshot_data"):
            dataset = build_clip_dataset(modalities=[modality], mode="eval", seed=ctx.seed,
                                         labeled=True)
            loaders[modality] = build_loader(dataset, shuffle=False, drop_last=False,
                                             seed=ctx.seed)
        print(f"[evaluate] {modality}: {len(dataset)} labelled clips in {dataset.num_classes} "
              f"classes", flush=True)
        if first is None:
            first = dataset
        elif dataset.clips != first.clips or dataset.class_names != first.class_names:
            raise ValueError(f"the {modality} few-shot clips differ from the "
                             f"{next(iter(loaders))} ones (clip list or class indices), so the "
                             f"episodes would differ; every modality must read the same "
                             f"fewshot_data/clip_data.annotations")
    return loaders


def _check_input_channels(name: str, model, modality: str, channels: int) -> None:
    """A model read on a modality with other channels (its spec's, mmdistill/data/modalities/) is
    a wrong evaluate.modalities entry (or a missing one, for a non-RGB checkpoint read as RGB, the
    default): say so before the ViT fails on shapes."""
    if modality == "rgb" and model.in_chans != channels:
        raise ValueError(f"evaluate: '{name}' takes {model.in_chans} input channels, not RGB's {channels}; "
                         f"name its modality: evaluate.modalities = {{'{name}': 'flow'}} "
                         f"(or 'skeleton')")
    if model.in_chans != channels:
        raise ValueError(f"evaluate: '{name}' takes {model.in_chans} input channels but its "
                         f"modality '{modality}' (evaluate.modalities) has {channels}; give it the "
                         f"modality it was trained on")


def comparison_table(reports: Mapping[str, Any],
                     modalities: Mapping[str, str] | None = None) -> str:
    """Side by side: one row per model (with its input modality when given), one column per
    setting, mean +/- 95% CI."""
    names = list(reports)
    labels = {n: f"{n} ({modalities[n]})" if modalities else n for n in names}
    settings = [r.setting.name for r in next(iter(reports.values())).results]
    width = max(len("model"), *(len(labels[n]) for n in names)) + 2
    cell = {s: max(16, len(s) + 2) for s in settings}  # '5way_1shot_disjoint' is wider
    lines = ["Few-shot accuracy (%, mean +/- 95% CI over the same episodes)",
             f"{'model':<{width}}" + "".join(f"{s:>{cell[s]}}" for s in settings)]
    for name in names:
        cells = "".join(f"{reports[name][s].accuracy.mean:.1f} +/- {reports[name][s].accuracy.ci95:.1f}"
                        .rjust(cell[s]) for s in settings)
        lines.append(f"{labels[name]:<{width}}" + cells)
    return "\n".join(lines)


def verdict(mean: float, ci95: float, other_mean: float, other_ci95: float) -> str:
    """'better' or 'worse' only when the two 95% intervals do not overlap, else 'overlap'."""
    if mean - ci95 > other_mean + other_ci95:
        return "better"
    if mean + ci95 < other_mean - other_ci95:
        return "worse"
    return "overlap"


def compare_with_baselines(reports: Mapping[str, Any],
                           trained: str = "trained") -> dict[tuple[str, str], str]:
    """(setting, other model) -> verdict of `trained` against it, for every setting and model."""
    ours = reports[trained]
    out = {}
    for result in ours.results:
        setting = result.setting.name
        for name, report in reports.items():
            if name != trained:
                other = report[setting].accuracy
                out[setting, name] = verdict(result.accuracy.mean, result.accuracy.ci95,
                                             other.mean, other.ci95)
    return out


_WORDS = {"better": "better (CIs do not overlap)", "worse": "worse (CIs do not overlap)",
          "overlap": "not distinguishable (CIs overlap)"}


def verdict_lines(reports: Mapping[str, Any], verdicts: Mapping[tuple[str, str], str],
                  trained: str = "trained") -> str:
    """The 'did distillation help' lines, one per setting and compared model, from the CIs."""
    lines = [f"Did distillation help? ({trained} against each model, 95% CIs)"]
    for (setting, name), word in verdicts.items():
        a, b = reports[trained][setting].accuracy, reports[name][setting].accuracy
        lines.append(f"{setting}: {trained} {a.mean:.1f} +/- {a.ci95:.1f} vs {name} "
                     f"{b.mean:.1f} +/- {b.ci95:.1f}: {_WORDS[word]}")
    return "\n".join(lines)
