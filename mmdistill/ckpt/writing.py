"""Writing one checkpoint file so that its path always holds either the old or the new complete
file: a temporary file in the same folder, fsync, rename.

Two faults get handled here rather than left to torch's messages. A failed write (a full disk
shows up as `inline_container.cc ... unexpected pos`) becomes a `CheckpointWriteError` naming the
file, the space it needs and that the previous file is intact. A SIGTERM or Ctrl-C arriving
mid-write is held until the write is complete and then delivered, because interrupting torch's
zip writer turns the interrupt into that same RuntimeError and the run would be recorded as
failed instead of interrupted.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

# Write errors that mean "no room": the disk, a quota, or a file-size limit (ulimit -f).
NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EFBIG: "the file is larger than this process may write (a file-size limit, "
                        "`ulimit -f`, or the filesystem's largest file)"}
DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous file at its path is untouched."""


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then deliver the first one to the handler
    that was installed before (the commands' `run_command` turns SIGTERM into KeyboardInterrupt).
    Nested blocks pass a held signal outwards. Outside the main thread (where Python cannot
    install signal handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame) -> None:
        held.append(signum)

    hold.holds_signals = True  # an outer block: passed on silently
    previous = {sig: signal.signal(sig, hold) for sig in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            _deliver(held[0], previous[held[0]])


def _deliver(signum: int, handler: Callable | int | None) -> None:
    if not getattr(handler, "holds_signals", False):
        print(f"[checkpoint] {signal.Signals(signum).name} arrived while a checkpoint was written; "
              f"it is complete, stopping now", flush=True)
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # what the signal would have done: end the process


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save `payload` to `path` via a temporary file; `path` is never half written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    existed = path.is_file()
    with deferred_signals():
        try:
            with tmp.open("wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, Exception):
                raise CheckpointWriteError(_failure_message(path, payload, err, existed)) from err
            raise
        _fsync_dir(path.parent)
    return path


def _failure_message(path: Path, payload: dict, err: Exception, existed: bool) -> str:
    cause = _os_error_in(err)
    reason = str(cause) if cause is not None else f"{type(err).__name__}: {_first_line(err)}"
    kept = (f"The previous {path.name} is intact" if existed else
            f"There was no earlier {path.name}; the other files in {path.parent} are untouched")
    kept += f"; the partial file {path.name}.tmp was removed."
    no_room = NO_ROOM.get(getattr(cause, "errno", None))
    if no_room is None and cause is None and "unexpected pos" in str(err):
        no_room = "the file could not be written to the end (a full disk, most often)"
    if no_room is None:
        return f"cannot write checkpoint {path}: {reason}. {kept}"
    return (f"cannot write checkpoint {path}: {no_room} ({reason}). The checkpoint needs about "
            f"{_megabytes(payload_bytes(payload))} MB{_free_space(path.parent)}. {kept} Free "
            f"space (train.keep_last_k keeps fewer epoch checkpoints; experiment.output_root "
            f"can point to a larger disk), then continue with experiment.resume=True.")


def _os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind `err`: torch reports a failed write as a RuntimeError raised while
    closing the archive, with the OSError as its context."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno is not None:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0][:200]


def payload_bytes(payload: Any) -> int:
    """Bytes of tensor data torch.save writes for `payload` (each storage once), a lower bound
    of the file's size; the pickled rest is small beside it."""
    storages: dict[int, int] = {}

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                visit(value)

    visit(payload)
    return sum(storages.values())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f}"


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"; {_megabytes(free)} MB are free in {folder}"


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
