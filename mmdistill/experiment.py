"""The gin entry point: one run = one run directory, one W&B run, one train and/or test stage.

`experiment()` owns everything around a stage (seeding, device and precision checks, the run
directory, tracking, the operative config, the summary); stages own the work and get a RunContext.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import gin
import torch

from mmdistill import rundir
from mmdistill.checks import check_int
# make_logger is looked up here at call time, so a test can wrap it (tests/test_spine.py).
from mmdistill.commands.session import make_logger, run_session
from mmdistill.config import flatten_config
from mmdistill.context import RunContext, resolve_device, resolve_precision, seed_everything
from mmdistill.evaluation import evaluate_stage
from mmdistill.stages import distill_stage, pretrain_stage
from mmdistill.tracking import MetricsFile
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


def _shared_run_dir(rank: int, world_size: int, make: Callable[[], Path]) -> Path:
    """Rank 0 picks the run dir; the others receive the same path."""
    path = [str(make()) if rank == 0 else None]
    if world_size > 1:
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


@gin.configurable("experiment", denylist=["config_name", "argv", "step"])
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
    argv: the command recorded in command.txt (default: this process's).
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

    summary: dict[str, Any] = {"run_dir": str(run_dir), "task": task}
    with run_session(run_dir, argv if argv is not None else sys.argv, summary, rank) as session:
        print(f"run directory: {run_dir}")
        logger, run_id = make_logger(rank, run_dir, name, config_name, task)
        logger = session.track(logger)

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

        session.save_config = save_operative_config
        ctx = RunContext(dir=run_dir, logger=logger, device=torch_device, amp_dtype=amp_dtype,
                         seed=seed, rank=rank, world_size=world_size, wandb_run_id=run_id,
                         gin_config=gin.operative_config_str,
                         save_operative_config=save_operative_config)
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

