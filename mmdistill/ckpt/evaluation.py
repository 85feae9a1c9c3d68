"""Rebuilding a checkpoint's models for evaluation: the encoder (a distillation checkpoint's
student unless told otherwise), its trained pooled LayerNorm when it had one, and the CMT heads our
distillation checkpoints record with their architecture.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmdistill.ckpt.format import FORMAT
from mmdistill.ckpt.loading import LoadReport, build_from_checkpoint
from mmdistill.ckpt.reading import read_checkpoint
from mmdistill.models.heads import CMTHead, NormedPooling, PooledHead
from mmdistill.models.vit import VideoViT


def models_for_evaluation(path: str | Path, prefix: str | None = None,
                          trust_checkpoint: bool = False
                          ) -> tuple[nn.Module, dict[str, nn.Module], LoadReport]:
    """The encoder stored in any supported checkpoint (a distillation checkpoint's student unless
    `prefix` says otherwise), plus the CMT heads our distillation checkpoints record. A student
    distilled through a trained pooled LayerNorm (`fc_norm.*`) comes back as a `NormedPooling`,
    so evaluation reads the pooled feature it was trained with."""
    ckpt = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    ours = ckpt.format == FORMAT
    if prefix is None and ours and any(k.startswith("student.") for k in ckpt.state_dict):
        prefix = "student"
    model, report = build_from_checkpoint(ckpt, prefix=prefix)
    if not ours:
        return model, {}, report
    arch = ckpt.metadata.get("arch") or {}
    fc_norm = _trained_fc_norm(ckpt.state_dict, arch, path) if report.prefix == "student." else None
    heads = rebuild_heads(ckpt.state_dict, arch, model, path, fc_norm)
    return (model if fc_norm is None else NormedPooling(model, fc_norm)), heads, report


def _trained_fc_norm(state_dict: dict[str, torch.Tensor], arch: dict[str, dict],
                     path: str | Path) -> nn.LayerNorm | None:
    if "fc_norm" not in arch:
        return None
    norm = nn.LayerNorm(arch["fc_norm"]["dim"], eps=arch["fc_norm"]["eps"])
    weights = {k[len("fc_norm."):]: v.float() for k, v in state_dict.items()
               if k.startswith("fc_norm.")}
    try:
        norm.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path}: its arch records the student's pooled fc_norm "
                         f"({arch['fc_norm']}) but the weights fc_norm.* do not fit it: {err}. "
                         f"The checkpoint is damaged or was edited.") from err
    return norm


def rebuild_heads(state_dict: dict[str, torch.Tensor], arch: dict[str, dict], encoder: VideoViT,
                  path: str | Path, fc_norm: nn.Module | None = None) -> dict[str, nn.Module]:
    """modality -> CMT head with its trained weights, from the `heads.<modality>` entries of a
    checkpoint's `arch`; a head trained on the pooled feature is applied to the pooled feature
    (through the student's trained `fc_norm` when it had one)."""
    pooled_norm = encoder.fc_norm if fc_norm is None else nn.Sequential(encoder.fc_norm, fc_norm)
    heads = {}
    for name, config in arch.items():
        if not name.startswith("heads."):
            continue
        config = dict(config)
        feature = config.pop("feature", "tokens")
        head = CMTHead(**config)
        weights = {k[len(name) + 1:]: v.float() for k, v in state_dict.items()
                   if k.startswith(name + ".")}
        try:
            head.load_state_dict(weights)
        except RuntimeError as err:
            raise ValueError(f"{path}: the weights of {name} do not fit the head its arch records "
                             f"({config}): {err}. The checkpoint is damaged or was edited.") from err
        modality = name.split(".", 1)[1]
        heads[modality] = head if feature == "tokens" else PooledHead(head, pooled_norm)
    unrecorded = sorted({k.split(".")[1] for k in state_dict if k.startswith("heads.")}
                        - set(heads))
    if unrecorded:
        print(f"[evaluate] {path}: heads {unrecorded} have weights but no recorded config (not a "
              f"CMTHead); they are not evaluated.", flush=True)
    return heads
