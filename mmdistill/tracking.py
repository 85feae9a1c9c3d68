"""Experiment tracking behind one small interface: W&B for users, memory for tests.

Every scalar also goes to `metrics.jsonl` in the run directory (see `MetricsFile`), so runs can be
compared without W&B.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def image(self, name: str, path: str | Path, step: int | None = None) -> None: ...
    def finish(self) -> None: ...


class NullLogger:
    """Logs nothing: what non-zero ranks get."""

    def log(self, metrics, step):
        pass

    def summary(self, values):
        pass

    def table(self, name, columns, rows):
        pass

    def image(self, name, path, step=None):
        pass

    def finish(self):
        pass


class MemoryLogger:
    """Keeps everything in lists, for tests to read back."""

    def __init__(self):
        self.history: list[tuple[int, dict[str, float]]] = []
        self.summary_values: dict[str, Any] = {}
        self.tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
        self.images: list[tuple[str, str]] = []
        self.finished = False

    def log(self, metrics, step):
        self.history.append((int(step), dict(metrics)))

    def summary(self, values):
        self.summary_values.update(values)

    def table(self, name, columns, rows):
        self.tables[name] = (list(columns), [list(r) for r in rows])

    def image(self, name, path, step=None):
        self.images.append((name, str(path)))

    def finish(self):
        self.finished = True

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, m[key]) for s, m in self.history if key in m]


class MetricsFile(NullLogger):
    """Appends every logged scalar to `metrics.jsonl` as `{"step": s, key: value, ...}` lines, and
    every summary (a training run's final losses, the few-shot results) as one
    `{"step": s, "summary": {key: value, ...}}` line at the last logged step, so runs compare
    without W&B."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.last_step: int | None = None

    def log(self, metrics, step):
        record = {"step": int(step)}
        for key, value in metrics.items():
            record[key] = _finite_or_text(float(value))
        self._append(record)
        self.last_step = int(step)

    def summary(self, values):
        kept = {key: _finite_or_text(float(value)) if isinstance(value, (int, float))
                and not isinstance(value, bool) else value
                for key, value in values.items() if isinstance(value, (bool, int, float, str))}
        if kept:
            self._append({"step": self._summary_step(), "summary": kept})

    def _summary_step(self) -> int:
        if self.last_step is None and self.path.is_file():  # a resumed run, a test stage alone
            steps = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("step"), int):
                    steps.append(record["step"])
            self.last_step = max(steps, default=None)
        return self.last_step or 0

    def _append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> int:
        """Drop the records logged after `step`; returns how many were dropped.

        A resumed run repeats the steps after its checkpoint; without this they would appear twice.
        A half-written last line (the process was killed mid-write) is dropped too, and so are
        summary lines (the resumed run writes its own at its end). Records without a 'step' key
        are kept. A missing file has nothing to drop.
        """
        if not self.path.is_file():
            return 0
        lines = self.path.read_text().splitlines()
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
                raise ValueError(f"{self.path} line {number} is not JSON ({err}); fix or remove "
                                 f"that line before resuming.") from err
            if isinstance(record, dict) and ("summary" in record
                                             or ("step" in record and record["step"] > step)):
                dropped += 1
                continue
            kept.append(line)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        return dropped


def _finite_or_text(value: float) -> float | str:
    """JSON has no NaN or infinity: those are written as text ('nan', 'inf')."""
    return value if math.isfinite(value) else str(value)


class FanoutLogger:
    """Sends each call to several loggers (metrics.jsonl + W&B + whatever a test adds)."""

    def __init__(self, *loggers):
        self.loggers = list(loggers)

    def log(self, metrics, step):
        for logger in self.loggers:
            logger.log(metrics, step)

    def summary(self, values):
        for logger in self.loggers:
            logger.summary(values)

    def table(self, name, columns, rows):
        for logger in self.loggers:
            logger.table(name, columns, rows)

    def image(self, name, path, step=None):
        for logger in self.loggers:
            logger.image(name, path, step)

    def update_config(self, values):
        for logger in self.loggers:
            if hasattr(logger, "update_config"):
                logger.update_config(values)

    def finish(self):
        errors = []
        for logger in self.loggers:
            try:
                logger.finish()
            except Exception as err:  # finish every logger even when one fails, then report
                errors.append(err)
        if errors:
            raise errors[0]


class TrackingError(RuntimeError):
    pass


OFFLINE_HINT = (
    "To run without an account or network, use offline mode: --gin_param \"wandb_run.mode='offline'\" "
    "(the default) or WANDB_MODE=offline, and upload later with `wandb sync <run_dir>/wandb/offline-run-*`."
)


def import_wandb_once() -> None:
    """Import what a W&B run imports as it starts (wandb, and at every init its launch-inputs
    module: ~0.6 s), so that processes forked afterwards (the pipeline's lanes) inherit it
    instead of each step paying it. Starts no thread and no service."""
    import wandb  # noqa: F401
    import wandb.sdk.launch.inputs.internal  # noqa: F401  (wandb_run.Run._detect_and_apply_job_inputs)


class WandbLogger:
    """A W&B run. Mode 'offline' (default) needs no account; 'disabled' writes nothing."""

    def __init__(self, run_dir: Path, *, project: str, entity: str | None, group: str | None,
                 job_type: str, name: str, tags: list[str], config: dict, mode: str,
                 run_id: str | None, init_timeout: float):
        import wandb

        self._wandb = wandb
        settings = wandb.Settings(
            x_disable_stats=(mode != "online"),  # the stats monitor probes the network
            init_timeout=init_timeout,
            console="off",  # the run dir already keeps console.log
        )
        if mode == "online":
            print(f"connecting to W&B (gives up after {init_timeout:.0f} s, "
                  f"wandb_run.init_timeout) ...", flush=True)
        try:
            self.run = wandb.init(project=project, entity=entity, group=group, job_type=job_type,
                                  name=name, tags=tags, config=config,
                                  dir=str(Path(run_dir).resolve()), id=run_id,
                                  resume="allow", mode=mode, settings=settings)
        except Exception as err:
            raise TrackingError(f"W&B init failed in mode '{mode}': {type(err).__name__}: {err}\n"
                                f"{OFFLINE_HINT}") from err
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        self._finished = False

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, metrics, step):
        self.run.log({**metrics, "step": int(step)})

    def summary(self, values):
        for key, value in values.items():
            self.run.summary[key] = value

    def table(self, name, columns, rows):
        self.run.log({name: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def image(self, name, path, step=None):
        payload = {name: self._wandb.Image(str(path))}
        if step is not None:
            payload["step"] = int(step)
        self.run.log(payload)

    def update_config(self, values):
        self.run.config.update(values, allow_val_change=True)

    def finish(self):
        if not self._finished:
            self._finished = True
            self.run.finish()
