"""Writing a generated folder safely: one writer at a time, and all of it or nothing.

Two demo runs started together on a fresh folder used to write into the same place, and one
deleted the other's half-written data. Now a writer holds an OS file lock beside the folder
(`.<name>.lock`), fills a temporary sibling (`.<name>.partial-<pid>`) and renames it into place
only when everything, manifest last, is written. The lock is released by the kernel when its
process dies, so a killed run leaves no stale lock, only a partial folder that the next writer
removes. Linux/macOS only (fcntl.flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path


def lock_path(root: Path) -> Path:
    return root.parent / f'.{root.name}.lock'


def _partial_path(root: Path) -> Path:
    return root.parent / f'.{root.name}.partial-{os.getpid()}'


def _retired_path(root: Path) -> Path:
    return root.parent / f'.{root.name}.old-{os.getpid()}'


@contextlib.contextmanager
def exclusive(root: Path):
    """Hold the lock of `root` (waiting for another holder); yields whether it had to wait.

    The holder's PID is written into the lock file, so a waiting caller can say whom it waits for.
    """
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
            print(f'Waiting for process {holder}, which is writing {root} (lock file {path}).',
                  flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        try:
            yield waited
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_owned(path: Path, owned: frozenset[str]) -> None:
    """Delete `path` if it holds only entries a writer makes; otherwise refuse and delete nothing."""
    foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
    if foreign:
        raise FileExistsError(f'{path} holds files the demo generator did not write '
                              f'({", ".join(foreign)}); nothing was deleted. Move those files out '
                              f'or use another root.')
    shutil.rmtree(path)


def remove_leftovers(root: Path, owned: frozenset[str]) -> None:
    """Remove partial or retired folders that a killed writer left beside `root`.

    Call only while holding the lock: then no live writer owns them.
    """
    leftover = re.compile(rf'\.{re.escape(root.name)}\.(partial|old)-\d+')
    for path in sorted(root.parent.glob(f'.{root.name}.*')):
        if leftover.fullmatch(path.name) and path.is_dir():
            remove_owned(path, owned)
            print(f'Removed {path}, left behind by an interrupted demo data run.')


def publish(root: Path, fill, owned: frozenset[str], replace: bool = False) -> Path:
    """Call `fill(folder)` on a fresh sibling of `root`, then rename it to `root`.

    Call only while holding the lock. `root` must be missing or empty, unless `replace`: then the
    old `root` (holding only `owned` entries) is swapped out and deleted after the rename.
    """
    partial = _partial_path(root)
    partial.mkdir()
    try:
        fill(partial)
        if replace and root.exists():
            retired = _retired_path(root)
            os.rename(root, retired)
            os.rename(partial, root)
            remove_owned(retired, owned)
        else:
            try:
                os.rename(partial, root)  # replaces an empty folder, refuses a non-empty one
            except OSError as error:
                raise FileExistsError(f'{root} was filled by something else while the demo data '
                                      f'was being written ({error}); nothing was replaced. Use '
                                      f'another root.') from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root
