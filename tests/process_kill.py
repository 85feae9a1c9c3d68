"""SIGKILL a training process from outside while it holds still right after an epoch's end
(checkpoint written, validation logged): the crash the resume tests recover from, with nothing
in the trainer that knows about tests. The trainer is held by an `epoch_end` hook installed by
the test's own entry point (tests/toy_objective.py --pause-after-epoch, tests/paused_run.py),
which writes `<run dir>/paused` first."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import torch

PAUSED = "paused"


def saved_epoch(run_dir: Path) -> int:
    """The epoch of the run's last.ckpt, read without loading the weights (mmap)."""
    path = run_dir / "checkpoints" / "last.ckpt"
    return int(torch.load(path, mmap=True, weights_only=True, map_location="cpu")["epoch"])


def kill_once_paused(process: subprocess.Popen, root: Path, run_dir_pattern: str,
                     timeout: float = 240.0) -> Path:
    """Wait for the run directory `root.glob(run_dir_pattern)` to hold `paused`, SIGKILL
    `process` and reap it; returns that run directory."""
    deadline = time.monotonic() + timeout
    while True:
        paused = sorted(root.glob(f"{run_dir_pattern}/{PAUSED}"))
        if paused:
            process.kill()
            process.wait(timeout=60)
            return paused[0].parent
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit code {process.returncode}) before "
                                 f"pausing under {root}/{run_dir_pattern}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the process did not pause under {root}/{run_dir_pattern} "
                                 f"within {timeout} s")
        time.sleep(0.05)


def pause_after(epoch_to_pause: int, run_dir: Path, epoch_end=None):
    """An `epoch_end` hook: the run's own hook first, then, after `epoch_to_pause`, write
    `run_dir/paused` and sleep until killed."""
    def hook(epoch: int, global_step: int):
        metrics = epoch_end(epoch, global_step) if epoch_end is not None else None
        if epoch == epoch_to_pause:
            (Path(run_dir) / PAUSED).touch()
            time.sleep(600)
        return metrics
    return hook
