"""Checkpoint files and everything a resumed run needs to continue exactly where it stopped.

Files are written atomically (temporary file in the same folder, fsync, rename), so a crash or a
full disk mid-write leaves the previous checkpoint untouched. Everything stored is tensors or
plain Python values, so `torch.load(weights_only=True)` reads it without unpickling code.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "mmdistill"
VERSION = 1
LAST = "last.ckpt"
_NAMED = re.compile(r"^epoch=(\d+)-train_loss=.*\.ckpt$")


def checkpoint_name(epoch: int, train_loss: float) -> str:
    """The original's naming (0-based epoch, as Lightning wrote it): `epoch=04-train_loss=0.1234.ckpt`."""
    loss = f"{train_loss:.4f}" if math.isfinite(train_loss) else str(train_loss)
    return f"epoch={epoch:02d}-train_loss={loss}.ckpt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` so that `path` is always either the old or the new complete file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (network mounts) refuse fsync on directories; the data is synced
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read one of our checkpoint files safely (no code is unpickled). `mmap=True` maps the
    tensors instead of reading them (for callers that only need the small fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass an existing .ckpt file "
                                f"(a run's checkpoints/last.ckpt resumes that run).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch's long advice to load with weights_only=False is not for us
        reason = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read checkpoint {path}: {type(err).__name__}: {reason}. The file is "
                         f"damaged or not an mmdistill checkpoint; use checkpoints/last.ckpt or an "
                         f"earlier epoch=*.ckpt of the same run.") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mmdistill training checkpoint (no format='{FORMAT}'); "
                         f"to start from other weights use a model loader, not resume.")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {payload.get('version')}, this code reads "
                         f"version {VERSION}; use the mmdistill version that wrote it.")
    return payload


def prune_checkpoints(folder: str | Path, keep_last_k: int | None) -> list[Path]:
    """Delete all but the newest `keep_last_k` named `epoch=*` checkpoints (never `last.ckpt`)."""
    if keep_last_k is None:
        return []
    if keep_last_k < 1:
        raise ValueError(f"train.keep_last_k={keep_last_k}: use None (keep all) or a count >= 1")
    named = sorted((int(m.group(1)), p) for p in Path(folder).iterdir()
                   if (m := _NAMED.match(p.name)))
    removed = [p for _, p in named[:-keep_last_k]]
    for path in removed:
        path.unlink()
    return removed


# --- random number generators -------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """Every generator a training step may draw from, as tensors and plain values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- metrics.jsonl ------------------------------------------------------------------------------

def truncate_metrics(path: str | Path, max_step: int) -> int:
    """Drop `metrics.jsonl` records logged after step `max_step`; returns how many were dropped.

    A resumed run repeats the steps after its checkpoint; without this they would appear twice.
    A half-written last line (the process was killed mid-write) is dropped too. Records without a
    'step' key are kept.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept, dropped = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                dropped += 1
                continue
            raise ValueError(f"{path} line {number} is not JSON ({err}); fix or remove that line "
                             f"before resuming.") from err
        if isinstance(record, dict) and "step" in record and record["step"] > max_step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return dropped
