"""Shared machinery of the preparation steps: finding videos, resuming, running in parallel, reporting.

Every step turns one video into some files under a data root. Three rules hold for all of them:
- a video counts as finished only when its completion marker (``.prepare/<step>/<video>.json``)
  says so; the marker is written after all the video's files, so a crash midway is redone;
- existing output that we did not finish with the same settings is never replaced without
  ``--overwrite`` (the whole run stops before touching anything and names the folders);
- one video failing does not stop the others; the closing report lists every failure and why.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from mmdistill.data.annotations import natural_key
from mmdistill.data.layout import FRAMES_DIR, FRAME_FILE, VIDEO_EXTENSIONS  # what the readers expect

MARKERS_DIR = ".prepare"  # the steps' completion markers, beside the data folders


class PrepareError(Exception):
    """A problem with the user's input or request; the message says what to change."""


class OutputExists(PrepareError):
    """Existing output would be replaced; the user must pass --overwrite."""


def add_run_arguments(parser, replaced: str) -> None:
    """--workers and --overwrite, the same for every step; `replaced` names what is overwritten."""
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="parallel processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace existing {replaced} (otherwise finished videos are skipped "
                             f"and foreign or differently-made output stops the run)")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


# --------------------------------------------------------------------------- finding inputs

def find_videos(root: Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> dict[str, Path]:
    """Video id (relative path without extension, '/'-separated) -> file, in natural id order."""
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"video folder {root} does not exist; pass the folder that holds the "
                           f"videos (e.g. one sub-folder per class) with --videos")
    wanted = {e.lower() for e in extensions}
    videos: dict[str, Path] = {}
    for path in sorted(_walk_files(root)):
        if path.suffix.lower() not in wanted or not path.is_file():
            continue
        video_id = path.relative_to(root).with_suffix("").as_posix()
        if video_id in videos:
            raise PrepareError(f"two videos share the id {video_id!r}: {videos[video_id]} and {path}; "
                               f"rename one (ids are paths without the extension)")
        videos[video_id] = path
    if not videos:
        raise PrepareError(f"no video files ({', '.join(sorted(wanted))}) found under {root}")
    return dict(sorted(videos.items(), key=lambda item: natural_key(item[0])))


def _walk_files(root: Path) -> Iterable[Path]:
    """Every file under `root`, following symlinked folders (a class folder linked in from
    elsewhere is as much a class as a real one; `Path.rglob` skips it). One folder reached twice
    (linked under two names, or a link loop) is refused: its videos would count twice."""
    seen: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise PrepareError(f"{folder} and {seen[real]} are the same folder ({real}, through a "
                               f"symbolic link); its videos would count twice: remove one link")
        seen[real] = folder
        yield from (Path(folder) / name for name in files)


def find_frame_folders(data_root: Path) -> list[str]:
    """Video ids that have a frames folder (one holding frame 1) under ``data_root/frames``."""
    frames_root = Path(data_root) / FRAMES_DIR
    if not frames_root.is_dir():
        raise PrepareError(f"{frames_root} does not exist; run `python -m mmdistill.prepare frames "
                           f"--videos VIDEOS --out {data_root}` first")
    first = FRAME_FILE.format(frame=1)
    videos = sorted(p.parent.relative_to(frames_root).as_posix() for p in frames_root.rglob(first))
    if not videos:
        raise PrepareError(f"no frame folders (holding {first}) under {frames_root}")
    return videos


def finished_frame_folders(data_root: Path) -> list[tuple[str, Path, int, tuple[int, int]]]:
    """(video, frames folder, frame count, (height, width)) of every frame folder the frames step
    finished; the steps that read frames (flow, skeleton) start from this."""
    import cv2

    data_root = Path(data_root)
    frame_markers = Markers(data_root, "frames")
    folders = []
    for video in find_frame_folders(data_root):
        frames_dir = data_root / FRAMES_DIR / video
        marker = frame_markers.read(video)
        if marker is not None and marker.get("status") != "done":
            raise PrepareError(f"frames of {video} in {frames_dir} are unfinished (the frames step "
                               f"stopped midway); rerun the frames step first")
        first = cv2.imread(str(frames_dir / FRAME_FILE.format(frame=1)), cv2.IMREAD_GRAYSCALE)
        if first is None:
            raise PrepareError(f"cannot read {frames_dir / FRAME_FILE.format(frame=1)}")
        folders.append((video, frames_dir, count_frames(frames_dir), tuple(first.shape)))
    return folders


def count_frames(folder: Path) -> int:
    """Number of consecutive frames 1..F in a frames folder; a gap is an error, not an end."""
    names = {p.name for p in folder.iterdir()}
    count = 0
    while FRAME_FILE.format(frame=count + 1) in names:
        count += 1
    expected = {FRAME_FILE.format(frame=i) for i in range(1, count + 1)}
    strays = sorted(n for n in names - expected if n.endswith(Path(FRAME_FILE).suffix))
    if strays:
        raise PrepareError(f"{folder}: frames 1..{count} are consecutive but {strays[0]} is also "
                           f"there (a gap in the numbering); re-extract this video's frames")
    return count


# --------------------------------------------------------------------------- completion markers

@dataclass
class Markers:
    """Completion markers of one step; the JSON holds the settings so a rerun can compare."""
    data_root: Path
    step: str

    def path(self, video: str) -> Path:
        return Path(self.data_root) / MARKERS_DIR / self.step / f"{video}.json"

    def read(self, video: str) -> dict | None:
        path = self.path(video)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"status": "unreadable"}  # treated like an unfinished run: redone

    def write(self, video: str, status: str, settings: dict, info: dict | None = None) -> None:
        write_json_atomic(self.path(video), {"status": status, "settings": settings,
                                             "info": info or {}})


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write beside `path`, then rename: a crash never leaves a half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_changed_files(step: str, contents: dict[Path, str],
                        overwrite: bool) -> tuple[list[str], list[str]]:
    """Write the small text outputs (annotation lists) whose content differs from what is on
    disk; refuse, naming them, to replace different existing ones without --overwrite, so a rerun
    with the same arguments is a no-op and one with other arguments never silently replaces
    lists a run was made from. Returns (written, unchanged) paths."""
    changed = {p: text for p, text in contents.items()
               if not (p.is_file() and p.read_text() == text)}
    existing = [str(p) for p in changed if p.exists()]
    if existing and not overwrite:
        raise OutputExists(f"{step}: refusing to replace existing, different file(s): "
                           + ", ".join(existing) + "; pass --overwrite to replace them, or "
                           "choose another --out folder")
    for path, text in changed.items():
        write_bytes_atomic(path, text.encode())
    return [str(p) for p in changed], sorted(str(p) for p in contents if p not in changed)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def remove_outputs(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _normalise(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True))


# --------------------------------------------------------------------------- planning a run

@dataclass
class Job:
    """One video's work: what to read, what to write, with which settings."""
    video: str
    outputs: list[Path]                 # every path this step may own for the video
    settings: dict                      # what the result depends on (compared on rerun)
    inputs: dict = field(default_factory=dict)  # step-specific, e.g. the source file


@dataclass
class Plan:
    todo: list[Job]
    skipped: list[str]


def plan(jobs: list[Job], markers: Markers, overwrite: bool) -> Plan:
    """Split jobs into to-do and finished; refuse (before any work) to replace foreign output."""
    todo, skipped, conflicts = [], [], []
    for job in jobs:
        marker = markers.read(job.video)
        existing = [p for p in job.outputs if p.exists()]
        if overwrite or not existing:
            todo.append(job)
        elif marker is None:
            conflicts.append(f"{existing[0]} (not made by this tool, or its marker was removed)")
        elif marker.get("status") != "done":
            todo.append(job)  # our own run died midway: redo it
        elif _normalise(marker.get("settings", {})) != _normalise(job.settings):
            conflicts.append(f"{existing[0]} (made with {_diff(marker.get('settings', {}), job.settings)})")
        else:
            skipped.append(job.video)
    if conflicts:
        shown = "\n  ".join(conflicts[:10])
        more = f"\n  ... and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        raise OutputExists(f"{markers.step}: refusing to replace {len(conflicts)} existing output(s):\n"
                           f"  {shown}{more}\npass --overwrite to replace them, or choose another "
                           f"output folder")
    return Plan(todo, skipped)


def _diff(old: dict, new: dict) -> str:
    old, new = _normalise(old), _normalise(new)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}={old.get(k)!r}, now {new.get(k)!r}" for k in keys) or "other settings"


# --------------------------------------------------------------------------- running and reporting

@dataclass
class Report:
    step: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0          # frames (or flow pairs) produced by the videos done in this run
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{self.step}: {len(self.done)} done, {len(self.skipped)} skipped (already finished), "
                 f"{len(self.failed)} failed"]
        if self.done:
            lines.append(f"  {self.frames} frames in {self.seconds:.1f} s = "
                         f"{self.frames_per_second:.1f} frames/s")
        for video, reason in sorted(self.failed.items()):
            lines.append(f"  FAILED {video}: {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"step": self.step, "done": self.done, "skipped": self.skipped, "failed": self.failed,
                "frames": self.frames, "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames_per_second, 2)}


WorkFn = Callable[[Job], dict]


def _run_one(work: WorkFn, job: Job, markers: Markers) -> tuple[str, dict | None, str | None]:
    """Runs in a worker: marker 'started', clear old output, work, marker 'done' last."""
    try:
        markers.write(job.video, "started", job.settings)
        remove_outputs(job.outputs)
        info = work(job)
        markers.write(job.video, "done", job.settings, info)
        return job.video, info, None
    except Exception as error:  # reported per video; the run goes on with the others
        where = traceback.extract_tb(error.__traceback__)[-1]
        return job.video, None, (f"{type(error).__name__}: {error} "
                                 f"[{Path(where.filename).name}:{where.lineno}]")


def run_jobs(step: str, work: WorkFn, jobs: list[Job], data_root: Path, *, workers: int,
             overwrite: bool, worker_init: Callable[[], None] | None = None,
             progress: bool = True) -> Report:
    """Plan, run the to-do jobs (in parallel when workers > 1), write and return the report.

    ``work`` must be a module-level function (it is sent to worker processes) returning a dict
    with at least ``frames``, the number of frames it produced.
    """
    markers = Markers(Path(data_root), step)
    the_plan = plan(jobs, markers, overwrite)
    report = Report(step, skipped=the_plan.skipped)
    start = time.perf_counter()
    bar = tqdm(total=len(the_plan.todo), desc=step, unit="video", disable=not progress or None,
               dynamic_ncols=True)

    def record(video: str, info: dict | None, reason: str | None) -> None:
        if reason is None:
            report.done.append(video)
            report.frames += int(info.get("frames", 0))
        else:
            report.failed[video] = reason
        bar.update(1)
        bar.set_postfix(failed=len(report.failed), refresh=False)

    if workers <= 1 or len(the_plan.todo) <= 1:
        if worker_init is not None:
            worker_init()
        for job in the_plan.todo:
            record(*_run_one(work, job, markers))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=worker_init) as pool:
            futures = {pool.submit(_run_one, work, job, markers): job.video for job in the_plan.todo}
            for future in as_completed(futures):
                try:
                    record(*future.result())
                except BrokenProcessPool as error:  # a worker died (killed, out of memory, crash)
                    record(futures[future], None, f"worker process died: {error}")
    bar.close()
    report.seconds = time.perf_counter() - start
    report.done.sort()
    write_json_atomic(Path(data_root) / MARKERS_DIR / f"{step}-report.json", report.to_json())
    return report
