"""The per-run state every stage receives, so stages never reach for globals."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from mmdistill.tracking import Logger

# experiment.precision -> the autocast dtype a RunContext carries (None: fp32, no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass
class RunContext:
    """Where a stage writes, how it logs, and on what it computes.

    `dir` exists and is owned by this run alone; checkpoints go to `checkpoints_dir`.
    `amp_dtype` is None for fp32, else the autocast dtype (torch.bfloat16 / torch.float16).
    `gin_config` returns the operative gin config text at call time (stored in checkpoints).
    Stages call `save_operative_config()` once every object is built, so the file and the W&B
    config list every parameter the run really used (gin only lists configurables already called).
    """

    dir: Path
    logger: Logger
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    wandb_run_id: str | None = None
    gin_config: Callable[[], str] = lambda: ""
    save_operative_config: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

