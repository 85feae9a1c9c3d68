"""One optimizer step of the training loop: mixed precision, gradient accumulation, clipping,
DDP synchronisation, and skipping non-finite steps on every process alike."""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from mmdistill.train import distributed as dist_utils


@dataclasses.dataclass
class StepResult:
    # 'loss', 'loss_<part>' and 'metric_<name>' (scalars logged beside the losses, never
    # differentiated), each the mean over micro-batches, on the device
    losses: dict[str, torch.Tensor]
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

    Micro-batches come finished and on the device (`mmdistill.data.device_batches`), so the
    (possibly compiled) forward holds no host sync. Gradients are synchronised across processes
    only on the last micro-batch (DDP `no_sync`). A step whose loss or gradient is non-finite on
    any process is skipped on all of them; the host waits for the device at that skip decision
    (fp16's GradScaler makes one anyway).
    """

    def __init__(self, objective: nn.Module, optimizer: torch.optim.Optimizer, *,
                 device: torch.device, amp_dtype: torch.dtype | None = None,
                 clip_grad: float | None = None, accum_steps: int = 1,
                 find_unused_parameters: bool = False, compile: bool | str = False,
                 compile_mode: str | None = None):
        self.objective_name = type(objective).__name__
        self.optimizer = optimizer
        self.device, self.amp_dtype = device, amp_dtype
        self.clip_grad, self.accum_steps = clip_grad, accum_steps
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
            with self._accumulation_context(last=i == len(micro_batches) - 1):
                with torch.autocast(self.device.type, dtype=self.amp_dtype,
                                    enabled=self.amp_dtype is not None):
                    out = self.forward(batch)
                loss = _check_output(out, self.objective_name) / self.accum_steps
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for key, value in out.items():
                if key == "loss" or key.startswith(("loss_", "metric_")):
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
            if not bool(torch.isfinite(grad_norm)):  # that skip, reported as one (same on every rank)
                self.optimizer.zero_grad(set_to_none=True)
                return StepResult(losses, torch.full((), math.nan, device=self.device), True,
                                  clips, bad_clips)
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
                        f"optional 'loss_<part>' / 'metric_<name>' scalars); got {type(out).__name__}"
                        f"{' with keys ' + str(sorted(out)) if isinstance(out, dict) else ''}")
    loss = out["loss"]
    if not (isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.requires_grad):
        raise TypeError(f"{objective_name} returned 'loss' that is not a scalar tensor with a "
                        f"gradient (shape {getattr(loss, 'shape', None)}, requires_grad="
                        f"{getattr(loss, 'requires_grad', None)}); reduce it to a scalar and do not "
                        f"compute it under no_grad.")
    return loss


def _num_clips(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0
