"""The training stages `experiment.task` can name (the mapping is `experiment.TASKS`): build
models and data from gin and hand them to the loop. The evaluate stage is mmdistill/evaluation.py.

gin scopes say which model or dataset a binding is for:
  student/video_vit.*, teacher_<modality>/video_vit.*, teacher_<modality>/pretrained.*  (models)
  encoder/video_vit.*                                   (the encoder a pretraining run trains)
  unlabeled/clip_data.*, unlabeled/data_loader.*        (distillation / pretraining clips)
  source/clip_data.*                                    (labelled stage-1 source clips)
  fewshot_val_data/clip_data.*                          (validation clips, class-disjoint)
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import gin
import torch

from mmdistill.context import RunContext
from mmdistill.data.annotations import class_names_of, read_annotations
from mmdistill.data.cycled import CycledClips, distill_epoch_length
from mmdistill.data.dataset import build_clip_dataset, build_loader
from mmdistill.data.masking import TubeMaskGenerator, mask_generator
from mmdistill.data.modalities.specs import model_in_chans, spec_of
from mmdistill.data.paired import PairedClipDataset, source_seed
from mmdistill.eval.fewshot import run_fewshot
from mmdistill.leakage import check_leakage
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.heads import ActionHead, StudentWithHeads, cmt_head
from mmdistill.ckpt.loading import initialise_from_checkpoint, initialise_mae
from mmdistill.models.vit import VideoViT, video_vit
from mmdistill.train.distributed import any_rank
from mmdistill.train.loop import train
from mmdistill.train.objectives import Distillation, MaskedAutoencoding
from mmdistill.viz import save_reconstructions

DEFAULT_MODALITIES = ("rgb", "flow", "skeleton")


# --- distillation -------------------------------------------------------------------------

def _teacher_paths(modalities: Sequence[str], checkpoints) -> dict[str, str | None]:
    if checkpoints is None:
        return {m: None for m in modalities}
    if isinstance(checkpoints, Mapping):
        unknown = set(checkpoints) - set(modalities)
        if unknown:
            raise ValueError(f"distill.teacher_checkpoints names {sorted(unknown)}, not in "
                             f"distill.modalities {list(modalities)}")
        return {m: checkpoints.get(m) for m in modalities}
    if len(checkpoints) != len(modalities):
        raise ValueError(f"distill.teacher_checkpoints has {len(checkpoints)} paths for "
                         f"{len(modalities)} modalities {list(modalities)}: give one per modality, "
                         f"in the same order (the tennis fork's [rgb, flow, skeleton]).")
    return dict(zip(modalities, checkpoints))


@gin.configurable("distill")
def build_distillation(modalities: Sequence[str] = DEFAULT_MODALITIES,
                       teacher_checkpoints: Sequence[str] | Mapping[str, str] | None = None,
                       student_init: str | None = "teacher", student_input: str = "rgb",
                       feature: str = "tokens", mask_ratio: float = 0.75,
                       mask_type: str = "tube",
                       target_norm: bool = False, loss: str = "mse",
                       student_fc_norm: bool = False,
                       weights: Mapping[str, float] | None = None,
                       allow_random_teachers: bool = False) -> tuple[Distillation, float, str]:
    """Teachers (frozen, from checkpoints), student, one CMT head per teacher.

    student_init: 'teacher' copies the `student_input` teacher's weights (MM-CDFSL's choice),
    None trains from scratch, any other string is a checkpoint path (student/pretrained.* for its
    prefix). Teachers without a checkpoint are refused unless allow_random_teachers (tests).
    feature: 'pooled' distils the mean of the visible tokens, 'tokens' each visible token.
    student_fc_norm: a trainable LayerNorm on the student's pooled feature (MM-CDFSL's fc_norm);
    target_norm: the teachers' features through a LayerNorm without affine (their fresh fc_norm).
    mask_type: 'tube' (VideoMAE's) or 'bernoulli' (each token hidden with probability
    mask_ratio, one mask per clip for every model: the tennis fork's distillation mask).
    """
    if mask_ratio > 0:  # a bad type or ratio fails here, before any checkpoint is read
        mask_generator(mask_type, (1, 1, 1), mask_ratio)
    elif mask_type != "tube":
        raise ValueError(f"distill.mask_type={mask_type!r} with distill.mask_ratio="
                         f"{mask_ratio}: no token would be hidden, so the type would be ignored. "
                         f"Set mask_ratio > 0 (the tennis fork: 0.75) or drop mask_type")
    paths = _teacher_paths(modalities, teacher_checkpoints)
    teachers: dict[str, VideoViT] = {}
    for modality, path in paths.items():
        if path is None and not allow_random_teachers:
            raise ValueError(f"no checkpoint for the {modality} teacher: set "
                             f"distill.teacher_checkpoints (a list in the order of "
                             f"distill.modalities {list(modalities)}). Random teachers would "
                             f"distil noise.")
        in_chans = model_in_chans(modality)
        with gin.config_scope(f"teacher_{modality}"):
            teacher = video_vit(in_chans=in_chans)
            initialise_from_checkpoint(teacher, path=path)
        teachers[modality] = teacher
    in_chans = model_in_chans(student_input)
    with gin.config_scope("student"):
        student = video_vit(in_chans=in_chans)
        if student_init == "teacher":
            _copy_teacher_into(student, teachers, student_input)
        elif student_init is not None:
            initialise_from_checkpoint(student, path=student_init)
    heads = {m: cmt_head(student.embed_dim, t.embed_dim) for m, t in teachers.items()}
    objective = Distillation(StudentWithHeads(student, heads, feature=feature,
                                              fc_norm=student_fc_norm), teachers,
                             student_input=student_input, target_norm=target_norm, loss=loss,
                             weights=weights)
    return objective, mask_ratio, mask_type


def _copy_teacher_into(student: VideoViT, teachers: dict[str, VideoViT], modality: str) -> None:
    if modality not in teachers:
        raise ValueError(f"distill.student_init='teacher' needs a {modality} teacher; have "
                         f"{sorted(teachers)}. Set student_init to a checkpoint path or None.")
    source = teachers[modality]
    # sincos_grid records where a resampled fixed table came from; it is copied below.
    differs = {k: (v, source.arch[k]) for k, v in student.arch.items()
               if k != "sincos_grid" and source.arch.get(k) != v}
    if differs:
        raise ValueError(f"distill.student_init='teacher' but the student differs from the "
                         f"{modality} teacher: " + ", ".join(f"{k} {a} vs {b}" for k, (a, b)
                                                             in differs.items())
                         + ". Make student/video_vit match teacher_rgb/video_vit.")
    student.load_state_dict(source.state_dict())
    if source.arch["pos_embed"] == "sincos":
        student.use_sincos_table_of(source.arch["sincos_grid"])


def _train_loader(ctx: RunContext, modalities: Sequence[str], grid, mask_ratio: float,
                  models: Mapping[str, VideoViT], epoch_length: int | None = None,
                  mask_type: str = "tube"):
    mask = mask_generator(mask_type, grid, mask_ratio) if mask_ratio > 0 else None
    with gin.config_scope("unlabeled"):
        dataset = build_clip_dataset(modalities=list(modalities), mode="train", mask=mask,
                                     seed=ctx.seed)
        for modality in modalities:
            check_channels(dataset, modality, models.get(modality))
        if epoch_length is not None:  # distill_data.epoch_length: the clips cycled
            print(f"[data] {len(dataset)} target clips cycled to {epoch_length} items per epoch, "
                  f"reshuffled every epoch", flush=True)
            dataset = CycledClips(dataset, epoch_length, ctx.seed)
        loader = build_loader(dataset, seed=ctx.seed, rank=ctx.rank, world_size=ctx.world_size)
    print(f"[data] {len(dataset)} training clips, modalities {list(modalities)}, "
          f"mask ratio {mask_ratio}" + (f" ({mask_type})" if mask_ratio > 0 else ""), flush=True)
    return loader


def distill_stage(ctx: RunContext, resume_from: Path | None) -> Path:
    check_leakage("distill")
    objective, mask_ratio, mask_type = build_distillation()
    modalities = sorted(set(objective.teachers) | {objective.student_input})
    models = {**objective.teachers, objective.student_input: objective.trainable.student}
    loader = _train_loader(ctx, modalities, objective.trainable.student.grid_size, mask_ratio, models,
                           distill_epoch_length(), mask_type)
    summary = train(objective, loader, ctx, resume_from=resume_from,
                    epoch_end=validation_hook(ctx, objective.trainable.feature_model()))
    return Path(summary["checkpoint"])


@gin.configurable("validation", denylist=["ctx", "model"])
def validation_hook(ctx: RunContext, model: VideoViT, eval_every: int = 0,
                    annotations: str | None = None):
    """Few-shot accuracy of `model` every `eval_every` epochs on a validation split whose
    classes are disjoint from the test classes (MM-CDFSL validated on its test file's classes).

    The clips come from `annotations` (read like `fewshot_data/clip_data`, under the scope
    `fewshot_val_data`); settings and classifier are the `fewshot.*` ones. Logged as `val/...`.
    """
    if not eval_every:
        return None
    if annotations is None:
        raise ValueError("validation.eval_every is set but validation.annotations is not: give a "
                         "labelled clip list whose classes are disjoint from the test classes")
    loader = None

    def run(epoch: int, global_step: int) -> dict[str, float] | None:
        """The `val/...` metrics it logged (rank 0; None elsewhere and between validations),
        which train.keep_best_k ranks checkpoints by."""
        nonlocal loader
        if (epoch + 1) % eval_every:
            return None
        failure, metrics = None, None
        if ctx.is_main:
            try:
                if loader is None:
                    with gin.config_scope("fewshot_val_data"):
                        dataset = build_clip_dataset(annotations, modalities=["rgb"],
                                                     mode="eval", seed=ctx.seed, labeled=True)
                        loader = build_loader(dataset, shuffle=False, drop_last=False,
                                              seed=ctx.seed)
                    _check_disjoint_from_test(dataset.class_names)
                was_training = model.training
                report = run_fewshot(model, loader, device=ctx.device, amp_dtype=ctx.amp_dtype,
                                     use_heads=False, ensemble_heads=False, progress=False)
                model.train(was_training)
                metrics = {f"val/{k}": v for k, v in report.as_summary().items()
                           if isinstance(v, (int, float)) and not k.startswith("top1")}
                ctx.logger.log(metrics, step=global_step)
            except Exception as err:  # re-raised below, after every rank has heard of it
                failure = err
        # Every rank learns whether rank 0 failed, so none is left waiting in a collective.
        failed = any_rank(torch.tensor(failure is not None, device=ctx.device))
        if failure is not None:
            raise failure
        if bool(failed):
            raise RuntimeError("validation failed on rank 0; see its error above")
        return metrics

    return run


def _check_disjoint_from_test(val_classes: Sequence[str]) -> None:
    try:
        test_annotations = gin.query_parameter("fewshot_data/clip_data.annotations")
        if isinstance(test_annotations, gin.config.ConfigurableReference):  # a %MACRO
            test_annotations = test_annotations.scoped_configurable_fn()
    except ValueError:
        return
    shared = set(val_classes) & set(class_names_of(read_annotations(test_annotations, on_bad_entry="skip")))
    if shared:
        raise ValueError(f"validation classes {sorted(shared)} are also test classes "
                         f"({test_annotations}); validate on a class-disjoint split "
                         f"(e.g. `python -m mmdistill.prepare annotations --split-classes`)")


# --- masked-autoencoder pretraining (teachers; stage 1 with a labelled source) --------------

@gin.configurable("pretrain", denylist=["ctx", "resume_from"])
def pretrain_stage(ctx: RunContext, resume_from: Path | None, modality: str = "rgb",
                   mask_ratio: float = 0.9, normalize_target: bool = True,
                   visualize_clips: int = 4, source: bool = False, target: bool = True,
                   lambda_ce: float | None = None, target_recon_weight: float = 0.0,
                   init_checkpoint: str | None = None, init_patch_embed: str = "strict",
                   trust_checkpoint: bool = False) -> Path:
    """VideoMAE pretraining of one modality's encoder (encoder/video_vit.* sets its size; its
    channels follow from the modality's spec); writes a reconstruction grid PNG of a few clips at the end.

    source: also train on labelled source clips (`source/clip_data.*`), each paired with a
    target clip (`unlabeled/clip_data.*`) under one tube mask (mmdistill.data.paired), with an
    action head (`action_head.dropout`): loss = recon_source + lambda_ce * CE
    + target_recon_weight * recon_target. lambda_ce None = the modality spec's `lambda_ce`
    (MM-CDFSL's per-modality value: rgb 0.05, flow 0.01, skeleton 0.01); target_recon_weight 0 = MM-CDFSL
    (recon_target logged, not trained on). target=False trains on the source alone.
    init_checkpoint: start from these weights (`initialise_mae`: any checkpoint format);
    init_patch_embed 'strict' | 'reinit' | 'channel_mean' says what to do when its channel
    count differs from the encoder's.
    """
    if not (source or target):
        raise ValueError("pretrain.source and pretrain.target are both False: switch one on")
    check_leakage("pretrain", labelled=source, unlabelled=target)
    _check_validation_reads_rgb(modality)
    in_chans = model_in_chans(modality)
    with gin.config_scope("encoder"):
        encoder = video_vit(in_chans=in_chans)
    if resume_from is not None and init_checkpoint is not None and not Path(init_checkpoint).exists():
        raise FileNotFoundError(
            f"pretrain.init_checkpoint {init_checkpoint} no longer exists, but this run started "
            f"from it and a resume builds the model from it again (resampled position tables are "
            f"not in {resume_from}) before loading {resume_from}: put the file back where it was")
    if not source:  # plain VideoMAE on the target clips, built exactly as before stage 1 existed
        model = MaskedAutoencoder(encoder)
        _initial_weights(model, init_checkpoint, init_patch_embed, trust_checkpoint)
        objective = MaskedAutoencoding(model, modality=modality, normalize_target=normalize_target)
        loader = _train_loader(ctx, [modality], encoder.grid_size, mask_ratio, {modality: encoder})
    else:
        paired = _paired_clips(ctx, modality, encoder, mask_ratio, target)
        model = MaskedAutoencoder(encoder, action_head=ActionHead(encoder.embed_dim,
                                                                   paired.num_classes))
        _initial_weights(model, init_checkpoint, init_patch_embed, trust_checkpoint)
        objective = MaskedAutoencoding(
            model, modality=modality, normalize_target=normalize_target, source=True,
            target=target, lambda_ce=_lambda_ce(lambda_ce, modality),
            target_recon_weight=target_recon_weight)
        with gin.config_scope("unlabeled"):
            loader = build_loader(paired, seed=ctx.seed, rank=ctx.rank, world_size=ctx.world_size)
    summary = train(objective, loader, ctx, resume_from=resume_from,
                    epoch_end=validation_hook(ctx, encoder) if modality == "rgb" else None)
    if ctx.is_main and visualize_clips:
        path = save_reconstructions(objective, loader, ctx, visualize_clips)
        ctx.logger.image("pretrain/reconstructions", path)
        print(f"[pretrain] reconstructions: {path}", flush=True)
    return Path(summary["checkpoint"])


def _check_validation_reads_rgb(modality: str) -> None:
    """Few-shot validation reads RGB clips, so only an RGB encoder is validated: say so for
    another modality, instead of blaming a missing validation for train.keep_best_k."""
    if modality == "rgb" or not _bound("validation.eval_every") \
            or not gin.query_parameter("validation.eval_every"):
        return
    if _bound("train.keep_best_k") and gin.query_parameter("train.keep_best_k"):
        raise ValueError(f"train.keep_best_k ranks checkpoints by a validation metric, but "
                         f"pretrain.modality={modality!r} is not validated: few-shot validation "
                         f"(validation.eval_every) reads RGB clips, so it runs for an RGB encoder "
                         f"only; unset train.keep_best_k for this pretraining")
    print(f"[pretrain] validation.eval_every applies to RGB encoders only; this {modality} "
          f"pretraining is not validated", flush=True)


def check_channels(dataset, modality: str, model: VideoViT | None) -> None:
    """The model built for a modality takes the channels its dataset's reader gives (a reader of
    `clip_data.sources` other than the spec's default may give others, e.g. another joint count)."""
    if model is not None and model.in_chans != dataset.channels(modality):
        raise ValueError(f"the {modality} model takes {model.in_chans} channels but the {modality} clips "
                         f"have {dataset.channels(modality)} ({type(dataset.sources[modality]).__name__}); "
                         f"the model's channels come from the reader the data scope 'unlabeled' "
                         f"configures (mmdistill.data.modalities.specs.model_in_chans): give every "
                         f"scope the same {modality} reader")


def _initial_weights(model: MaskedAutoencoder, path: str | None, patch_embed: str,
                     trust: bool) -> None:
    """Runs on resume too: the resumed weights then replace these, but resampled fixed
    position tables (not saved) come back."""
    if path is not None:
        initialise_mae(model, path, patch_embed, trust_checkpoint=trust)
    elif patch_embed != "strict":
        raise ValueError(f"pretrain.init_patch_embed={patch_embed!r} without "
                         f"pretrain.init_checkpoint: set the checkpoint, or drop the option")


def _lambda_ce(value: float | None, modality: str) -> float:
    if value is not None:
        return float(value)
    spec = spec_of(modality)
    if spec.lambda_ce is None:
        raise ValueError(f"pretrain.lambda_ce is None and modality '{modality}' has no default "
                         f"(its spec {type(spec).__name__} has lambda_ce None); set pretrain.lambda_ce")
    return spec.lambda_ce


def _bound(binding: str) -> bool:
    try:
        gin.query_parameter(binding)
    except ValueError:
        return False
    return True


def _paired_clips(ctx: RunContext, modality: str, encoder: VideoViT, mask_ratio: float,
                  target: bool) -> PairedClipDataset:
    """Labelled source clips (`source/clip_data.*`), each with a target clip
    (`unlabeled/clip_data.*`) when `target`, under one shared tube mask."""
    if not mask_ratio > 0:
        raise ValueError(f"pretrain.mask_ratio={mask_ratio}: masked autoencoding needs a mask")
    if not _bound("source/clip_data.annotations"):
        raise ValueError("pretrain.source = True needs the labelled source clips: set "
                         "source/clip_data.annotations (and source/clip_data.root)")
    if _bound("clip_data.annotations"):
        raise ValueError("clip_data.annotations is bound without a scope, so the source and the "
                         "target would read it alike: bind source/clip_data.annotations and "
                         "unlabeled/clip_data.annotations instead")
    with gin.config_scope("source"):
        source = build_clip_dataset(modalities=[modality], mode="train",
                                    seed=source_seed(ctx.seed), labeled=True)
    check_channels(source, modality, encoder)
    target_clips = None
    if target:
        with gin.config_scope("unlabeled"):
            target_clips = build_clip_dataset(modalities=[modality], mode="train", seed=ctx.seed)
    if target_clips is not None:
        check_channels(target_clips, modality, encoder)
    paired = PairedClipDataset(source, target_clips, TubeMaskGenerator(encoder.grid_size, mask_ratio),
                               seed=ctx.seed)
    print(f"[data] {len(source)} labelled source clips in {source.num_classes} classes"
          + (f", paired with {len(target_clips)} target clips" if target else "")
          + f", modality {modality}, mask ratio {mask_ratio}", flush=True)
    return paired
