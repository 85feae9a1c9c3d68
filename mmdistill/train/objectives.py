"""Training objectives: each maps a batch to {'loss': ..., 'loss_<part>': ...}.

The loop only knows this contract; everything model-specific lives here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.heads import FC_NORM_EPS, CMTHead, StudentWithHeads
from mmdistill.train.targets import normalize_patches, patchify


def feature_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss between translated student features and teacher features, in fp32."""
    pred, target = pred.float(), target.float()
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"distill.loss={kind!r}: choose 'mse', 'smooth_l1' or 'cosine'")


class Distillation(nn.Module):
    """Student RGB features, translated by one head per teacher, regress the frozen teachers'.

    Every teacher sees its own modality of the same clip under the same tube mask, so token i of
    the student and token i of each teacher describe the same space-time patch. With
    feature='pooled', student_fc_norm and target_norm (gin/base/distill_recipe.gin) the loss is
    MM-CDFSL's: sum over teachers m of mean((g_m(LN_s(mean_V s)) - LN(mean_V t_m))^2), V the
    visible tokens, LN_s a trainable LayerNorm, LN one without affine (a fresh fc_norm).
    """

    def __init__(self, student_with_heads: StudentWithHeads, teachers: dict[str, nn.Module],
                 student_input: str = "rgb", target_norm: bool = False, loss: str = "mse",
                 weights: dict[str, float] | None = None):
        super().__init__()
        if set(teachers) != set(student_with_heads.heads):
            raise ValueError(f"teachers {sorted(teachers)} and heads "
                             f"{sorted(student_with_heads.heads)} must name the same modalities")
        self.trainable = student_with_heads
        self.teachers = nn.ModuleDict(teachers)
        for teacher in self.teachers.values():
            teacher.requires_grad_(False)
            teacher.eval()
        self.student_input = student_input
        self.target_norm = target_norm
        self.loss_kind = loss
        weights = dict(weights or {})
        unknown = set(weights) - set(teachers)
        if unknown:
            raise ValueError(f"distill.weights names {sorted(unknown)}, which are not teachers "
                             f"({sorted(teachers)})")
        self.weights = {name: float(weights.get(name, 1.0)) for name in teachers}
        feature_loss(loss, torch.zeros(1, 2), torch.zeros(1, 2))  # reject a bad name at build time

    def train(self, mode: bool = True):
        """Teachers stay in eval mode whatever the loop asks (no dropout / drop-path in targets)."""
        super().train(mode)
        self.teachers.eval()
        return self

    def trainable_modules(self) -> nn.Module:
        return self.trainable

    def arch(self) -> dict:
        """Architecture per checkpoint prefix, saved so a checkpoint rebuilds its own models.
        Heads other than `CMTHead` record nothing, so evaluation does not rebuild them."""
        arch = {"student": dict(self.trainable.student.arch)}
        if self.trainable.fc_norm is not None:  # evaluation pools through it, as training did
            arch["fc_norm"] = {"dim": self.trainable.fc_norm.normalized_shape[0],
                               "eps": self.trainable.fc_norm.eps}
        for name, head in self.trainable.heads.items():
            if isinstance(head, CMTHead):
                arch[f"heads.{name}"] = dict(head.config, feature=self.trainable.feature)
        return arch

    @torch.no_grad()
    def targets(self, batch: dict, visible_index: torch.Tensor | None,
                visible_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for name, teacher in self.teachers.items():
            if name not in batch:
                raise KeyError(f"the batch has no '{name}' input for the {name} teacher; add a "
                               f"'{name}' source to the dataset's modalities")
            if visible_index is not None and teacher.num_patches != self.trainable.student.num_patches:
                raise ValueError(f"the {name} teacher has {teacher.num_patches} tokens a clip, the "
                                 f"student {self.trainable.student.num_patches}: a shared tube mask "
                                 f"needs the same token grid (patch and tubelet size, frames, crop)")
            tokens, pooled = teacher(batch[name], visible_index, visible_valid)
            target = tokens if self.trainable.feature == "tokens" else pooled
            if self.target_norm:
                target = F.layer_norm(target.float(), target.shape[-1:], eps=FC_NORM_EPS)
            out[name] = target
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """`batch` from `mmdistill.data.device_batches`: its tube mask, if any, as the shared
        `visible_index` / `masked_index`; none means every token is seen."""
        indices = mask_indices(batch, self.trainable.student.num_patches)
        visible_index = indices[0] if indices is not None else None
        valid = batch.get("visible_valid")  # ragged rows of a bernoulli mask
        targets = self.targets(batch, visible_index, valid)
        preds = self.trainable(batch[self.student_input], visible_index, valid)
        result = {}
        total = 0.0
        for name, target in targets.items():
            pred = preds[name]
            if valid is not None and self.trainable.feature == "tokens":  # padding is no token
                pred, target = pred[valid], target[valid]
            part = feature_loss(self.loss_kind, pred, target)
            result[f"loss_{name}"] = part.detach()
            total = total + self.weights[name] * part
        result["loss"] = total
        return result


SOURCE_PREFIX = "source_"  # a source clip's keys in a paired batch (mmdistill.data.paired)


class MaskedAutoencoding(nn.Module):
    """VideoMAE pretraining of one modality's encoder: MSE on the masked tubelets only.

    Without a source (the default) it reconstructs the batch's `modality` clip, as plain VideoMAE.
    With `source=True` (stage 1 of MM-CDFSL) the batch pairs a labelled source clip
    (`source_<modality>`, `source_label`) with the target clip under one tube mask, and
    loss = recon_source + lambda_ce * CE(action head, source label)
           + target_recon_weight * recon_target.
    recon_target is always logged when a target is present; with weight 0 it is computed without
    a graph (MM-CDFSL builds one but leaves it out of the loss: the gradient is the same).
    The head's accuracy on the source clips is returned as 'metric_source_acc' (no gradient).
    """

    def __init__(self, model: MaskedAutoencoder, modality: str = "rgb",
                 normalize_target: bool = True, source: bool = False, target: bool = True,
                 lambda_ce: float = 0.0, target_recon_weight: float = 0.0):
        super().__init__()
        if not (source or target):
            raise ValueError("pretrain.source and pretrain.target are both False: nothing to "
                             "train on; switch one on")
        if source and getattr(model, "action_head", None) is None:
            raise ValueError("pretraining with a source needs the model's action head "
                             "(MaskedAutoencoder(..., action_head=ActionHead(...)))")
        if not source and target_recon_weight != 0.0:
            raise ValueError("pretrain.target_recon_weight weighs the target reconstruction "
                             "beside a source; without pretrain.source the target "
                             "reconstruction is the whole loss. Leave it at 0.")
        self.trainable = model
        self.modality = modality
        self.normalize_target = normalize_target
        self.source, self.target = bool(source), bool(target)
        self.lambda_ce = float(lambda_ce)
        self.target_recon_weight = float(target_recon_weight)

    @property
    def reconstruction_input(self) -> str:
        """The batch key of the clip whose reconstructions are pictured (mmdistill.viz)."""
        return self.modality if self.target else SOURCE_PREFIX + self.modality

    def trainable_modules(self) -> nn.Module:
        return self.trainable

    def arch(self) -> dict:
        arch = {"encoder": dict(self.trainable.encoder.arch)}
        head = getattr(self.trainable, "action_head", None)
        if head is not None:
            arch["action_head"] = dict(head.config)
        return arch

    def targets(self, video: torch.Tensor, masked_index: torch.Tensor) -> torch.Tensor:
        """The masked tubelets (B, N_masked, P * C), in the order of `masked_index`."""
        patches = patchify(video.float(), self.trainable.tubelet_size, self.trainable.patch_size)
        index = masked_index[:, :, None, None].expand(-1, -1, *patches.shape[-2:])
        patches = torch.gather(patches, 1, index)  # masked only
        if self.normalize_target:
            patches = normalize_patches(patches)
        return patches.flatten(2)

    def _reconstruction(self, video: torch.Tensor, indices) -> torch.Tensor:
        pred = self.trainable(video, *indices)
        return F.mse_loss(pred.float(), self.targets(video, indices[1]))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        indices = mask_indices(batch, self.trainable.encoder.num_patches)
        if indices is not None and indices[1] is None:
            raise ValueError("masked autoencoding needs the same number of hidden tokens in "
                             "every clip (a tube mask); this batch's mask hides a different "
                             "number per clip (a bernoulli mask, which only distillation takes)")
        if indices is None:
            raise KeyError("masked autoencoding needs a tube mask: the batch has no "
                           "'visible_index' / 'masked_index'. Give the dataset a mask generator "
                           "(pretrain.mask_ratio > 0) and finish batches through "
                           "mmdistill.data.device_batches.")
        if not self.source:
            return {"loss": self._reconstruction(batch[self.modality], indices)}
        video = batch[SOURCE_PREFIX + self.modality]
        labels = batch[SOURCE_PREFIX + "label"]
        visible = self.trainable.encode(video, *indices)
        pred = self.trainable.decode(visible, *indices)
        recon_source = F.mse_loss(pred.float(), self.targets(video, indices[1]))
        logits = self.trainable.action_head(visible).float()
        ce = F.cross_entropy(logits, labels)
        loss = recon_source + self.lambda_ce * ce
        out = {"loss_recon_source": recon_source.detach(), "loss_ce": ce.detach(),
               "metric_source_acc": (logits.detach().argmax(-1) == labels).float().mean()}
        if self.target:
            if self.target_recon_weight:
                recon_target = self._reconstruction(batch[self.modality], indices)
                loss = loss + self.target_recon_weight * recon_target
            else:
                with torch.no_grad():
                    recon_target = self._reconstruction(batch[self.modality], indices)
            out["loss_recon_target"] = recon_target.detach()
        out["loss"] = loss
        return out


def mask_indices(batch: dict, num_tokens: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The batch's (visible_index, masked_index), None without a mask; masked_index is None for
    a ragged (bernoulli) mask, whose 'visible_valid' the caller reads. A batch that still
    holds the bool 'mask' did not come through the device stage and is refused: without the
    indices it would silently train unmasked."""
    if "mask" in batch:
        raise ValueError("the batch still holds the bool tube mask 'mask'; objectives take its "
                         "token indices: iterate mmdistill.data.device_batches.DeviceBatches(loader, "
                         "device) or call its finish_batch(batch, device)")
    if "visible_index" not in batch:
        return None
    if "visible_valid" in batch:  # ragged rows (bernoulli mask): padded, no masked index
        visible = batch["visible_index"]
        if visible.shape[1] > num_tokens:
            raise ValueError(f"the mask leaves {visible.shape[1]} tokens visible, the model has "
                             f"{num_tokens}: make the mask for the model's token grid")
        return visible, None
    visible, masked = batch["visible_index"], batch["masked_index"]
    if visible.shape[1] + masked.shape[1] != num_tokens:
        raise ValueError(f"the tube mask covers {visible.shape[1] + masked.shape[1]} tokens a "
                         f"clip, the model has {num_tokens}: make the mask for the model's "
                         f"token grid (tube_mask / the dataset's mask generator)")
    return visible, masked
