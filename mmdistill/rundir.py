"""Run directories: one folder per run, never shared, holding everything needed to audit it.

Layout: <root>/YYYY-MM-DD/HH-MM-SS_<name>/{operative_config.gin, checkpoints/, metrics.jsonl,
summary.json, console.log, command.txt, environment.json, wandb/, wandb_run_id, .lock}

A run directory has one live owner: two processes in one would interleave metrics.jsonl, share a
W&B run id and overwrite each other's last.ckpt. `.lock` is that ownership (see `lock_run_dir`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
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
        lock_run_dir(path)
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

    The run directory is locked for this process before anything in it is read or rewritten
    (by rank 0 only: under torchrun the other ranks share rank 0's ownership). A run whose
    summary says it finished is not resumed (its results would be overwritten)."""
    run_dir, ckpt = _resume_target(resume, root, name)
    if int(os.environ.get("RANK", "0")) == 0:
        lock_run_dir(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        release_run_dir(run_dir)
        raise ValueError(finished_run_advice(run_dir, ckpt))
    return run_dir, ckpt


def finished_run_advice(run_dir: Path, ckpt: Path) -> str:
    """Why a finished run is not resumed, and the commands that do what the user wants instead.

    Continuing means a copy: its own summary, W&B run and results, the finished run untouched.
    The copy drops the finished summary (which refuses resuming) and the W&B run id (one run
    directory, one W&B run).
    """
    copy = run_dir.with_name(run_dir.name + "-continued")
    q = shlex.quote
    return (f"{run_dir} finished already (its summary.json says status 'finished'); "
            f"experiment.resume only continues unfinished runs, because resuming this one would "
            f"rerun its stages and overwrite its results.\n"
            f"To train it for more epochs, continue a copy of it with train.epochs raised above its "
            f"own (the learning-rate schedule is stretched to the new length from where it stopped):\n"
            f"    cp -r {q(str(run_dir))} {q(str(copy))} && "
            f"rm -f {q(str(copy / 'summary.json'))} {q(str(copy / 'wandb_run_id'))}\n"
            f"    then its command (command.txt) plus --gin_param 'train.epochs=<more>' "
            f"--gin_param {_binding('experiment.resume', copy)}\n"
            f"To start a new run from its weights: --gin_param "
            f"{_binding('distill.student_init', ckpt)} (distillation).\n"
            f"To evaluate it again: --gin_param 'experiment.train=False' --gin_param "
            f"'experiment.test=True' --gin_param {_binding('experiment.ckpt_path', ckpt)}")


def _binding(name: str, path: Path) -> str:
    """A string binding as one shell word, written the way the README writes them."""
    if re.fullmatch(r"[\w./:@,+=-]+", str(path)):
        return f"\"{name}='{path}'\""
    return shlex.quote(f"{name}={str(path)!r}")


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


# ---------------------------------------------------------------------------------------------
# Ownership: one live process per run directory

LOCK_FILE = ".lock"
_HELD: dict[Path, int] = {}  # run dir -> descriptor of its flocked .lock, for this process


class RunDirBusy(RuntimeError):
    """Another live process owns the run directory."""


def lock_run_dir(run_dir: str | Path) -> None:
    """Make this process the run directory's only user until `release_run_dir` or its death.

    An flock on `<run_dir>/.lock`, which holds the owner's PID, host, start and command so a
    refused process can say who to wait for. The kernel drops an flock when its process dies
    (kill -9 included), so a lock never outlives its owner and a dead owner's file is simply
    taken over. Taking it again in the owning process is a no-op.
    """
    key = Path(run_dir).resolve()
    if key in _HELD:
        return
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _wait_for_owner_record(fd)
        os.close(fd)
        raise RunDirBusy(_busy_message(key, owner)) from None
    previous = _read_owner(fd)  # left behind only by an owner that died holding it
    me = {"pid": os.getpid(), "host": platform.node(),
          "since": dt.datetime.now().isoformat(timespec="seconds"),
          "command": " ".join(_quote(a) for a in sys.argv)[:500]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    _HELD[key] = fd
    if previous:
        print(f"[run dir] {key}: took over {LOCK_FILE} from PID {previous.get('pid')} on "
              f"{previous.get('host')} (since {previous.get('since')}), which ended without "
              f"releasing it", file=sys.stderr, flush=True)


def release_run_dir(run_dir: str | Path) -> None:
    """End this process's ownership (a no-op when it holds none); the owner record is cleared,
    so only a crashed owner ever leaves one behind."""
    fd = _HELD.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.close(fd)


@contextlib.contextmanager
def hold_lock(run_dir: str | Path, rank: int = 0):
    """Own the run directory for a block (rank 0; under torchrun the other ranks work in rank
    0's directory under its ownership). Reuses the lock `new_run_dir`/`resolve_resume` took."""
    if rank != 0:
        yield
        return
    lock_run_dir(run_dir)
    try:
        yield
    finally:
        release_run_dir(run_dir)


def _wait_for_owner_record(fd: int, seconds: float = 2.0) -> dict | None:
    """The owner writes its record just after taking the lock; a process refused in between
    would see none and could not say whom to wait for, so give it a moment to appear."""
    deadline = time.monotonic() + seconds
    owner = _read_owner(fd)
    while not owner and time.monotonic() < deadline:
        time.sleep(0.05)
        owner = _read_owner(fd)
    return owner


def _read_owner(fd: int) -> dict | None:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (ValueError, UnicodeDecodeError):
        return None


def _busy_message(run_dir: Path, owner: dict | None) -> str:
    if not owner:  # it has the lock but has not written its record yet
        return (f"run directory {run_dir} is in use by another process (it holds "
                f"{run_dir / LOCK_FILE}; its PID is not recorded yet). Two processes in one run "
                f"directory would interleave metrics.jsonl, share one W&B run and overwrite "
                f"checkpoints/last.ckpt. Wait for it to end, then run this command again.")
    pid, host = owner.get("pid"), owner.get("host")
    where = "" if host == platform.node() else f" on host {host}"
    return (f"run directory {run_dir} is in use by another process: PID {pid} on {host}, since "
            f"{owner.get('since')} ({owner.get('command')}). Two processes in one run directory "
            f"would interleave metrics.jsonl, share one W&B run and overwrite "
            f"checkpoints/last.ckpt. Wait for PID {pid} to end, or stop it (kill {pid}{where}), "
            f"then run this command again.")


def _forget_inherited_locks() -> None:
    # A forked child (a data-loader worker) shares its parent's flock; closing its copies means
    # the lock dies with the owner, not with the last of its children. No LOCK_UN: that would
    # release the parent's lock too.
    for fd in _HELD.values():
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_inherited_locks)


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
