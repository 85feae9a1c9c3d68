"""The hand-written training loop: mixed precision, accumulation, clipping, schedule, logging,
checkpoints and exact resume. It knows nothing about models; an objective supplies the loss.

Objective contract (see docs/INTERFACES.md): `objective(batch) -> {'loss': scalar, 'loss_<part>':
scalar, ...}` and `objective.trainable_modules() -> nn.Module` (the only part optimised and
wrapped in DDP; everything else must have requires_grad False). Batches are dicts of tensors,
lists of str, and an optional int 'num_skipped' (bad clips the collate dropped).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import gin
import torch
from torch import nn
from tqdm.auto import tqdm

from mmdistill import checks
from mmdistill.context import PRECISIONS, RunContext
from mmdistill.progress import interactive
from mmdistill.train import distributed as dist_utils
from mmdistill.train import optim, training_checkpoint

PRINT_EVERY_S = 30.0  # console cadence when there is no progress bar (logs, CI)


@dataclasses.dataclass
class StepResult:
    losses: dict[str, torch.Tensor]  # 'loss' and 'loss_<part>', mean over micro-batches, on device
    grad_norm: torch.Tensor  # before clipping; nan when skipped
    skipped: bool  # non-finite loss or gradient: weights, optimizer and scaler untouched
    clips: int  # clips in this step on this process
    bad_clips: int  # sum of the batches' 'num_skipped'
    empty: bool = False  # a micro-batch held no clip at all (every clip bad): skipped, not non-finite


class _ObjectiveForward(nn.Module):
    """Routes the objective's forward through a module that registers only the trainable parts,
    so DDP synchronises exactly those while frozen teachers stay outside it."""

    def __init__(self, objective: nn.Module):
        super().__init__()
        self.trainable = objective.trainable_modules()
        self._objective = [objective]  # in a list so nn.Module does not register it

    def forward(self, batch):
        return self._objective[0](batch)


class TrainStep:
    """One optimizer step over `accum_steps` micro-batches; usable alone (benchmarks time it).

    Gradients are synchronised across processes only on the last micro-batch (DDP `no_sync`).
    A step whose loss or gradient is non-finite on any process is skipped on all of them. The
    host waits for the device at that skip decision (fp16's GradScaler makes one anyway) and in
    an objective's `prepare_batch` (the tube mask's token count, once per micro-batch), both
    outside the compiled forward.
    """

    def __init__(self, objective: nn.Module, optimizer: torch.optim.Optimizer, *,
                 device: torch.device, amp_dtype: torch.dtype | None = None,
                 clip_grad: float | None = None, accum_steps: int = 1,
                 find_unused_parameters: bool = False, compile: bool | str = False,
                 compile_mode: str | None = None, prepare: Callable[[dict], dict] | None = None):
        self.objective_name = type(objective).__name__
        self.optimizer = optimizer
        self.device, self.amp_dtype = device, amp_dtype
        self.clip_grad, self.accum_steps = clip_grad, accum_steps
        # Run on the device before the (possibly compiled) forward: the data's own finishing
        # (e.g. drawing skeleton heatmaps), then the objective's (e.g. the shared mask's token
        # index), so the compiled graph holds no host sync.
        self.prepare = [f for f in (prepare, getattr(objective, "prepare_batch", None)) if f]
        self.trainable = objective.trainable_modules()
        self.params = [p for p in self.trainable.parameters() if p.requires_grad]
        self.model = dist_utils.wrap_ddp(_ObjectiveForward(objective), device, find_unused_parameters)
        self.forward = _maybe_compile(self.model, compile, compile_mode, accum_steps)
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        self.check_unused = dist_utils.is_distributed() and not find_unused_parameters

    def _accumulation_context(self, last: bool):
        if last or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _grad_norm(self) -> torch.Tensor:
        if self.clip_grad:
            return nn.utils.clip_grad_norm_(self.params, self.clip_grad)
        grads = [p.grad for p in self.params if p.grad is not None]
        return nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)

    def _any_empty(self, micro_batches: list[dict]) -> bool:
        """Whether any process got a micro-batch with no clip (on_bad_clip='skip' dropped them
        all); then every process skips the step, so DDP's collectives stay in step."""
        empty = any(_num_clips(b) == 0 for b in micro_batches)
        if dist_utils.is_distributed():  # one scalar all-reduce; none for a single process
            empty = bool(dist_utils.any_rank(torch.tensor(empty, device=self.device)).item())
        return empty

    def __call__(self, micro_batches: list[dict]) -> StepResult:
        if len(micro_batches) != self.accum_steps:
            raise ValueError(f"got {len(micro_batches)} micro-batches, expected accum_steps="
                             f"{self.accum_steps}")
        clips = sum(_num_clips(b) for b in micro_batches)
        bad_clips = sum(int(b.get("num_skipped", 0)) for b in micro_batches)
        if self._any_empty(micro_batches):
            self.optimizer.zero_grad(set_to_none=True)
            return StepResult({}, torch.full((), math.nan, device=self.device), True, clips,
                              bad_clips, empty=True)
        losses: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            for prepare in self.prepare:
                batch = prepare(batch)
            with self._accumulation_context(last=i == len(micro_batches) - 1):
                with torch.autocast(self.device.type, dtype=self.amp_dtype,
                                    enabled=self.amp_dtype is not None):
                    out = self.forward(batch)
                loss = _check_output(out, self.objective_name) / self.accum_steps
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for key, value in out.items():
                if key == "loss" or key.startswith("loss_"):
                    part = torch.as_tensor(value).detach().float() / self.accum_steps
                    losses[key] = losses[key] + part if key in losses else part
        if self.check_unused:  # once: DDP would otherwise fail later with a vaguer message
            self.check_unused = False
            _refuse_unused_parameters(self.trainable)
        bad = ~torch.isfinite(losses["loss"])
        grad_norm = None
        if self.scaler is None:
            grad_norm = self._grad_norm()
            bad = bad | ~torch.isfinite(grad_norm)
        if dist_utils.any_rank(bad).item():
            self.optimizer.zero_grad(set_to_none=True)
            return StepResult(losses, torch.full((), math.nan, device=self.device), True, clips,
                              bad_clips)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = self._grad_norm()
            self.scaler.step(self.optimizer)  # itself skips steps with fp16-overflowed gradients
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(losses, grad_norm.detach(), False, clips, bad_clips)


def _refuse_unused_parameters(trainable: nn.Module) -> None:
    unused = [name for name, p in trainable.named_parameters() if p.requires_grad and p.grad is None]
    if unused:
        raise RuntimeError(f"trainable parameters got no gradient in the first step: "
                           f"{unused[:5]}{' ...' if len(unused) > 5 else ''}. DDP needs "
                           f"train.find_unused_parameters=True for that, or freeze them "
                           f"(requires_grad_(False)) if the loss never uses them.")


# torch.compile modes that replay CUDA graphs (inductor's 'max-autotune' does too).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def _maybe_compile(module: nn.Module, compile: bool | str, mode: str | None = None,
                   accum_steps: int = 1) -> nn.Module:
    """torch.compile the whole objective forward (student, heads and teachers) when asked;
    a string names the backend (e.g. 'inductor', 'aot_eager'); `mode` is inductor's
    ('reduce-overhead' replays CUDA graphs; 'max-autotune' also tunes kernels, with CUDA graphs)."""
    if not compile:
        if mode is not None:
            raise ValueError(f"train.compile_mode={mode!r} needs train.compile=True")
        return module
    if mode is not None and compile not in (True, "inductor"):
        raise ValueError(f"train.compile_mode={mode!r} is a mode of the inductor backend; "
                         f"train.compile={compile!r} would ignore it. Use train.compile=True.")
    if mode in CUDA_GRAPH_MODES and accum_steps > 1:
        # The second micro-batch's replay overwrites the gradients the first one left in graph
        # memory, and torch stops with an error (pytorch/pytorch#169545).
        raise ValueError(f"train.compile_mode={mode!r} (CUDA graphs) cannot accumulate gradients "
                         f"over micro-batches (train.accum_steps={accum_steps}): raise "
                         f"data_loader.batch_size instead, or use the default compile mode.")
    options = {} if compile is True else {"backend": compile}
    return torch.compile(module, mode=mode, **options)


def _check_output(out: Any, objective_name: str) -> torch.Tensor:
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{objective_name}.forward must return a dict with a scalar 'loss' (and "
                        f"optional 'loss_<part>' entries); got {type(out).__name__}"
                        f"{' with keys ' + str(sorted(out)) if isinstance(out, dict) else ''}")
    loss = out["loss"]
    if not (isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.requires_grad):
        raise TypeError(f"{objective_name} returned 'loss' that is not a scalar tensor with a "
                        f"gradient (shape {getattr(loss, 'shape', None)}, requires_grad="
                        f"{getattr(loss, 'requires_grad', None)}); reduce it to a scalar and do not "
                        f"compute it under no_grad.")
    return loss


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts and lists) to `device`; everything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def _num_clips(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0


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


class _Console:
    """A tqdm bar in a terminal; elsewhere (logs, CI=true) a line at most every 30 s. Rank 0 only."""

    def __init__(self, is_main: bool):
        self.is_main, self.bar, self.last_print = is_main, None, 0.0
        self.use_bar = is_main and interactive()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.use_bar:
            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs - 1}", dynamic_ncols=True,
                            leave=False)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics.get('train/loss', math.nan):.4f}",
                                 lr=f"{metrics['train/lr']:.2e}")
        elif self.is_main and time.monotonic() - self.last_print >= PRINT_EVERY_S:
            self.last_print = time.monotonic()
            print(_one_line(epoch, step, metrics), flush=True)

    def end_epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.is_main:
            print(_one_line(epoch, step, metrics), flush=True)


@gin.configurable("train", denylist=["objective", "loader", "ctx", "resume_from", "epoch_end"])
def train(objective: nn.Module, loader, ctx: RunContext, *, resume_from: str | Path | None = None,
          epoch_end=None,
          epochs: int = 50, lr: float = 2e-3, scale_lr: bool = True, min_lr: float = 1e-6,
          warmup_epochs: float = 5, warmup_lr: float = 1e-6, weight_decay: float = 0.05,
          betas: tuple[float, float] = (0.9, 0.999), clip_grad: float | None = None,
          accum_steps: int = 1, log_every: int = 20, save_ckpt_freq: int = 5,
          keep_last_k: int | None = None, max_nonfinite: int = 10, compile: bool | str = False,
          compile_mode: str | None = None, fused_adamw: bool | None = None, find_unused_parameters: bool = False,
          debug_kill_after_epoch: int | None = None) -> dict:
    """Train `objective.trainable_modules()` on `loader`; returns the final summary.

    lr is the base rate; with scale_lr it is multiplied by (batch * accum_steps * world_size) / 256.
    Checkpoints: `last.ckpt` every epoch, `epoch=EE-train_loss=L.ckpt` every `save_ckpt_freq`
    epochs (keep the newest `keep_last_k`). `resume_from` continues that run exactly.
    `epoch_end(epoch, global_step)` runs on every rank after each epoch's checkpoint (validation).
    `compile_mode` is torch.compile's mode ('reduce-overhead': CUDA graphs) for `compile=True`.
    `fused_adamw` None: the fused AdamW kernel on CUDA, torch's default elsewhere; True/False force it.
    `debug_kill_after_epoch` is for tests only: SIGKILL this process after that epoch's checkpoint.
    """
    _check_settings(epochs=epochs, accum_steps=accum_steps, log_every=log_every,
                    save_ckpt_freq=save_ckpt_freq, max_nonfinite=max_nonfinite,
                    keep_last_k=keep_last_k, lr=lr, min_lr=min_lr, warmup_lr=warmup_lr,
                    warmup_epochs=warmup_epochs, weight_decay=weight_decay, betas=betas,
                    clip_grad=clip_grad)
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
                                      fused=fused_adamw)
    scheduler = optim.build_scheduler(optimizer, epochs * steps_per_epoch,
                                      round(warmup_epochs * steps_per_epoch), min_lr, warmup_lr)
    step_fn = TrainStep(objective, optimizer, device=ctx.device, amp_dtype=ctx.amp_dtype,
                        clip_grad=clip_grad, accum_steps=accum_steps,
                        find_unused_parameters=find_unused_parameters, compile=compile,
                        compile_mode=compile_mode, prepare=getattr(loader.dataset, "finish_batch", None))
    data_state = {"seed": ctx.seed, "steps_per_epoch": steps_per_epoch, "total_batch": total_batch}

    start_epoch, global_step, last_metrics = 0, 0, {}
    if resume_from is not None:
        start_epoch, global_step, last_metrics = training_checkpoint.resume(
            resume_from, step_fn, scheduler, data_state, ctx)
    if ctx.is_main:
        _print_plan(ctx, loader.batch_size, accum_steps, total_batch, lr, peak_lr, scale_lr,
                    steps_per_epoch, epochs, start_epoch)
    ctx.save_operative_config()

    console = _Console(ctx.is_main)
    consecutive_bad = total_bad = clips_seen = 0
    train_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        _set_epoch(loader, epoch)
        trainable.train()
        epoch_window, window = _Window(), _Window()
        console.start_epoch(epoch, epochs, steps_per_epoch)
        batches = iter(loader)
        for _ in range(steps_per_epoch):
            wait_start = time.perf_counter()
            micro_batches = [next(batches) for _ in range(accum_steps)]
            wait = time.perf_counter() - wait_start
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
            epoch_end(epoch, global_step)
        if debug_kill_after_epoch is not None and epoch == debug_kill_after_epoch:
            os.kill(os.getpid(), signal.SIGKILL)  # test-only: a crash right after a checkpoint

    seconds = time.perf_counter() - train_start
    summary = {**last_metrics, "epochs": epochs, "global_step": global_step,
               "train/nonfinite_steps": total_bad, "train_seconds": seconds,
               "train/clips_per_s_overall": clips_seen * ctx.world_size / max(seconds, 1e-9),
               "checkpoint": str(ctx.checkpoints_dir / training_checkpoint.LAST)}
    ctx.logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return summary


# --- helpers of train(), in the order it uses them -------------------------------------------

def _check_settings(*, epochs, accum_steps, log_every, save_ckpt_freq, max_nonfinite,
                    keep_last_k, lr, min_lr, warmup_lr, warmup_epochs, weight_decay, betas,
                    clip_grad) -> None:
    """Every typed train.* setting, before anything is built: the message names the binding."""
    for name, value in [("epochs", epochs), ("accum_steps", accum_steps), ("log_every", log_every),
                        ("save_ckpt_freq", save_ckpt_freq), ("max_nonfinite", max_nonfinite)]:
        checks.check_int(f"train.{name}", value)
    checks.check_int("train.keep_last_k", keep_last_k, optional=True, example=3)
    checks.check_number("train.lr", lr, example=1e-3)
    checks.check_number("train.warmup_epochs", warmup_epochs, example=5)
    checks.check_number("train.clip_grad", clip_grad, optional=True, example=1.0)  # 0: off
    optim.check_optimizer_settings(weight_decay, betas, min_lr, warmup_lr)


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


def _set_epoch(loader, epoch: int) -> None:
    """Reseed the sampler's shuffle and the dataset's per-item randomness for this epoch."""
    for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def _print_plan(ctx, batch, accum, total_batch, lr, peak_lr, scale_lr, steps_per_epoch, epochs,
                start_epoch) -> None:
    precision = {dtype: name for name, dtype in PRECISIONS.items()}[ctx.amp_dtype]
    lr_line = (f"base lr {lr:g} x {total_batch}/{optim.LR_REFERENCE_BATCH} = {peak_lr:g}"
               if scale_lr else f"lr {peak_lr:g} (train.scale_lr=False: not scaled by batch)")
    resumed = f", resuming at epoch {start_epoch}" if start_epoch else ""
    print(f"[train] world size {ctx.world_size} x per-device batch {batch} x accumulation {accum} "
          f"= effective batch {total_batch}; {lr_line}\n"
          f"[train] {steps_per_epoch} steps/epoch x {epochs} epochs = {steps_per_epoch * epochs} "
          f"optimizer steps; {precision} on {ctx.device}{resumed}", flush=True)


def _one_line(epoch: int, step: int, metrics: dict[str, float]) -> str:
    shown = ", ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in metrics.items()
                      if k != "epoch" and isinstance(v, (int, float)))
    return f"[train] epoch {epoch} step {step}: {shown}"


def _nonfinite_message(count: int, step: int, epoch: int, ctx: RunContext) -> str:
    last = ctx.checkpoints_dir / training_checkpoint.LAST
    where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
    return (f"{count} consecutive optimizer steps had a non-finite loss or gradient (up to step "
            f"{step}, epoch {epoch}); stopping. {where.capitalize()}. Lower train.lr, set "
            f"train.clip_grad, prefer bf16 over fp16, or check the data; raise "
            f"train.max_nonfinite to tolerate more.")
