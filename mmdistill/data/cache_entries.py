"""Checks on the clip cache's entries (mmdistill/data/clip_cache.py): an entry is used only when
its files are whole, a full disk is named with its free space, and an entry filled for more
modalities serves a run that reads fewer.

- `entry_problems`: what is wrong with an entry's meta.json and arrays (a truncated array, a
  missing file, a meta.json that is not JSON); a broken entry is removed and filled again.
- `CacheWriteError`: a write that failed for lack of space (or a quota, or a file-size limit),
  naming the entry, the cache folder and the space left there.
- `settings_record` / `wider_entry`: each settings folder records per modality what made its
  entries (`settings.json`), so a run reading a subset of the modalities finds an entry of a
  wider run made with the same settings and files. The subset must hold the wider run's
  reference modality (RGB, when it was read): every modality is resized onto it.
"""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS_FILE = "settings.json"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_RANK = {"image": 0, "flow": 1, "keypoints": 2}


class CacheWriteError(OSError):
    """A cache entry that could not be written for lack of space."""


def _array_files(name: str, info: dict) -> list[tuple[str, int]]:
    """(file, axis holding the frames) of one cached modality."""
    if info.get("kind") == "keypoints":
        return [(f"{name}_xy.npy", 1), (f"{name}_score.npy", 1)]
    return [(f"{name}.npy", 0)]


def _array_problem(path: Path, frames: Any, axis: int) -> str | None:
    if not path.is_file():
        return f"{path} is missing"
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, SyntaxError) as err:
        return f"{path} is not a readable array ({err})"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{path} holds {size} bytes, its header says {expected} (a truncated or damaged file)"
    if len(shape) <= axis or shape[axis] != frames:
        return f"{path} has shape {tuple(shape)}, not {frames} frames"
    return None


def read_entry(folder: Path) -> tuple[dict | None, str | None]:
    """(meta, None) for a whole entry, (None, what is wrong) otherwise; (None, None) if absent."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None, None
    try:
        meta = json.loads(meta_path.read_text())
        modalities = meta["modalities"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        return None, f"{meta_path} is not a cache entry's meta.json ({type(err).__name__}: {err})"
    for name, info in modalities.items():
        for file, axis in _array_files(name, info):
            problem = _array_problem(folder / file, info.get("frames"), axis)
            if problem is not None:
                return None, problem
    return meta, None


def remove_entry(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def write_error(err: OSError, entry: Path, cache_folder: Path) -> OSError:
    """The error to raise for a failed write: a full disk named with its free space, else `err`."""
    if err.errno not in FULL_DISK:
        return err
    try:
        free = f"{shutil.disk_usage(cache_folder).free / 2**20:.1f} MB are free in {cache_folder}"
    except OSError:
        free = f"the free space of {cache_folder} is unknown"
    return CacheWriteError(err.errno, f"cannot write the clip cache entry {entry}: the disk is full or a quota "
                                      f"or file-size limit was reached ({err.strerror}); {free}. Free space "
                                      f"there, point clip_data.cache_dir at a larger disk, or set "
                                      f"clip_data.cache_dir = None to read the files directly")


def settings_record(settings: dict) -> dict:
    """What a settings folder's entries were made with, per modality (`ClipCache.settings_key`'s
    parts), so a run with fewer modalities can recognise them."""
    return {key: value for key, value in settings.items() if key != "sources"} | {
        "sources": {name: {"kind": source["kind"], "digest": source["digest"]}
                    for name, source in settings["sources"].items()}}


def write_settings_record(settings_folder: Path, record: dict) -> None:
    path = settings_folder / SETTINGS_FILE
    if not path.is_file():
        tmp = path.with_name(f".{SETTINGS_FILE}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.rename(path)


def _reference(sources: dict) -> str:
    return sorted(sources, key=lambda name: (name != "rgb", _RANK[sources[name]["kind"]]))[0]


def _serves(wider: dict, mine: dict) -> bool:
    """Whether entries made with `wider` hold this run's modalities as this run would make them."""
    if {k: v for k, v in wider.items() if k != "sources"} != {k: v for k, v in mine.items() if k != "sources"}:
        return False
    sources = wider["sources"]
    if any(sources.get(name) != source for name, source in mine["sources"].items()):
        return False
    return _reference(sources) in mine["sources"]


def wider_entry(cache_folder: Path, mine: dict, video_key: str, files: dict) -> tuple[Path, dict] | None:
    """An entry of another settings folder that holds this run's modalities, made with the same
    settings from the same files: (folder, its meta restricted to this run's modalities)."""
    for record_path in sorted(cache_folder.glob(f"*/{SETTINGS_FILE}")):
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            continue
        if record == mine or not _serves(record, mine):
            continue
        for folder in sorted(record_path.parent.glob(f"{video_key}-*")):
            meta, problem = read_entry(folder)
            if meta is None or problem is not None:
                continue
            recorded = meta.get("files") or {}
            if all(recorded.get(name) == files[name] for name in mine["sources"]):
                wanted = {name: meta["modalities"][name] for name in mine["sources"]}
                return folder, {**meta, "modalities": wanted}
    return None
