"""What every command shares around its work.

`run_command` runs a command's main: SIGTERM (a scheduler's stop) ends it like Ctrl-C, and either
ends it as `interrupted` with exit status 130 and one line instead of a traceback.

`run_session` is one run directory's life, for the commands that have one (run.py's experiments,
`python -m mmdistill.eval`): it owns the directory (its lock), copies stdout and stderr into
console.log, records provenance (command.txt, environment.json) and, whatever happens, the status
in summary.json: `finished`, `interrupted` (Ctrl-C, SIGTERM) or `failed` (with the error; its
traceback goes to console.log). Whatever the run's loggers report as final (`logger.summary`,
e.g. the training loop's last losses) lands in summary.json too. `make_logger` is its tracking:
metrics.jsonl, and W&B unless `wandb_run.mode = 'disabled'`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import gin

from mmdistill import rundir
from mmdistill.tracking import FanoutLogger, MetricsFile, NullLogger, WandbLogger

INTERRUPTED_EXIT = 130  # what a shell reports for a process ended by Ctrl-C


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a stopped run is recorded as `interrupted` and its
    W&B run finished (the checkpoint of the last whole epoch is already on disk)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def run_command(main: Callable[[], int], prog: str) -> int:
    """`main()`'s exit status; SIGTERM and Ctrl-C end it as `interrupted` (exit 130)."""
    interrupt_on_sigterm()
    try:
        return main()
    except KeyboardInterrupt as err:
        log = getattr(err, "console_log", None)  # the run's status and traceback are there
        print(f"{prog}: interrupted" + (f" (see {log})" if log else ""), file=sys.stderr,
              flush=True)
        return INTERRUPTED_EXIT


@dataclasses.dataclass
class Session:
    """A run in progress: its summary (written to summary.json at the end, whatever happens),
    the console.log it tees into (rank 0), and what to do at the end."""

    dir: Path
    summary: dict[str, Any]
    rank: int = 0
    log_file: Any = None
    logger: Any = None  # finished at the end
    save_config: Callable[[], None] | None = None  # called at the end, before summary.json
    after_summary: Callable[[], None] | None = None  # called after summary.json, lock still held

    def track(self, logger: FanoutLogger) -> FanoutLogger:
        """`logger`, which also copies every `summary()` call into this run's summary.json
        (rank 0), and is finished when the session ends."""
        self.logger = FanoutLogger(*logger.loggers, _SummaryRecorder(self.summary)) \
            if self.rank == 0 else logger
        return self.logger


class _SummaryRecorder(NullLogger):
    def __init__(self, summary: dict[str, Any]):
        self.values = summary

    def summary(self, values):
        self.values.update(values)


@contextlib.contextmanager
def run_session(run_dir: Path, argv: list[str], summary: dict[str, Any] | None = None,
                rank: int = 0) -> Iterator[Session]:
    """Own `run_dir` for the block and record how the run went (see the module docstring);
    `argv` is the command written to command.txt."""
    session = Session(dir=Path(run_dir), summary={} if summary is None else summary, rank=rank)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rundir.hold_lock(run_dir, rank))  # taken when the dir was made/resolved
        if rank == 0:
            session.log_file = stack.enter_context((session.dir / "console.log").open("a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(rundir.Tee(sys.stdout, session.log_file)))
            stack.enter_context(contextlib.redirect_stderr(rundir.Tee(sys.stderr, session.log_file)))
            rundir.write_provenance(session.dir, argv)
        try:
            yield session
            session.summary["status"] = "finished"
        except BaseException as err:
            session.summary["status"] = ("interrupted" if isinstance(err, KeyboardInterrupt)
                                         else "failed")
            session.summary["error"] = "".join(
                traceback.format_exception_only(type(err), err)).strip()
            if session.log_file is not None and not hasattr(err, "console_log"):
                traceback.print_exception(err, file=session.log_file)  # commands print the cause
                err.console_log = session.dir / "console.log"
            raise
        finally:
            if rank == 0:
                if session.save_config is not None:
                    session.save_config()
                rundir.write_summary(session.dir, session.summary)
            if session.logger is not None:
                session.logger.finish()
            if session.after_summary is not None:
                session.after_summary()


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
