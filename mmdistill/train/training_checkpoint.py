"""The trainer's side of the training checkpoint: what it holds (built from the trainer's
parts), saving it every epoch, keeping the newest k, resuming a run from it exactly, the step it
stopped at, and keeping the best k by a validation metric.

Everything else about checkpoints is the `mmdistill.ckpt` package: the format tag and reading one
of these files strictly (`ckpt.format`), writing atomically (`ckpt.writing`: temporary file in the
same folder, fsync, rename, so a crash or a full disk mid-write leaves the previous checkpoint
untouched), and rebuilding a distilled checkpoint's models for evaluation (`ckpt.evaluation`).
Everything stored is tensors or plain Python values, so `torch.load(weights_only=True)` reads it
without unpickling code. The layout is in docs/INTERFACES.md ("Checkpoints").
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmdistill.ckpt.format import FORMAT, VERSION, load_checkpoint
# save_checkpoint: atomic, a failed write explained, a SIGTERM held until the file is complete.
from mmdistill.ckpt.writing import deferred_signals, save_checkpoint
from mmdistill.context import RunContext
from mmdistill.train import distributed, optim

LAST = "last.ckpt"
_NAMED = re.compile(r"^epoch=(\d+)-train_loss=.*\.ckpt$")


def checkpoint_name(epoch: int, train_loss: float) -> str:
    """The tennis fork's naming (0-based epoch, as Lightning wrote it):
    `epoch=04-train_loss=0.1234.ckpt`."""
    loss = f"{train_loss:.4f}" if math.isfinite(train_loss) else str(train_loss)
    return f"epoch={epoch:02d}-train_loss={loss}.ckpt"


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


def metric_file_part(metric: str) -> str:
    """`val/fewshot/5way_5shot/acc` -> `val_fewshot_5way_5shot_acc`, a best-k file's name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_")


def best_checkpoint_name(epoch: int, metric: str, value: float) -> str:
    """Lightning's `{epoch:02d}-{metric:.4f}` naming:
    `epoch=09-val_fewshot_5way_5shot_acc=61.2345.ckpt`."""
    return f"epoch={epoch:02d}-{metric_file_part(metric)}={value:.4f}.ckpt"


def save_best(folder: str | Path, epoch: int, metric: str, value: float, keep_best_k: int,
              mode: str = "max") -> list[Path]:
    """Copy this epoch's `last.ckpt` to a name carrying `metric`'s value, then delete all but the
    best `keep_best_k` such copies (never `last.ckpt` or the `train_loss` ones). Returns the
    removed files. A non-finite value is never kept among the best."""
    if mode not in ("max", "min"):
        raise ValueError(f"train.best_mode={mode!r}: choose 'max' or 'min'")
    folder = Path(folder)
    if math.isfinite(value):
        payload = load_checkpoint(folder / LAST)
        if payload["epoch"] != epoch:
            raise RuntimeError(f"{folder / LAST} holds epoch {payload['epoch']}, not {epoch}: the "
                               f"best-k copy must be written right after the epoch's checkpoint")
        save_checkpoint(folder / best_checkpoint_name(epoch, metric, value), payload)
    pattern = re.compile(rf"^epoch=(\d+)-{re.escape(metric_file_part(metric))}=(.+)\.ckpt$")
    scored = []
    for path in folder.iterdir():
        if (match := pattern.match(path.name)):
            score = float(match.group(2))
            scored.append((score if mode == "max" else -score, int(match.group(1)), path))
    scored.sort(key=lambda item: (-item[0], item[1]))  # best first; ties: the earlier epoch
    removed = [path for _, _, path in scored[keep_best_k:]]
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


# --- the trainer's side: save every epoch, resume --------------------------------------------
# `step_fn` is the loop's TrainStep: `trainable` (the optimised module), `optimizer`, `scaler`.

def build_payload(ctx: RunContext, objective: nn.Module, step_fn, scheduler, epoch: int,
                  global_step: int, data_state: dict, metrics: dict, rng: list[dict]) -> dict:
    """Everything a resumed run needs, as tensors and plain values; `rng` holds every rank's."""
    return {
        "format": FORMAT, "version": VERSION,
        "model": step_fn.trainable.state_dict(),
        "arch": objective.arch() if hasattr(objective, "arch") else {},
        "optimizer": step_fn.optimizer.state_dict(),
        "scaler": step_fn.scaler.state_dict() if step_fn.scaler is not None else {},
        "scheduler": scheduler.state_dict(),
        "epoch": epoch, "global_step": global_step,
        "rng": {"world_size": len(rng), "per_rank": rng},
        "data_state": {**data_state, "epoch": epoch},
        "gin_config": ctx.gin_config(),
        "wandb_run_id": ctx.wandb_run_id,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def save_epoch(ctx: RunContext, objective: nn.Module, step_fn, scheduler, epoch: int,
               global_step: int, data_state: dict, metrics: dict, save_ckpt_freq: int,
               keep_last_k: int | None) -> None:
    """`last.ckpt` every epoch, a named copy every `save_ckpt_freq` epochs (newest `keep_last_k`
    kept). Every rank must call it: the random states are gathered from all of them."""
    rng = distributed.gather_objects(capture_rng())  # collective
    if not ctx.is_main:
        return
    payload = build_payload(ctx, objective, step_fn, scheduler, epoch, global_step, data_state,
                            metrics, rng)
    folder = ctx.checkpoints_dir
    folder.mkdir(parents=True, exist_ok=True)
    with deferred_signals():  # a SIGTERM between the two files would leave last.ckpt an epoch behind
        if (epoch + 1) % save_ckpt_freq == 0:
            save_checkpoint(folder / checkpoint_name(epoch, metrics["train/epoch_loss"]), payload)
            prune_checkpoints(folder, keep_last_k)
        save_checkpoint(folder / LAST, payload)


def resume(path: str | Path, step_fn, scheduler, data_state: dict,
           ctx: RunContext) -> tuple[int, int, dict]:
    """Restore weights, optimizer, scaler, schedule position and RNGs; returns (first epoch to
    run, global step, the last epoch's metrics)."""
    ckpt = load_checkpoint(path)
    saved = ckpt["data_state"]
    if saved["seed"] != data_state["seed"]:
        raise ValueError(f"{path} was trained with seed {saved['seed']} but this run has seed "
                         f"{data_state['seed']}: the data order would differ. Set "
                         f"experiment.seed={saved['seed']} to resume.")
    for key in ("steps_per_epoch", "total_batch"):
        if saved.get(key) != data_state[key]:
            print(f"[train] WARNING: resuming {path} with {key}={data_state[key]} (it was "
                  f"{saved.get(key)}): the run continues with a different schedule or data split, "
                  f"not as an exact continuation.", flush=True)
    try:
        step_fn.trainable.load_state_dict(ckpt["model"])
        optim.load_optimizer_state(step_fn.optimizer, ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"cannot resume from {path}: its model or optimizer does not match this "
                         f"run's ({err}). Resume with the same model and optimizer settings "
                         f"(the checkpoint's gin_config lists them).") from err
    if step_fn.scaler is not None and ckpt["scaler"]:
        step_fn.scaler.load_state_dict(ckpt["scaler"])
    global_step = int(ckpt["global_step"])
    scheduler.step_update(global_step)  # the schedule is a function of the step count
    _restore_rank_rng(ckpt["rng"], path, ctx)
    if ctx.is_main:
        print(f"[train] resumed from {path}: epoch {ckpt['epoch']} done, step {global_step}",
              flush=True)
    return int(ckpt["epoch"]) + 1, global_step, dict(ckpt.get("metrics", {}))


def _restore_rank_rng(rng: dict, path, ctx: RunContext) -> None:
    if rng["world_size"] == ctx.world_size:
        restore_rng(rng["per_rank"][ctx.rank])
        return
    print(f"[train] WARNING: {path} was written by {rng['world_size']} processes, this run has "
          f"{ctx.world_size}; random streams restart from seed {ctx.seed} + rank (weights and "
          f"optimizer are restored exactly).", flush=True)
    torch.manual_seed(ctx.seed + ctx.rank)


def step_done(path: str | Path) -> int:
    """The optimizer step the checkpoint was written at (reads only the small fields)."""
    return int(load_checkpoint(path, mmap=True)["global_step"])
