"""The per-run state every stage receives, so stages never reach for globals; and the device,
precision and seeds a command resolves before building it."""
from __future__ import annotations

import dataclasses
import difflib
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mmdistill.checks import SettingError, check_str
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


def resolve_device(device: str) -> torch.device:
    """experiment.device as a torch device, refused here (not at the first tensor moved) when
    torch does not know it or this machine does not have it."""
    check_str("experiment.device", device, example="auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        close = difflib.get_close_matches(device.split(":")[0], ["auto", "cpu", "cuda"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SettingError(f"experiment.device={device!r} is not a device torch knows; {hint}use "
                           f"'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:<index>'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"experiment.device={device!r} but CUDA is not available on this machine; "
                         f"use experiment.device='cpu' (or 'auto').")
    if resolved.type == "cuda" and resolved.index is not None \
            and resolved.index >= torch.cuda.device_count():
        raise SettingError(f"experiment.device={device!r} but this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s), numbered from 0; use "
                           f"experiment.device='cuda' (or CUDA_VISIBLE_DEVICES to pick one).")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    check_str("experiment.precision", precision, example="fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"experiment.precision={precision!r}: choose one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError("experiment.precision='fp16' needs a CUDA device (fp16 autocast with a "
                         "GradScaler); on CPU use 'bf16' or 'fp32'.")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"experiment.precision='bf16' but {torch.cuda.get_device_name(device)} "
                         f"does not support bfloat16; use 'fp16' (with loss scaling) or 'fp32'.")
    return dtype


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
