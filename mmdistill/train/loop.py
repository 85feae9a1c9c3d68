"""The hand-written training loop: epochs, schedule, logging, checkpoints and exact resume; one
optimizer step (mixed precision, accumulation, clipping) is `mmdistill.train.step.TrainStep`.
It knows nothing about models; an objective supplies the loss.

Objective contract (see docs/INTERFACES.md): `objective(batch) -> {'loss': scalar, 'loss_<part>':
scalar, 'metric_<name>': scalar, ...}` (parts and metrics are averaged and logged as
`train/<key>`; only 'loss' is differentiated) and `objective.trainable_modules() -> nn.Module` (the only part optimised and
wrapped in DDP; everything else must have requires_grad False). Batches are finished on the
device by `mmdistill.data.device_batches` before the step sees them: dicts of tensors, lists of
str, and an optional int 'num_skipped' (bad clips the collate dropped).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import gin
import torch
from torch import nn

from mmdistill import checks
from mmdistill.context import RunContext
from mmdistill.data.dataset import EpochTaggedSampler
from mmdistill.data.device_batches import DeviceBatches
from mmdistill.train import distributed as dist_utils
from mmdistill.train import optim, training_checkpoint
from mmdistill.train.console import Console, print_plan
from mmdistill.train.resume_config import check_resume_config
from mmdistill.train.step import StepResult, TrainStep


class _Averages:
    """Running sums kept on the device; read (one host sync, one all-reduce) only when logged."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        stacked = dist_utils.mean_over_ranks(torch.stack([self.sums[k] for k in keys]))
        return {k: v / self.count for k, v in zip(keys, stacked.tolist())}


class _Window:
    """What happened since it was opened (a log interval or an epoch); skipped steps add no loss."""

    def __init__(self):
        self.averages = _Averages()
        self.start, self.wait = time.perf_counter(), 0.0
        self.clips = self.bad_clips = self.bad_steps = 0

    def add(self, result: StepResult, wait: float) -> None:
        self.wait += wait
        self.clips += result.clips
        self.bad_clips += result.bad_clips
        self.bad_steps += result.skipped and not result.empty
        if not result.skipped:
            self.averages.add({**result.losses, "grad_norm": result.grad_norm})

    def metrics(self, ctx: RunContext) -> dict[str, float]:
        """Mean losses and grad norm, throughput of all processes, share of time spent waiting."""
        elapsed = time.perf_counter() - self.start
        metrics = {f"train/{k}": v for k, v in self.averages.means().items()}
        metrics["train/clips_per_s"] = self.clips * ctx.world_size / elapsed
        metrics["train/data_wait"] = self.wait / elapsed
        if ctx.device.type == "cuda":
            metrics["train/gpu_mem_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
            torch.cuda.reset_peak_memory_stats(ctx.device)
        return metrics

    def epoch_metrics(self, epoch: int, device: torch.device) -> dict[str, float]:
        means = self.averages.means()  # collective: every rank calls it
        means.pop("grad_norm", None)
        metrics = {f"train/epoch_{k}": v for k, v in means.items()}
        metrics.setdefault("train/epoch_loss", math.nan)  # every step of the epoch was skipped
        bad_clips = dist_utils.sum_over_ranks(torch.tensor(self.bad_clips, device=device))
        metrics.update({"train/epoch_nonfinite_steps": self.bad_steps,  # equal on every rank
                        "train/epoch_skipped_clips": int(bad_clips.item()), "epoch": epoch})
        return metrics


@gin.configurable("train", denylist=["objective", "loader", "ctx", "resume_from", "epoch_end"])
def train(objective: nn.Module, loader, ctx: RunContext, *, resume_from: str | Path | None = None,
          epoch_end=None,
          epochs: int = 50, lr: float = 2e-3, scale_lr: bool = True, min_lr: float = 1e-6,
          warmup_epochs: float = 5, warmup_lr: float = 1e-6, weight_decay: float = 0.05,
          betas: tuple[float, float] = (0.9, 0.999), clip_grad: float | None = None,
          accum_steps: int = 1, log_every: int = 20, save_ckpt_freq: int = 5,
          keep_last_k: int | None = None, keep_best_k: int | None = None,
          best_metric: str = "val/fewshot/5way_5shot/acc", best_mode: str = "max",
          max_nonfinite: int = 10, compile: bool | str = False,
          compile_mode: str | None = None, fused_adamw: bool | None = None,
          find_unused_parameters: bool = False, weight_decay_groups: str = "timm",
          cosine_period: str = "remaining",
          resume_may_change: Sequence[str] = ("train.epochs",)) -> dict:
    """Train `objective.trainable_modules()` on `loader`; returns the final summary.

    lr is the base rate; with scale_lr it is multiplied by (batch * accum_steps * world_size) / 256.
    Checkpoints: `last.ckpt` every epoch, `epoch=EE-train_loss=L.ckpt` every `save_ckpt_freq`
    epochs (keep the newest `keep_last_k`). `resume_from` continues that run exactly.
    `epoch_end(epoch, global_step)` runs on every rank after each epoch's checkpoint (validation)
    and may return metrics; with `keep_best_k`, each epoch whose metrics hold `best_metric` gets a
    copy `epoch=EE-<metric>=V.ckpt`, and only the best k (by `best_mode`) are kept.
    `compile_mode` is torch.compile's mode ('reduce-overhead': CUDA graphs) for `compile=True`.
    `fused_adamw` None: the fused AdamW kernel on CUDA, torch's default elsewhere; True/False force it.
    `weight_decay_groups` 'timm' | 'all' and `cosine_period` 'remaining' | 'all_epochs': see
    mmdistill.train.optim (DECAY_GROUPS, COSINE_PERIODS); 'all' / 'all_epochs' = MM-CDFSL's
    distillation.
    `resume_may_change`: bindings a resume may change from the checkpoint's (train/resume_config.py).
    """
    _check_settings(epochs=epochs, accum_steps=accum_steps, log_every=log_every,
                    save_ckpt_freq=save_ckpt_freq, max_nonfinite=max_nonfinite,
                    keep_last_k=keep_last_k, keep_best_k=keep_best_k, lr=lr, min_lr=min_lr,
                    warmup_lr=warmup_lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay, betas=betas,
                    clip_grad=clip_grad)
    optim.check_choices(weight_decay_groups, cosine_period)
    _check_best_k(keep_best_k, best_mode, epoch_end)
    _check_loader(loader, ctx)
    objective.to(ctx.device)
    trainable = objective.trainable_modules()
    _check_frozen(objective, trainable)

    steps_per_epoch = len(loader) // accum_steps
    if steps_per_epoch == 0:
        raise ValueError(f"the loader has {len(loader)} batches, fewer than train.accum_steps="
                         f"{accum_steps}: not one optimizer step per epoch. Lower accum_steps or "
                         f"use more data.")
    total_batch = loader.batch_size * accum_steps * ctx.world_size
    peak_lr = optim.scaled_lr(lr, total_batch, scale_lr)
    optimizer = optim.build_optimizer(trainable, peak_lr, weight_decay, betas,
                                      fused=fused_adamw, decay_groups=weight_decay_groups)
    scheduler = optim.build_scheduler(optimizer, epochs * steps_per_epoch,
                                      round(warmup_epochs * steps_per_epoch), min_lr, warmup_lr,
                                      period=cosine_period)
    step_fn = TrainStep(objective, optimizer, device=ctx.device, amp_dtype=ctx.amp_dtype,
                        clip_grad=clip_grad, accum_steps=accum_steps,
                        find_unused_parameters=find_unused_parameters, compile=compile,
                        compile_mode=compile_mode)
    data_state = {"seed": ctx.seed, "steps_per_epoch": steps_per_epoch, "total_batch": total_batch}

    start_epoch, global_step, last_metrics = 0, 0, {}
    if resume_from is not None:
        check_resume_config(resume_from, training_checkpoint.load_checkpoint(resume_from, mmap=True)
                            .get("gin_config") or "", ctx.gin_config(), resume_may_change)
        start_epoch, global_step, last_metrics = training_checkpoint.resume(
            resume_from, step_fn, scheduler, data_state, ctx)
    if ctx.is_main:
        print_plan(ctx, loader.batch_size, accum_steps, total_batch, lr, peak_lr, scale_lr,
                   steps_per_epoch, epochs, start_epoch)
    ctx.save_operative_config()

    console = Console(ctx.is_main)
    device_batches = DeviceBatches(loader, ctx.device)
    consecutive_bad = total_bad = clips_seen = 0
    train_start = time.perf_counter()
    upcoming = None  # the next epoch's batches, asked for during this epoch's last step
    early = _can_start_early(loader)
    for epoch in range(start_epoch, epochs):
        batches, upcoming = upcoming or _epoch_batches(device_batches, loader, epoch), None
        trainable.train()
        epoch_window, window = _Window(), _Window()
        console.start_epoch(epoch, epochs, steps_per_epoch)
        for step_in_epoch in range(steps_per_epoch):
            waited = device_batches.loader_wait
            micro_batches = [next(batches) for _ in range(accum_steps)]
            wait = device_batches.loader_wait - waited
            if step_in_epoch == steps_per_epoch - 1 and epoch + 1 < epochs and early:
                # Workers load the next epoch's first batches during this last step, the
                # logging, the checkpoint and the validation, instead of after them.
                upcoming = _epoch_batches(device_batches, loader, epoch + 1)
            step_lr = optimizer.param_groups[0]["lr"]
            result = step_fn(micro_batches)
            global_step += 1
            scheduler.step_update(global_step)
            window.add(result, wait)
            epoch_window.add(result, wait)
            clips_seen += result.clips
            nonfinite = result.skipped and not result.empty
            total_bad += nonfinite
            consecutive_bad = consecutive_bad + 1 if nonfinite else (
                consecutive_bad if result.empty else 0)
            if consecutive_bad >= max_nonfinite:
                raise RuntimeError(_nonfinite_message(consecutive_bad, global_step, epoch, ctx))
            if global_step % log_every == 0:
                metrics = {**window.metrics(ctx), "train/lr": step_lr, "epoch": epoch,
                           "train/nonfinite_steps": total_bad}
                ctx.logger.log(metrics, step=global_step)
                console.log(epoch, global_step, metrics)
                window = _Window()
            console.step()
        del batches  # the loader may hold unused batches (a partial accumulation group)

        last_metrics = epoch_window.epoch_metrics(epoch, ctx.device)
        ctx.logger.log(last_metrics, step=global_step)
        console.end_epoch(epoch, global_step, last_metrics)
        training_checkpoint.save_epoch(ctx, objective, step_fn, scheduler, epoch, global_step,
                                       data_state, last_metrics, save_ckpt_freq, keep_last_k)
        if epoch_end is not None:
            epoch_metrics = epoch_end(epoch, global_step)
            if keep_best_k and ctx.is_main and epoch_metrics:
                _keep_best(ctx, epoch, epoch_metrics, best_metric, keep_best_k, best_mode)

    seconds = time.perf_counter() - train_start
    summary = {**last_metrics, "epochs": epochs, "global_step": global_step,
               "train/nonfinite_steps": total_bad, "train_seconds": seconds,
               "train/clips_per_s_overall": clips_seen * ctx.world_size / max(seconds, 1e-9),
               "checkpoint": str(ctx.checkpoints_dir / training_checkpoint.LAST)}
    ctx.logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return summary


# --- helpers of train(), in the order it uses them -------------------------------------------

def _check_settings(*, epochs, accum_steps, log_every, save_ckpt_freq, max_nonfinite,
                    keep_last_k, keep_best_k, lr, min_lr, warmup_lr, warmup_epochs,
                    weight_decay, betas, clip_grad) -> None:
    """Every typed train.* setting, before anything is built: the message names the binding."""
    for name, value in [("epochs", epochs), ("accum_steps", accum_steps), ("log_every", log_every),
                        ("save_ckpt_freq", save_ckpt_freq), ("max_nonfinite", max_nonfinite)]:
        checks.check_int(f"train.{name}", value)
    checks.check_int("train.keep_last_k", keep_last_k, optional=True, example=3)
    checks.check_int("train.keep_best_k", keep_best_k, optional=True, example=5)
    checks.check_number("train.lr", lr, example=1e-3)
    checks.check_number("train.warmup_epochs", warmup_epochs, example=5)
    checks.check_number("train.clip_grad", clip_grad, optional=True, example=1.0)  # 0: off
    optim.check_optimizer_settings(weight_decay, betas, min_lr, warmup_lr)


def _check_best_k(keep_best_k, best_mode, epoch_end) -> None:
    if keep_best_k is None:
        return
    if best_mode not in ("max", "min"):
        raise ValueError(f"train.best_mode={best_mode!r}: choose 'max' or 'min'")
    if epoch_end is None:
        raise ValueError("train.keep_best_k needs a validation metric, but this run validates "
                         "nothing: set validation.eval_every and validation.annotations, or "
                         "unset train.keep_best_k")


def _keep_best(ctx: RunContext, epoch: int, metrics: dict, best_metric: str, keep_best_k: int,
               best_mode: str) -> None:
    if best_metric not in metrics:
        raise ValueError(f"train.best_metric={best_metric!r} is not among the validation "
                         f"metrics {sorted(metrics)}; set train.best_metric to one of them")
    training_checkpoint.save_best(ctx.checkpoints_dir, epoch, best_metric,
                                  float(metrics[best_metric]), keep_best_k, best_mode)


def _check_loader(loader, ctx: RunContext) -> None:
    if getattr(loader, "batch_size", None) is None:
        raise ValueError("the training loader has no batch_size (a custom batch_sampler?); build it "
                         "with DataLoader(batch_size=...) so the effective batch and lr are known.")
    if ctx.world_size > 1:
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, torch.utils.data.DistributedSampler):
            raise ValueError(f"world_size={ctx.world_size} but the loader's sampler is "
                             f"{type(sampler).__name__}: every process would see the same clips. "
                             f"Use a DistributedSampler (the data module's loader factory does).")
        if not dist_utils.is_distributed():
            raise RuntimeError(f"ctx.world_size={ctx.world_size} but torch.distributed is not "
                               f"initialised; call distributed.init_distributed() under torchrun.")


def _check_frozen(objective: nn.Module, trainable: nn.Module) -> None:
    """Parameters outside trainable_modules() would get gradients but never be updated."""
    trainable_ids = {id(p) for p in trainable.parameters()}
    leaking = [name for name, p in objective.named_parameters()
               if p.requires_grad and id(p) not in trainable_ids]
    if leaking:
        raise ValueError(f"{type(objective).__name__} has parameters outside trainable_modules() "
                         f"that require grad: {leaking[:5]}{' ...' if len(leaking) > 5 else ''}. "
                         f"Freeze them (requires_grad_(False)) or return them from "
                         f"trainable_modules().")


def _can_start_early(loader) -> bool:
    """Whether the next epoch's batches may be asked for before this epoch's checkpoint. Only
    for build_loader's loaders with workers: their order comes from (seed, epoch) and their worker
    seeds from the loader's own generator, so asking early draws nothing from the global RNG the
    checkpoint records, and a resumed run stays bit-identical. Other loaders (a plain shuffling
    DataLoader draws its order from the global RNG) ask at the epoch's start, as before."""
    return (isinstance(getattr(loader, "sampler", None), EpochTaggedSampler)
            and getattr(loader, "num_workers", 0) > 0
            and getattr(loader, "generator", None) is not None)


def _epoch_batches(device_batches: DeviceBatches, loader, epoch: int):
    """An epoch's finished batches; the loader starts on them at once (see DeviceBatches)."""
    _set_epoch(loader, epoch)
    return iter(device_batches)


def _set_epoch(loader, epoch: int) -> None:
    """Reseed the sampler's shuffle and the dataset's per-item randomness for this epoch."""
    for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def _nonfinite_message(count: int, step: int, epoch: int, ctx: RunContext) -> str:
    last = ctx.checkpoints_dir / training_checkpoint.LAST
    where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
    return (f"{count} consecutive optimizer steps had a non-finite loss or gradient (up to step "
            f"{step}, epoch {epoch}); stopping. {where.capitalize()}. Lower train.lr, set "
            f"train.clip_grad, prefer bf16 over fp16, or check the data; raise "
            f"train.max_nonfinite to tolerate more.")
