"""Load one encoder out of any checkpoint into a VideoViT, or build one with the checkpoint's own
architecture: the architecture check, the position-table resample, a strict key check and a
`LoadReport` of everything done. `pretrained` is its gin entry (one per model scope).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gin
import torch

from mmdistill.ckpt.reading import (ArchitectureMismatchError, Checkpoint, CheckpointError,
                                         StateDict, read_checkpoint)
from mmdistill.models.pos_embed import Grid, guess_grid, resample_pos_embed
from mmdistill.ckpt.selection import (ModelView, arch_mismatches, decoder_arch, heads_hint,
                                      select_model)
from mmdistill.models.vit import VideoViT

if TYPE_CHECKING:
    from mmdistill.models.decoder import MaskedAutoencoder


@dataclass
class LoadReport:
    """What `load_pretrained` did; `str(report)` is the human-readable account."""

    path: str
    format: str
    prefix: str
    layout: str
    strict: bool
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    cast: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatch)

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded} tensors from {self.path} ({self.format}, "
                 f"{self.layout} layout, prefix {self.prefix!r}, strict={self.strict})"]
        for title, keys in (("missing (left at init)", self.missing),
                            ("unexpected (ignored)", self.unexpected),
                            ("shape mismatch (ignored)", self.shape_mismatch),
                            ("dropped (not encoder weights)", self.dropped),
                            ("kept at init", self.kept_init), ("resampled", self.resampled)):
            if keys:
                lines.append(f"  {title}: {_short_list(keys)}")
        if self.cast:
            lines.append("  cast: " + ", ".join(f"{k} ({n} tensors)" for k, n in self.cast.items()))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _short_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_pretrained(model: VideoViT, path: str | Path | Checkpoint, prefix: str | None = None,
                    strict: bool = True, trust_checkpoint: bool = False,
                    source_grid: Grid | None = None) -> LoadReport:
    """Load one encoder from any supported checkpoint into `model`; see the module docstring.

    `source_grid` (T', H', W') overrides the training grid of the checkpoint's position table when
    its metadata does not record it. With `strict=False` the report is printed when keys were
    skipped.
    """
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, trust_checkpoint)
    return _load_view(model, ckpt, select_model(ckpt, prefix, source_grid), strict)


def _load_view(model: VideoViT, ckpt: Checkpoint, view: ModelView, strict: bool,
               kept_init: tuple[str, ...] = ()) -> LoadReport:
    """`load_pretrained` once the encoder is selected (build_from_checkpoint has it already).
    `kept_init`: model keys deliberately left at their init (not 'missing')."""
    where = f"{ckpt.path}" + (f" (prefix {view.root!r})" if view.root else "")
    problems = arch_mismatches(view.arch, model)
    if problems:
        raise ArchitectureMismatchError(
            f"checkpoint {where} does not fit the model: " + "; ".join(problems)
            + ". Set the video_vit gin parameters to match the checkpoint, or pick another "
              "checkpoint/prefix (`python -m mmdistill.ckpt inspect PATH` shows its architecture).")
    report = LoadReport(str(ckpt.path), ckpt.format, view.root, view.layout, strict,
                        dropped=view.dropped, kept_init=list(kept_init))
    if view.ignored:
        report.notes.append(f"{view.ignored} tensors of other models in the checkpoint were not used")
    if not view.arch["num_heads_known"]:
        report.notes.append(f"the checkpoint does not record its head count; the model's "
                            f"num_heads={model.arch['num_heads']} is assumed")
    source = dict(view.state_dict)
    _place_position_table(model, view, source, report, where)
    target = model.state_dict()
    if view.arch["use_mean_pooling"] is None and model.arch["use_mean_pooling"]:
        report.kept_init += ["fc_norm.weight", "fc_norm.bias"]  # the source had no pooling norm
        report.notes.append("the source has no fc_norm (a VideoMAEModel with mean pooling); fc_norm "
                            "is kept at its identity init")
    report.missing = [k for k in target if k not in source and k not in report.kept_init]
    report.unexpected = [k for k in source if k not in target]
    report.shape_mismatch = [f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
                             for k in source if k in target and source[k].shape != target[k].shape]
    if strict and report.skipped:
        raise CheckpointError(
            f"checkpoint {where} does not match the model key for key:"
            + (f"\n  missing: {_short_list(report.missing)}" if report.missing else "")
            + (f"\n  unexpected: {_short_list(report.unexpected)}" if report.unexpected else "")
            + (f"\n  shape mismatch: {_short_list(report.shape_mismatch)}" if report.shape_mismatch else "")
            + "\nPick the right prefix/checkpoint, or set pretrained.strict = False to load the "
              "matching keys (what is skipped is then printed).")
    usable = {}
    for key, value in source.items():
        if key in target and value.shape == target[key].shape:
            if value.dtype != target[key].dtype:
                change = f"{value.dtype} -> {target[key].dtype}".replace("torch.", "")
                report.cast[change] = report.cast.get(change, 0) + 1
            usable[key] = value.to(target[key].dtype)
    # Key matching was checked above (an error when strict); here only the matching subset is
    # loaded, and the report printed below lists everything that was not.
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    if report.skipped:
        print(report, flush=True)
    return report


def _place_position_table(model: VideoViT, view: ModelView, source: StateDict,
                          report: LoadReport, where: str) -> None:
    """Resample a learned table into `source`, or set the model's fixed table to the source grid."""
    grid = view.source_grid
    if model.arch["pos_embed"] == "learned":
        table = source["pos_embed"]
        if grid is None:
            grid = guess_grid(table.shape[-2], model.grid_size)
            if grid is not None and grid != model.grid_size:
                report.notes.append(f"pos_embed grid {grid} inferred from its {table.shape[-2]} "
                                    f"tokens (square frames assumed; override with source_grid)")
        if grid is None:
            raise CheckpointError(
                f"checkpoint {where} has a learned pos_embed of {table.shape[-2]} tokens and does "
                f"not record its input size; pass source_grid=(T', H', W') (gin: "
                f"pretrained.source_grid) so it can be resampled to {model.grid_size}")
        if tuple(grid) != model.grid_size:
            source["pos_embed"] = resample_pos_embed(table, grid, model.grid_size)
            report.resampled.append(f"pos_embed: {tuple(grid)} -> {model.grid_size}")
        return
    if grid is None:
        report.notes.append(f"position table: the model's fixed sinusoid table for "
                            f"{model.grid_size} (the checkpoint records no input size; pass "
                            f"source_grid if it was trained at another size)")
    elif tuple(grid) != model.grid_size:
        model.use_sincos_table_of(grid)
        report.resampled.append(f"fixed sinusoid table: {tuple(grid)} -> {model.grid_size}")
    else:
        model.use_sincos_table_of(None)
        report.notes.append(f"position table: fixed sinusoid for {model.grid_size}, as trained")


def build_from_checkpoint(path: str | Path | Checkpoint, prefix: str | None = None,
                          trust_checkpoint: bool = False, source_grid: Grid | None = None,
                          **overrides: Any) -> tuple[VideoViT, LoadReport]:
    """Build a VideoViT with the checkpoint's own architecture and load it (overrides win)."""
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, trust_checkpoint)
    view = select_model(ckpt, prefix, source_grid)
    arch = view.arch
    if arch["num_heads"] is None and overrides.get("num_heads") is None:
        hint = (heads_hint(arch["embed_dim"], arch["attn_dim"]) if arch.get("attn_dim")
                else "nothing records it")
        raise CheckpointError(f"cannot tell the head count of {ckpt.path} (embed_dim "
                              f"{arch['embed_dim']}): {hint}; pass num_heads (CLI: --num-heads)")
    kwargs: dict[str, Any] = {k: arch[k] for k in ("in_chans", "embed_dim", "depth", "num_heads",
                                                   "tubelet_size", "patch_size", "pos_embed")}
    kwargs["mlp_ratio"] = arch["mlp_ratio"] or 4.0
    kwargs["init_values"] = 1e-5 if arch["layer_scale"] else 0.0  # values come from the weights
    kwargs["use_mean_pooling"] = arch["use_mean_pooling"] is not False
    grid = view.source_grid
    if grid is None and arch["pos_embed"] == "learned":
        default = (16 // arch["tubelet_size"], 224 // arch["patch_size"], 224 // arch["patch_size"])
        grid = guess_grid(arch["num_tokens"], default)
    if "num_frames" in arch and "img_size" in arch:  # recorded input size of the model itself
        kwargs["num_frames"], kwargs["img_size"] = arch["num_frames"], tuple(arch["img_size"])
    elif grid is not None:
        kwargs["num_frames"] = grid[0] * arch["tubelet_size"]
        kwargs["img_size"] = (grid[1] * arch["patch_size"], grid[2] * arch["patch_size"])
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    model = VideoViT(**kwargs)
    view = replace(view, source_grid=tuple(grid) if grid is not None else None)
    return model, _load_view(model, ckpt, view, strict=True)


@gin.configurable("pretrained", denylist=["model", "path"])
def initialise_from_checkpoint(model: VideoViT, path: str | None = None, prefix: str | None = None,
                               strict: bool = True, trust_checkpoint: bool = False,
                               source_grid: Grid | None = None) -> LoadReport | None:
    """gin entry for how a checkpoint loads (`teacher_flow/pretrained.prefix`, `.strict`, ...);
    the path comes from the caller (distill.teacher_checkpoints / distill.student_init), so
    `pretrained.path` is refused at parse time. Does nothing when path is None."""
    if path is None:
        return None
    report = load_pretrained(model, path, prefix, strict, trust_checkpoint, source_grid)
    if not report.skipped:
        print(report, flush=True)
    return report


# --- pretraining: a whole masked autoencoder from a checkpoint, across channel counts -----------

PATCH_EMBED_MODES = ("strict", "reinit", "channel_mean")
_PATCH_EMBED = ("patch_embed.proj.weight", "patch_embed.proj.bias")
_DECODER_PARTS = ("decoder.", "encoder_to_decoder.", "mask_token")


@dataclass
class InitReport:
    """What `initialise_mae` copied; `not_copied` names every tensor (ours or the file's) that
    was not, with the reason."""

    encoder: LoadReport
    patch_embed: str
    decoder_loaded: int = 0
    not_copied: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"[pretrain] initial weights: {self.encoder}",
                 f"  patch embedding: {self.patch_embed}",
                 f"  decoder: {self.decoder_loaded} tensors loaded"]
        lines += [f"  not copied: {key}: {why}" for key, why in self.not_copied.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def initialise_mae(mae: "MaskedAutoencoder", path: str | Path | Checkpoint,
                   patch_embed: str = "strict", trust_checkpoint: bool = False,
                   source_grid: Grid | None = None) -> InitReport:
    """Start a pretraining model from a checkpoint (official VideoMAE .pth, HF, DeepSpeed, ours).

    The encoder goes through `load_pretrained`'s path (architecture check, position table
    resampled, strict keys); the decoder, `encoder_to_decoder` and `mask_token` are loaded
    strictly when the file has them in the official layout, the decoder head only when its shape
    fits. An encoder with another channel count or patch size than the file's needs
    `patch_embed`: 'reinit' keeps the fresh patch embedding (weight and bias) and decoder head,
    as MM-CDFSL starts its flow and pose teachers (pose: 21 channels, 4 px patches) from RGB
    VideoMAE weights (models/modeling_pretrain.py:423-441 drops `encoder.patch_embed.*` and
    `decoder.head.*` unless in_chans == 3);
    'channel_mean' averages the kernel over the file's channels, repeats it to the model's and
    scales it by file/model channels, so a constant input gives the same response (same patch
    size only); 'strict' refuses. The action head always starts fresh.
    """
    if patch_embed not in PATCH_EMBED_MODES:
        raise ValueError(f"pretrain.init_patch_embed={patch_embed!r}: choose one of "
                         f"{list(PATCH_EMBED_MODES)}")
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, trust_checkpoint)
    view = select_model(ckpt, None, source_grid)
    encoder = mae.encoder
    file_chans, chans = view.arch["in_chans"], encoder.in_chans
    file_patch, patch = view.arch["patch_size"], encoder.arch["patch_size"]
    not_copied: dict[str, str] = {}
    kept: tuple[str, ...] = ()
    what = f"{chans} channels, copied"
    changes = [f"{a} -> {b} {unit}" for a, b, unit in ((file_chans, chans, "channels"),
                                                      (file_patch, patch, "px patches")) if a != b]
    if changes:
        if patch_embed == "strict":
            raise ArchitectureMismatchError(
                f"{ckpt.path} has a patch embedding of {file_chans} channels and {file_patch} px "
                f"patches, the encoder takes {chans} channels and {patch} px patches. To start it "
                f"from these weights set pretrain.init_patch_embed = 'reinit' (fresh patch "
                f"embedding and decoder head)" + (" or 'channel_mean' (the kernel averaged over "
                "channels)" if file_patch == patch else "") + "; or give a checkpoint that fits.")
        if patch_embed == "channel_mean" and file_patch != patch:
            raise ArchitectureMismatchError(
                f"pretrain.init_patch_embed='channel_mean' averages a kernel over channels but "
                f"cannot change its patch size ({file_patch} px in {ckpt.path}, {patch} px here): "
                f"set pretrain.init_patch_embed = 'reinit' (fresh patch embedding and decoder head)")
        state = dict(view.state_dict)
        if patch_embed == "reinit":
            kept = tuple(k for k in _PATCH_EMBED if k in state)
            for key in kept:
                state.pop(key)
                not_copied[f"encoder.{key}"] = (f"re-initialised ({', '.join(changes)}; "
                                                f"init_patch_embed='reinit')")
            what = f"re-initialised ({', '.join(changes)})"
        else:
            weight = state["patch_embed.proj.weight"].float()
            state["patch_embed.proj.weight"] = (weight.mean(dim=1, keepdim=True)
                                                .repeat(1, chans, 1, 1, 1) * (file_chans / chans))
            what = (f"channel mean of the {file_chans}-channel kernel repeated to {chans} "
                    f"channels, scaled by {file_chans}/{chans}; bias copied")
        view = replace(view, state_dict=state,
                       arch={**view.arch, "in_chans": chans, "patch_size": patch})
    report = InitReport(_load_view(encoder, ckpt, view, strict=True, kept_init=kept), what)
    if file_patch != patch:  # the position table belongs to the token grid, not the patch size
        report.notes.append(f"position table: kept per token grid across the {file_patch} -> "
                            f"{patch} px patch change (the encoder's grid is {encoder.grid_size})")
    _load_decoder(mae, ckpt, view, report)
    grid = encoder.arch.get("sincos_grid") or view.source_grid
    if grid is not None and tuple(grid) != encoder.grid_size and report.decoder_loaded:
        mae.decoder.use_sincos_table_of(tuple(grid), encoder.grid_size)
        report.notes.append(f"decoder position table resampled {tuple(grid)} -> "
                            f"{encoder.grid_size}, like the encoder's")
    for key in mae.state_dict():
        if key.startswith("action_head."):
            not_copied[key] = "the action head starts fresh for the source classes"
    report.not_copied = {**not_copied, **report.not_copied}
    print(report, flush=True)
    return report


def _load_decoder(mae: "MaskedAutoencoder", ckpt: Checkpoint, view: ModelView,
                  report: InitReport) -> None:
    """The decoder parts of an official-layout pretraining checkpoint, strictly but for the head."""
    ours = {k: v for k, v in mae.state_dict().items() if k.startswith(_DECODER_PARTS)}
    family = view.root[:-len("encoder.")] if view.root.endswith("encoder.") else None
    source = {} if family is None else {
        key[len(family):]: value for key, value in ckpt.state_dict.items()
        if key.startswith(family) and key[len(family):].startswith(_DECODER_PARTS)}
    used = {family + key for key in source} if family is not None else set()
    for key in view.dropped:
        if key not in used:
            report.not_copied[key] = "in the file, not part of an encoder or VideoMAE decoder"
    if not source:
        why = ("the checkpoint has no decoder" if view.layout == "official" else
               f"the {view.layout} layout's decoder is not read")
        report.not_copied.update({key: f"kept at init ({why})" for key in ours})
        return
    for key in ("decoder.head.weight", "decoder.head.bias"):
        if key in source and key in ours and source[key].shape != ours[key].shape:
            report.not_copied[key] = (f"kept at init (file {tuple(source.pop(key).shape)}, "
                                      f"model {tuple(ours[key].shape)}: another channel count "
                                      f"or patch size)")
    missing = [k for k in ours if k not in source and k not in report.not_copied]
    unexpected = [k for k in source if k not in ours]
    shapes = [f"{k}: file {tuple(source[k].shape)} vs model {tuple(ours[k].shape)}"
              for k in source if k in ours and source[k].shape != ours[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"the decoder in {ckpt.path} does not fit this one:"
            + (f"\n  missing: {_short_list(missing)}" if missing else "")
            + (f"\n  unexpected: {_short_list(unexpected)}" if unexpected else "")
            + (f"\n  shape mismatch: {_short_list(shapes)}" if shapes else "")
            + f"\n{_decoder_fix(source)}")
    with torch.no_grad():
        for key, value in source.items():
            ours[key].copy_(value.to(ours[key].dtype))
    report.decoder_loaded = len(source)
    loaded = {family + key for key in source}  # the encoder report listed them as not its own
    report.encoder.dropped = [key for key in report.encoder.dropped if key not in loaded]


def _decoder_fix(source: StateDict) -> str:
    """The mae.decoder_* bindings that build the file's decoder (its heads from the weights)."""
    arch = decoder_arch(source)
    if arch is None:
        return "Set mae.decoder_dim / mae.decoder_depth / mae.decoder_heads to the file's decoder."
    heads = (str(arch["num_heads"]) if arch["num_heads"] is not None else
             f"<see below>\n  ({heads_hint(arch['embed_dim'], arch['attn_dim'])})")
    return (f"The file's decoder is {arch['embed_dim']} wide, {arch['depth']} blocks deep, its "
            f"attention {arch['attn_dim']} wide: set mae.decoder_dim = {arch['embed_dim']}, "
            f"mae.decoder_depth = {arch['depth']}, mae.decoder_heads = {heads}")
