"""The gin entry point: one run = one run directory, one W&B run, one train and/or test stage.

`experiment()` owns everything around a stage (seeding, device and precision checks, the run
directory, tracking, the operative config, the summary); stages own the work and get a RunContext.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import gin
import numpy as np
import torch

from mmdistill import rundir
from mmdistill.checks import SettingError, check_int, check_str
from mmdistill.config import flatten_config
from mmdistill.context import PRECISIONS, RunContext
from mmdistill.evaluation import evaluate_stage
from mmdistill.stages import distill_stage, pretrain_stage
from mmdistill.tracking import FanoutLogger, MetricsFile, NullLogger, WandbLogger
from mmdistill.train.distributed import init_distributed


@dataclasses.dataclass(frozen=True)
class Task:
    """What a task does when `experiment.train` / `experiment.test` are set.

    train(ctx, resume_from) -> path of the checkpoint it produced (or None);
    test(ctx, ckpt_path) -> dict of final numbers for the summary.
    """

    train: Callable[[RunContext, Path | None], Path | None] | None
    test: Callable[[RunContext, Path | None], dict] | None


# `experiment.task` -> its stages (mmdistill/stages.py, mmdistill/evaluation.py).
TASKS: dict[str, Task] = {
    "distill": Task(train=distill_stage, test=evaluate_stage),
    "pretrain": Task(train=pretrain_stage, test=evaluate_stage),
    "evaluate": Task(train=None, test=evaluate_stage),
}


@gin.configurable("wandb_run")
def wandb_settings(project: str = "mmdistill", entity: str | None = None, group: str | None = None,
                   job_type: str | None = None, tags: tuple[str, ...] = (), mode: str | None = None,
                   init_timeout: float = 60.0) -> dict[str, Any]:
    """W&B run settings. `mode` None = $WANDB_MODE or 'offline' (no account needed);
    `group` None = the gin file's stem, so sweeps over one experiment group together."""
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"wandb_run.mode={mode!r}: choose 'online', 'offline' or 'disabled'")
    return dict(project=project, entity=entity, group=group, job_type=job_type, tags=list(tags),
                mode=mode, init_timeout=init_timeout)


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


def _shared_run_dir(rank: int, world_size: int, make: Callable[[], Path]) -> Path:
    """Rank 0 picks the run dir; the others receive the same path."""
    path = [str(make()) if rank == 0 else None]
    if world_size > 1:
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


@gin.configurable("experiment")
def experiment(config_name: str = "run", name: str | None = None, output_root: str = "output",
               task: str = "distill", train: bool = True, test: bool = False,
               ckpt_path: str | None = None, resume: bool | str = False, seed: int = 0,
               device: str = "auto", precision: str = "fp32", threads: int | None = None,
               argv: list[str] | None = None, step: str | None = None) -> dict:
    """Run one experiment and return its summary.

    task: which stage pair runs ('distill', 'pretrain', ...); train / test: the Lightning code bases' switches;
    ckpt_path: the checkpoint `test` evaluates when `train` is off (default: the one just trained);
    resume: True (latest run with this name) or a run dir / checkpoint path to continue exactly.
    threads: torch CPU threads in this process (None: torch's default, one per core). On a small
    CPU machine with loader workers, 1 avoids workers and math threads fighting over the cores.
    step: the pipeline step this run is (names the run `<config>_<step>` unless name is bound).
    """
    name = name or (f"{config_name}_{step}" if step else config_name)
    if task not in TASKS:
        raise ValueError(f"experiment.task={task!r} is not a known task; known: {sorted(TASKS)}")
    if not (train or test):
        raise ValueError("experiment.train and experiment.test are both False: nothing to do.")
    if train and ckpt_path:
        raise ValueError("experiment.ckpt_path names the checkpoint `test` evaluates when "
                         "experiment.train=False; with training on, the test stage evaluates the "
                         "weights just trained. To continue a run use experiment.resume; to start "
                         "the student from other weights use distill.student_init.")
    job = TASKS[task]
    check_int("experiment.seed", seed, minimum=-2**63, example=0)
    check_int("experiment.threads", threads, optional=True, example=1)
    if threads is not None:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    amp_dtype = resolve_precision(precision, torch_device)
    rank, world_size, local_rank = init_distributed()  # (0, 1, 0) outside torchrun
    if torch_device.type == "cuda" and world_size > 1:
        torch_device = torch.device("cuda", local_rank)  # one GPU per process, whatever the index
    seed_everything(seed + rank)

    resume_from = None
    if resume:
        run_dir, resume_from = rundir.resolve_resume(resume, output_root, name)
        if rank == 0:  # steps after the checkpoint are redone: drop their old records
            from mmdistill.train.training_checkpoint import step_done

            MetricsFile(run_dir / "metrics.jsonl").truncate_after(step_done(resume_from))
    else:
        run_dir = _shared_run_dir(rank, world_size, lambda: rundir.new_run_dir(output_root, name))

    with contextlib.ExitStack() as stack:
        stack.enter_context(rundir.hold_lock(run_dir, rank))  # taken when the dir was made/resolved
        if rank == 0:
            log_file = stack.enter_context((run_dir / "console.log").open("a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(rundir.Tee(sys.stdout, log_file)))
            stack.enter_context(contextlib.redirect_stderr(rundir.Tee(sys.stderr, log_file)))
            rundir.write_provenance(run_dir, argv if argv is not None else sys.argv)
        print(f"run directory: {run_dir}")
        logger, run_id = make_logger(rank, run_dir, name, config_name, task)

        segment_kept = not resume  # a resumed run first keeps the earlier segments' config

        def save_operative_config() -> None:
            nonlocal segment_kept
            if rank != 0:
                return
            if not segment_kept:
                keep_earlier_operative_config(run_dir)
                segment_kept = True
            text = gin.operative_config_str()
            (run_dir / "operative_config.gin").write_text(text)
            logger.update_config(flatten_config(text))

        ctx = RunContext(dir=run_dir, logger=logger, device=torch_device, amp_dtype=amp_dtype,
                         seed=seed, rank=rank, world_size=world_size, wandb_run_id=run_id,
                         gin_config=gin.operative_config_str,
                         save_operative_config=save_operative_config)
        summary: dict[str, Any] = {"run_dir": str(run_dir), "task": task}
        try:
            trained = None
            if train:
                if job.train is None:
                    raise ValueError(f"task {task!r} has no training stage; set experiment.train=False")
                trained = job.train(ctx, resume_from)
                summary["checkpoint"] = str(trained) if trained else None
            if test:
                if job.test is None:
                    raise ValueError(f"task {task!r} has no test stage; set experiment.test=False")
                target = trained if train else (Path(ckpt_path) if ckpt_path else None)
                summary.update(job.test(ctx, target))
            logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
            summary["status"] = "finished"
        except BaseException as err:
            summary["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            summary["error"] = "".join(traceback.format_exception_only(type(err), err)).strip()
            if rank == 0 and not hasattr(err, "console_log"):  # run.py prints only the cause
                traceback.print_exception(err, file=log_file)
                err.console_log = run_dir / "console.log"
            raise
        finally:
            if rank == 0:
                save_operative_config()
                rundir.write_summary(run_dir, summary)
            logger.finish()
    return summary


def keep_earlier_operative_config(run_dir: Path) -> Path | None:
    """Before a resumed run writes operative_config.gin, the one of the run it continues moves to
    operative_config.<n>.gin (n = 1 for the first segment ...): every segment's config is kept,
    and operative_config.gin is the latest."""
    current = run_dir / "operative_config.gin"
    if not current.is_file():
        return None
    number = 1
    while (run_dir / f"operative_config.{number}.gin").exists():
        number += 1
    kept = run_dir / f"operative_config.{number}.gin"
    current.rename(kept)
    return kept


def make_logger(rank: int, run_dir: Path, name: str, config_name: str,
                task: str) -> tuple[FanoutLogger, str | None]:
    """metrics.jsonl and (unless disabled) W&B on rank 0, nothing elsewhere; returns the W&B run
    id too, which is kept in the run dir so a resumed run continues the same W&B run."""
    if rank != 0:
        return FanoutLogger(NullLogger()), None
    settings = wandb_settings()
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    loggers = [MetricsFile(run_dir / "metrics.jsonl")]
    if settings["mode"] != "disabled":
        wandb_logger = WandbLogger(run_dir, project=settings["project"], entity=settings["entity"],
                                   group=settings["group"] or config_name,
                                   job_type=settings["job_type"] or task, name=name,
                                   tags=settings["tags"], config={}, mode=settings["mode"],
                                   run_id=run_id, init_timeout=settings["init_timeout"])
        run_id = wandb_logger.run_id
        id_file.write_text(run_id + "\n")
        loggers.append(wandb_logger)
    return FanoutLogger(*loggers), run_id
