"""SIGKILL a training process from outside once a checkpoint of a given epoch is on disk: the
crash the resume tests recover from, with nothing in the trainer that knows about tests."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import torch


def saved_epoch(root: Path, pattern: str) -> int | None:
    """The epoch of the newest checkpoint matching `root.glob(pattern)`, None before the first."""
    epochs = []
    for path in root.glob(pattern):
        try:  # mmap: read the small 'epoch' entry without loading the weights
            epochs.append(int(torch.load(path, mmap=True, weights_only=True, map_location="cpu")["epoch"]))
        except FileNotFoundError:  # replaced between glob and load: the next poll sees the new one
            continue
    return max(epochs, default=None)


def kill_after_epoch(process: subprocess.Popen, root: Path, pattern: str, epoch: int,
                     timeout: float = 240.0) -> int:
    """Wait until a checkpoint under `root` holds `epoch` or later, then SIGKILL `process` and
    reap it; returns the epoch that checkpoint held."""
    deadline = time.monotonic() + timeout
    while True:
        saved = saved_epoch(root, pattern)
        if saved is not None and saved >= epoch:
            process.kill()
            process.wait(timeout=60)
            return saved
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit code {process.returncode}) before "
                                 f"a checkpoint of epoch {epoch} appeared under {root}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no checkpoint of epoch {epoch} under {root} after {timeout} s")
        time.sleep(0.05)
