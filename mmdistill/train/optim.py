"""Optimizer, learning-rate scaling and schedule: AdamW + linear warmup + cosine, per step.

Built from timm's pieces (parameter groups, cosine scheduler) so the schedule matches the VideoMAE
and MM-CDFSL recipes we replace.
"""
from __future__ import annotations

import torch
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler

from mmdistill.checks import SettingError, check_fractions, check_number

LR_REFERENCE_BATCH = 256

# train.weight_decay_groups: 'timm' = no decay on biases, norms (1-D parameters) and the names
# no_weight_decay() lists (VideoMAE; MM-CDFSL's stage 1, netscripts/get_optimizer.py:41-106);
# 'all' = one group, every parameter decays (MM-CDFSL's distillation, get_optimizer.py:236-238).
DECAY_GROUPS = ("timm", "all")
# train.cosine_period: 'remaining' = the steps after the warmup, so lr reaches min_lr on the last
# step; 'all_epochs' = epochs x steps after the warmup prefix, so the run ends before min_lr
# (MM-CDFSL, get_optimizer.py:240-247: t_initial = epochs * niter_per_epoch, warmup_prefix=True).
COSINE_PERIODS = ("remaining", "all_epochs")


def check_optimizer_settings(weight_decay: float, betas: tuple[float, float], min_lr: float = 0.0,
                             warmup_lr: float = 0.0) -> None:
    """The train.* settings that reach the optimizer and the schedule, named as users bind them
    (torch and timm would fail later, without the parameter's name)."""
    check_number("train.weight_decay", weight_decay, example=0.05)
    check_fractions("train.betas", betas, 2, (0.9, 0.999))
    check_number("train.min_lr", min_lr, example=1e-6)
    check_number("train.warmup_lr", warmup_lr, example=1e-6)


def check_choices(decay_groups: str = "timm", period: str = "remaining") -> None:
    """train.weight_decay_groups and train.cosine_period, named as users bind them."""
    if decay_groups not in DECAY_GROUPS:
        raise SettingError(f"train.weight_decay_groups={decay_groups!r}: choose 'timm' (no decay on "
                         f"biases, norms, position tables) or 'all' (every parameter decays)")
    if period not in COSINE_PERIODS:
        raise SettingError(f"train.cosine_period={period!r}: choose 'remaining' (min_lr on the last "
                         f"step) or 'all_epochs' (cosine of epochs x steps after the warmup)")


def scaled_lr(base_lr: float, total_batch: int, scale: bool = True) -> float:
    """The linear scaling rule of MM-CDFSL and the tennis fork: lr = base_lr * total_batch / 256."""
    return base_lr * total_batch / LR_REFERENCE_BATCH if scale else base_lr


def no_weight_decay_names(module: torch.nn.Module) -> set[str]:
    """Parameter names that must not decay (position tables, mask tokens), with their full prefix.

    Submodules declare them timm-style with `no_weight_decay() -> set[str]` of names relative to
    themselves (a ViT returns {'pos_embed'}); we collect them over the whole tree.
    """
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        if hasattr(sub, "no_weight_decay") and callable(sub.no_weight_decay):
            for name in sub.no_weight_decay():
                names.add(f"{prefix}.{name}" if prefix else name)
    return names


def build_optimizer(module: torch.nn.Module, lr: float, weight_decay: float = 0.05,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    fused: bool | None = None, decay_groups: str = "timm") -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `module`; with decay_groups='timm' no decay on
    biases, norms (all 1-D parameters) and the names `no_weight_decay()` lists, with 'all' decay
    on every parameter (see DECAY_GROUPS). Frozen parameters are left out.

    `fused=None` picks the fused kernel when every parameter is on a CUDA device: torch's default
    (foreach) launches many small kernels and is bound by the host at the tennis scale
    (measured in BENCHMARKS.md). False/True force the choice.
    """
    check_number("lr", lr)
    check_optimizer_settings(weight_decay, betas)
    check_choices(decay_groups=decay_groups)
    if decay_groups == "all":
        trainable = [p for p in module.parameters() if p.requires_grad]
        groups = [{"params": trainable, "weight_decay": weight_decay}] if trainable else []
    else:
        groups = param_groups_weight_decay(module, weight_decay=weight_decay,
                                           no_weight_decay_list=no_weight_decay_names(module))
    if not groups:
        raise ValueError(f"{type(module).__name__} has no parameter with requires_grad=True: "
                         f"nothing to train. Check the objective's trainable_modules().")
    if fused is None:
        fused = all(p.is_cuda for group in groups for p in group["params"]) or None
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused)


# How an optimizer computes, not what it has learned: a resumed run keeps this run's choice.
KERNEL_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """`optimizer.load_state_dict`, except that the kernel flags stay as this run built them.

    torch would take the saved flags; and it places each `step` counter by them (on the CPU for
    foreach, on the parameter's device for fused), so the flags go into the saved groups before
    loading: a foreach checkpoint (a CPU run, or one written before fused became the CUDA
    default) then resumes under the fused kernel with its counters where that kernel needs them.
    """
    flags = [{k: g[k] for k in KERNEL_FLAGS if k in g} for g in optimizer.param_groups]
    if len(flags) != len(state_dict.get("param_groups", [])):
        optimizer.load_state_dict(state_dict)  # let torch name the mismatch
        return
    groups = [{**saved, **kept} for saved, kept in zip(state_dict["param_groups"], flags)]
    optimizer.load_state_dict({**state_dict, "param_groups": groups})


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    min_lr: float = 1e-6, warmup_lr: float = 1e-6,
                    period: str = "remaining") -> CosineLRScheduler:
    """Linear warmup from `warmup_lr` over `warmup_steps`, then a cosine toward `min_lr`: over
    the remaining steps (period='remaining', min_lr at `total_steps`) or over `total_steps` after
    the warmup (period='all_epochs', see COSINE_PERIODS). Call `step_update(n)` after the n-th
    optimizer step (timm's convention)."""
    check_number("train.min_lr", min_lr, example=1e-6)
    check_number("train.warmup_lr", warmup_lr, example=1e-6)
    check_choices(period=period)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup ({warmup_steps} steps) must be shorter than training "
                         f"({total_steps} steps): lower train.warmup_epochs or raise train.epochs.")
    cosine = total_steps - warmup_steps if period == "remaining" else total_steps
    return CosineLRScheduler(optimizer, t_initial=cosine, lr_min=min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=warmup_lr, warmup_prefix=True,
                             t_in_epochs=False)
