"""What the training loop prints: its plan, a tqdm bar in a terminal, one-line summaries elsewhere."""
from __future__ import annotations

import math
import time

from tqdm.auto import tqdm

from mmdistill.context import PRECISIONS, RunContext
from mmdistill.progress import interactive
from mmdistill.train import optim

PRINT_EVERY_S = 30.0  # console cadence when there is no progress bar (logs, CI)


class Console:
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
            print(one_line(epoch, step, metrics), flush=True)

    def end_epoch(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.is_main:
            print(one_line(epoch, step, metrics), flush=True)


def one_line(epoch: int, step: int, metrics: dict[str, float]) -> str:
    shown = ", ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in metrics.items()
                      if k != "epoch" and isinstance(v, (int, float)))
    return f"[train] epoch {epoch} step {step}: {shown}"


def print_plan(ctx: RunContext, batch: int, accum: int, total_batch: int, lr: float,
               peak_lr: float, scale_lr: bool, steps_per_epoch: int, epochs: int,
               start_epoch: int) -> None:
    """The run's shape in two lines, so no batch or lr scaling happens silently."""
    precision = {dtype: name for name, dtype in PRECISIONS.items()}[ctx.amp_dtype]
    lr_line = (f"base lr {lr:g} x {total_batch}/{optim.LR_REFERENCE_BATCH} = {peak_lr:g}"
               if scale_lr else f"lr {peak_lr:g} (train.scale_lr=False: not scaled by batch)")
    resumed = f", resuming at epoch {start_epoch}" if start_epoch else ""
    print(f"[train] world size {ctx.world_size} x per-device batch {batch} x accumulation {accum} "
          f"= effective batch {total_batch}; {lr_line}\n"
          f"[train] {steps_per_epoch} steps/epoch x {epochs} epochs = {steps_per_epoch * epochs} "
          f"optimizer steps; {precision} on {ctx.device}{resumed}", flush=True)
