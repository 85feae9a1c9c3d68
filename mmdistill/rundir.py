"""Run directories: one folder per run, never shared, holding everything needed to audit it.

Layout: <root>/YYYY-MM-DD/HH-MM-SS_<name>/{operative_config.gin, checkpoints/, metrics.jsonl,
summary.json, console.log, command.txt, environment.json, wandb/, wandb_run_id}
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "timm", "gin-config", "wandb", "numpy", "decord", "pillow",
            "opencv-python-headless", "tqdm", "safetensors")


def new_run_dir(root: str | Path, name: str, now: dt.datetime | None = None) -> Path:
    """Create a fresh run directory; if the timestamped name is taken, add a counter.

    `mkdir(exist_ok=False)` makes the claim atomic, so two runs started in the same second never
    share a folder.
    """
    now = now or dt.datetime.now()
    day = Path(root) / now.strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    base = f"{now.strftime('%H-%M-%S')}_{name}"
    for attempt in range(1000):
        path = day / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return path
    raise RuntimeError(f"could not create a run directory under {day}: 1000 names taken")


def find_resumable(root: str | Path, name: str) -> Path:
    """The newest run dir under `root` named `*_<name>` that has checkpoints/last.ckpt."""
    # Exactly this name (`HH-MM-SS_<name>` or `HH-MM-SS_<name>-N`): `distill` must not pick up a
    # `demo_distill` run, nor `tennis` a `tennis_strokes` one.
    pattern = re.compile(rf"\d\d-\d\d-\d\d_{re.escape(name)}(-\d+)?")
    candidates = sorted((p for p in Path(root).glob("*/*/checkpoints/last.ckpt")
                         if pattern.fullmatch(p.parent.parent.name)),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"experiment.resume=True found no run named '{name}' with checkpoints/last.ckpt under "
            f"{Path(root).resolve()}. Give the run directory or checkpoint explicitly: "
            f"--gin_param \"experiment.resume='output/<day>/<time>_{name}'\"")
    return candidates[-1].parent.parent


def resolve_resume(resume: bool | str, root: str | Path, name: str) -> tuple[Path, Path]:
    """(run_dir, checkpoint) for `experiment.resume` = True, a run dir, or a checkpoint file.
    A run whose summary says it finished is not resumed (its results would be overwritten)."""
    run_dir, ckpt = _resume_target(resume, root, name)
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        raise ValueError(f"{run_dir} finished already (summary.json); resuming would rerun its "
                         f"stages and replace its results. Start a new run, or raise train.epochs "
                         f"and resume from a copy of the run directory.")
    return run_dir, ckpt


def _resume_target(resume: bool | str, root: str | Path, name: str) -> tuple[Path, Path]:
    if resume is True:
        run_dir = find_resumable(root, name)
        return run_dir, run_dir / "checkpoints" / "last.ckpt"
    path = Path(resume)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"cannot resume from {path}: {ckpt} does not exist. "
                                    f"Point experiment.resume at a run directory with a last.ckpt.")
        return path, ckpt
    if path.is_file():
        if path.parent.name != "checkpoints":
            raise ValueError(f"cannot resume from {path}: it is not inside a run's checkpoints/ "
                             f"folder. To start a new run from these weights use a loader setting "
                             f"(e.g. the student's init checkpoint) instead of experiment.resume.")
        return path.parent.parent, path
    raise FileNotFoundError(f"experiment.resume={resume!r}: no such file or directory")


def write_provenance(run_dir: Path, argv: list[str]) -> None:
    """Record the exact command, code version and package versions next to the results."""
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    with (run_dir / "command.txt").open("a") as f:
        f.write(f"# {stamp}\n{' '.join(_quote(a) for a in argv)}\n")
    env = {
        "time": stamp,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "git": _git_state(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2) + "\n")


def write_summary(run_dir: Path, summary: dict) -> None:
    path = run_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:@," for c in arg) else repr(arg)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_state() -> dict | None:
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


class Tee:
    """Copies a text stream into the run's console.log."""

    def __init__(self, stream, log_file):
        self.stream, self.log_file = stream, log_file

    def write(self, text):
        self.stream.write(text)
        self.log_file.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log_file.flush()

    def isatty(self):
        return self.stream.isatty()

    def __getattr__(self, name):
        return getattr(self.stream, name)
