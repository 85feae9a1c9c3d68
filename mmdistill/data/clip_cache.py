"""A decoded-clip cache: each video's frames decoded once, at the resized resolution, on disk.

Decoding JPEGs and reading per-frame flow files dominates a loader's time. The cache stores, per
video, every frame of every modality after the short-side resize and before the random crop:
RGB as uint8 (T, H, W, 3), flow as int8/int16 (T, 2, H, W) with a recorded per-video scale
(values already in the resized frame's pixels), keypoints as float32. Entries are memory-mapped,
so a clip reads only its frames; crop, flip and normalisation stay random per item and run as
before. RGB clips therefore equal the uncached ones bit for bit, keypoints exactly, and flow to
within half the recorded quantisation step.

An entry's folder is named by a key of what produced it: the readers' settings (class, template,
root, ...), the resize, the flow storage and the video's files' sizes and modification times, so
changing any of them fills a new entry (the stale one of the same video is removed). Entries are
written to a temporary folder and renamed into place under a file lock: two workers or processes
never fill one entry twice and never see a half-written one.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import resource
import shutil
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import gin
import numpy as np
import torch
from torch.utils.data import DataLoader

from mmdistill.data.cache_entries import (read_entry, remove_entry, settings_record, wider_entry, write_error,
                                          write_settings_record)
from mmdistill.data.sources import BadClipError
from mmdistill.data.transforms import SpatialPlan
from mmdistill.progress import progress as progress_bar

log = logging.getLogger("mmdistill.data")

CACHE_FORMAT = 1
FLOW_DTYPES = {"int8": np.int8, "int16": np.int16}
FINISH_ON = ("device", "loader")
# With clip_cache.finish_on='device' an image or flow modality travels as these two keys.
QUANTISED_SUFFIX, STEP_SUFFIX = "_quantised", "_step"


class OpenArrays:
    """Cache arrays kept memory-mapped between reads: opening one (`np.load`'s header parse and
    mmap, ~0.1 ms) for every clip of every modality was a twentieth of a demo student's step.
    Each open array holds a file descriptor, so at most `limit` stay open (a quarter of the
    process's descriptor limit, at most 4096), the least recently read closed first. One per
    process (`process_open_arrays`), shared by every cache of it."""

    def __init__(self, limit: int | None = None):
        if limit is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            limit = min(4096, soft // 4) if soft != resource.RLIM_INFINITY else 4096
        self.limit = max(1, int(limit))
        self._open: OrderedDict[Path, np.ndarray] = OrderedDict()

    def __call__(self, path: Path) -> np.ndarray:
        array = self._open.pop(path, None)
        if array is None:
            array = np.load(path, mmap_mode="r")
            while len(self._open) >= self.limit:
                self._open.popitem(last=False)
        self._open[path] = array  # most recently read last
        return array


_OPEN_ARRAYS: dict[int, OpenArrays] = {}


def process_open_arrays() -> OpenArrays:
    """This process's `OpenArrays` (a forked loader worker gets its own, so the bound holds per
    process whatever the number of datasets and caches)."""
    pid = os.getpid()
    if pid not in _OPEN_ARRAYS:
        _OPEN_ARRAYS.clear()  # a parent's, inherited by fork: its maps stay valid but count there
        _OPEN_ARRAYS[pid] = OpenArrays()
    return _OPEN_ARRAYS[pid]


@dataclasses.dataclass
class CachedVideo:
    """One video's cached modalities: `counts` {modality: frames}, and `read(name, indices)` giving
    what the modality's reader gives (image uint8 (T, H, W, 3), flow float32 (T, 2, H, W),
    Keypoints) but at the resized resolution; each modality's spec says how it is stored and
    reads its arrays with `array(file)`."""

    folder: Path
    meta: dict
    specs: dict
    open_arrays: OpenArrays

    @property
    def counts(self) -> dict[str, int]:
        return {name: info["frames"] for name, info in self.meta["modalities"].items()}

    def flow_step(self, name: str) -> float:
        """The quantisation step of a flow modality: the cache holds it to within half of this."""
        return float(self.meta["modalities"][name]["scale"])

    def array(self, file: str) -> np.ndarray:
        """The entry's array `file`, memory-mapped (read-only)."""
        return self.open_arrays(self.folder / file)

    def read(self, name: str, indices: np.ndarray, quantised: bool = False) -> Any:
        """`quantised`: images and flow as stored (integers, a `QuantisedFrames` that ships itself)."""
        return self.specs[name].cache_load(name, self, self.meta["modalities"][name], indices, quantised)


@dataclasses.dataclass
class QuantisedFrames:
    """Cached integers of a frame-like modality at the resized size (`clip_cache.finish_on='device'`):
    `stored` (T, H, W, C) or, `channels_first`, (T, C, H, W); the value of an integer is it times
    its channel's `steps`, and a horizontal flip multiplies the steps by `flip_signs` (flow: dx
    changes sign)."""

    stored: np.ndarray
    channels_first: bool
    steps: np.ndarray
    flip_signs: np.ndarray
    where: str

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    def ship(self, name: str, plan: SpatialPlan) -> dict[str, torch.Tensor]:
        """Crop and flip as `apply_to_frames` would, but keep the integers: {`<name>_quantised`:
        (C, T, h, w), `<name>_step`: float32 (C,)}, which `finish_quantised` turns into the values
        `apply_to_frames` gives (bit for bit for RGB), on the batch's device, where the float
        conversion and normalisation cost nothing to the loader."""
        stored = self.stored
        size = stored.shape[2:4] if self.channels_first else stored.shape[1:3]
        if tuple(size) != tuple(plan.resized):
            raise ValueError(f"cached {name} of {self.where} is {tuple(size)}, the plan wants "
                             f"{tuple(plan.resized)}: delete that folder")
        rows = slice(plan.top, plan.top + plan.crop[0])
        columns = slice(plan.left, plan.left + plan.crop[1])
        if self.channels_first:
            frames = stored[:, :, rows, columns].transpose(1, 0, 2, 3)
        else:
            frames = stored[:, rows, columns].transpose(3, 0, 1, 2)
        steps = (self.steps * self.flip_signs if plan.flip else self.steps).astype(np.float32)
        if plan.flip:
            frames = frames[..., ::-1]
        return {name + QUANTISED_SUFFIX: torch.from_numpy(np.ascontiguousarray(frames)),
                name + STEP_SUFFIX: torch.from_numpy(steps)}


def dequantise(quantised: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) integers and (B, C) steps -> float32 values, wherever they live."""
    return quantised.float() * step.reshape(step.shape + (1, 1, 1))


def finish_quantised(name: str, batch: dict, normalize: Any) -> None:
    """`<name>_quantised` and `<name>_step` of a batch -> the normalised float `<name>`, in place."""
    quantised = batch.pop(name + QUANTISED_SUFFIX, None)
    if quantised is not None:
        values = dequantise(quantised, batch.pop(name + STEP_SUFFIX))
        batch[name] = normalize.apply_to_batch(values)


def _fingerprint(paths: list[Path], video: str) -> list[tuple[str, int, int]]:
    out = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise BadClipError(f"video '{video}': missing file {path}") from None
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def source_settings(source: Any) -> dict:
    """What a reader was configured with (its class and public attributes), for the cache key."""
    settings = {key: value for key, value in vars(source).items() if not key.startswith("_")}
    return {"class": type(source).__qualname__, **settings}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@gin.configurable("clip_cache", denylist=["folder"])
class ClipCache:
    """Cached videos under `folder` (`clip_data.cache_dir`). `flow_dtype`: 'int8' (step = the
    video's largest |flow| / 127) or 'int16' (/ 32767). `finish_on`: where a cached clip becomes
    float32 and is normalised: 'device' (the loader ships the cropped integers, 4x fewer bytes,
    and `mmdistill.data.device_batches` finishes them) or 'loader' (float32 items, as uncached)."""

    def __init__(self, folder: str | Path, flow_dtype: str = "int8", finish_on: str = "device"):
        if flow_dtype not in FLOW_DTYPES:
            raise ValueError(f"clip_cache.flow_dtype={flow_dtype!r}: choose one of {sorted(FLOW_DTYPES)}")
        if finish_on not in FINISH_ON:
            raise ValueError(f"clip_cache.finish_on={finish_on!r}: choose one of {list(FINISH_ON)}")
        self.folder = Path(folder)
        self.flow_dtype = flow_dtype
        self.finish_on = finish_on
        self._cache_entries: dict[str, CachedVideo] = {}
        self.repaired: list[tuple[str, str]] = []  # (video, what was wrong) of broken entries refilled

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache_entries": {}, "repaired": []}  # each worker checks the files itself

    def settings_key(self, dataset: Any) -> str:
        """The key of what every entry of this dataset depends on besides its own files."""
        return _digest({"format": CACHE_FORMAT, "flow_dtype": self.flow_dtype,
                        "short_side": dataset.spatial.short_side,
                        "sources": {name: source_settings(source) for name, source in dataset.sources.items()}})

    def entry_folder(self, dataset: Any, video: str) -> Path:
        for name, source in dataset.sources.items():
            if not hasattr(source, "files"):
                raise ValueError(f"clip_data.cache_dir: the {name} reader {type(source).__name__} has no "
                                 f"files(video) method listing the files a video comes from, which the "
                                 f"cache key needs; add one, or set clip_data.cache_dir = None")
        files = {name: _fingerprint(source.files(video), video) for name, source in dataset.sources.items()}
        video_key = hashlib.sha256(video.encode()).hexdigest()[:20]
        return self.folder / self.settings_key(dataset)[:20] / f"{video_key}-{_digest(files)[:20]}"

    def video(self, dataset: Any, video: str) -> CachedVideo:
        """The video's entry, filled first if it is missing or broken (BadClipError if its data
        is bad); an entry of a run with more modalities serves when it holds these as they would
        be made (cache_entries.py)."""
        if video in self._cache_entries:
            return self._cache_entries[video]
        folder = self.entry_folder(dataset, video)
        meta, _ = read_entry(folder)  # a broken one is dealt with under the lock below
        if meta is None:
            wider = wider_entry(self.folder, self.settings_record(dataset), folder.name.split("-")[0],
                                self._files(dataset, video))
            if wider is not None:
                folder, meta = wider
        if meta is None:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with _locked(folder.parent / f"{folder.name.split('-')[0]}.lock"):
                meta = self._whole_entry(folder, video)
                if meta is None:
                    self._fill(dataset, video, folder)
                    meta, problem = read_entry(folder)
                    if meta is None:
                        raise BadClipError(f"video '{video}': the clip cache entry just written is broken: {problem}")
        entry = CachedVideo(folder, meta, dict(dataset.specs), process_open_arrays())
        self._cache_entries[video] = entry
        return entry

    def _whole_entry(self, folder: Path, video: str) -> dict | None:
        """(Under the entry's lock) the entry's meta when it is whole; a broken one is removed (to
        be filled again), with a warning naming what was wrong, and recorded in `repaired`."""
        meta, problem = read_entry(folder)
        if problem is not None:
            log.warning("clip cache: the entry of video '%s' is broken and is filled again: %s", video, problem)
            self.repaired.append((video, problem))
            remove_entry(folder)
        return meta

    def _files(self, dataset: Any, video: str) -> dict:
        """Per modality, the fingerprints of the files the entry is made from (as JSON gives them back)."""
        return json.loads(json.dumps({name: _fingerprint(source.files(video), video)
                                      for name, source in dataset.sources.items()}))

    def settings_record(self, dataset: Any) -> dict:
        return settings_record({"format": CACHE_FORMAT, "flow_dtype": self.flow_dtype,
                                "short_side": dataset.spatial.short_side,
                                "sources": {name: {"kind": source.kind, "digest": _digest(source_settings(source))}
                                            for name, source in dataset.sources.items()}})

    def _fill(self, dataset: Any, video: str, folder: Path) -> None:
        staging = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            meta = self._write(dataset, video, staging)
            meta["files"] = self._files(dataset, video)
            with open(staging / "meta.json", "w") as handle:
                json.dump(meta, handle)
            os.rename(staging, folder)
            write_settings_record(folder.parent, self.settings_record(dataset))
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise write_error(err, folder, self.folder) from err
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for stale in folder.parent.glob(folder.name.split("-")[0] + "-*"):
            if stale != folder:  # the same video from other files: replaced
                shutil.rmtree(stale, ignore_errors=True)

    def _write(self, dataset: Any, video: str, staging: Path) -> dict:
        counts = {name: source.num_frames(video) for name, source in dataset.sources.items()}
        raw = {name: source.read(video, np.arange(counts[name])) for name, source in dataset.sources.items()}
        reference = dataset.plan_size(raw, video)
        resized = dataset.spatial.resized_size(reference)
        whole = SpatialPlan(resized, 0, 0, resized, False)  # the resize of the training path, no crop
        modalities = {}
        for name, data in raw.items():
            spec = dataset.specs[name]
            info = {"kind": spec.kind, "frames": counts[name],
                    **spec.cache_store(name, data, whole, staging, self, video, reference)}
            modalities[name] = info
        return {"format": CACHE_FORMAT, "video": video, "resized": list(resized), "modalities": modalities}


class _VideoFiller:
    """A map-style dataset over videos whose items fill their cache entries (for DataLoader workers)."""

    def __init__(self, dataset: Any, videos: list[str]):
        self.dataset, self.videos = dataset, videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[str, str | None, list]:
        video = self.videos[index]
        cache = self.dataset.cache
        repaired = len(cache.repaired)
        try:
            cache.video(self.dataset, video)
        except BadClipError as err:
            return video, str(err), cache.repaired[repaired:]
        return video, None, cache.repaired[repaired:]


def _as_list(items: list) -> list:
    return items


def fill_cache(dataset: Any, num_workers: int = 0, progress: bool = True) -> list[tuple[str, str]]:
    """Fill the entry of every video of `dataset` (a ClipDataset with a cache), in `num_workers`
    processes -> the (video, error) pairs of videos whose data could not be read."""
    return verify_and_fill(dataset, num_workers, progress)[0]


def verify_and_fill(dataset: Any, num_workers: int = 0, progress: bool = True
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """`fill_cache` that checks every existing entry too -> (failed, repaired): the (video, error)
    pairs of videos whose data could not be read, and the (video, what was wrong) pairs of broken
    entries that were filled again."""
    videos = sorted({clip.video for clip in dataset.clips})
    loader = DataLoader(_VideoFiller(dataset, videos), batch_size=1, num_workers=num_workers,
                        collate_fn=_as_list)
    failed, repaired = [], []
    for (video, error, fixed), in progress_bar(loader, desc="videos", disable=not progress):
        repaired += fixed
        if error is not None:
            failed.append((video, error))
    return failed, repaired
