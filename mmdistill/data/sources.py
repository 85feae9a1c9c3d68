"""One reader per on-disk format. Every source answers `num_frames(video)` and
`read(video, indices)` for 0-based frame indices, and raises `BadClipError` naming the file and
what was expected whenever data is missing or malformed: nothing is ever filled in.

Paths come from a `template` (a gin parameter) formatted with `video` (the annotation's id) and,
for per-frame files, `frame` (the file's number: index + `first_frame`). Relative templates are
joined to `root`, which the dataset factory fills in when it is left None.

Outputs, each in its files' natural layout: image sources give uint8 (T, H, W, 3) RGB; flow
sources float (T, 2, H, W) as stored (float16 or float32), channel 0 = dx (pixels, + right) and
1 = dy (+ down); the skeleton source gives `Keypoints`. The flow readers live in
mmdistill/data/flow_sources.py, the skeleton reader in mmdistill/data/skeleton_source.py.
"""
from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any, Sequence

import gin
import numpy as np
from PIL import Image

from mmdistill.data.clip_types import COCO17_FLIP_PAIRS, BadClipError, Keypoints  # noqa: F401  (re-exported)
from mmdistill.data.jpeg_on_device import DECODE_ON, CorruptJpegError, EncodedFrames, read_encoded
from mmdistill.data.layout import FIRST_FRAME_NUMBER, FRAME_TEMPLATE, VIDEO_TEMPLATE

class _FrameSlot:
    """Formats as a marker, so a template can be turned into a file-name pattern."""

    def __format__(self, spec: str) -> str:
        return "\0"


def _template_fields(template: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template)
            if field is not None}


class _Templated:
    """Template handling shared by all sources."""

    gin_name = "source"
    fields: tuple[str, ...] = ("video",)

    def __init__(self, template: str, root: str | Path | None):
        missing = set(self.fields) - _template_fields(template)
        extra = _template_fields(template) - set(self.fields)
        if missing or extra:
            raise ValueError(f"{self.gin_name}.template={template!r} must use exactly the fields "
                             f"{sorted(self.fields)} (missing {sorted(missing)}, unknown {sorted(extra)})")
        self.template = template
        self.root = Path(root) if root is not None else None

    def path(self, video: str, **fields: Any) -> Path:
        relative = Path(self.template.format(video=video, **fields))
        if self.root is None or relative.is_absolute():
            return relative
        return self.root / relative

    def _where(self) -> str:
        return f"(template {self.gin_name}.template={self.template!r}, root {self.root})"

    def files(self, video: str) -> list[Path]:
        """The files a video's data comes from (the clip cache fingerprints them)."""
        return [self.path(video)]

    def __getstate__(self) -> dict:
        # Open readers and caches stay in the process that made them (DataLoader workers reopen).
        return {key: ({} if isinstance(value, dict) else None) if key.startswith("_cache") else value
                for key, value in self.__dict__.items()}


class _NumberedFiles(_Templated):
    """Per-frame files numbered from `first_frame`; counts them and insists they are contiguous."""

    fields = ("video", "frame")
    count_fields: dict[str, str] = {}

    def __init__(self, template: str, root: str | Path | None, first_frame: int):
        super().__init__(template, root)
        probe = self.template.format(video="v", frame=_FrameSlot(), **self.count_fields)
        if "\0" not in Path(probe).name or "\0" in str(Path(probe).parent):
            raise ValueError(f"{self.gin_name}.template={template!r}: the frame number must be in the file "
                             f"name, not in a folder name")
        self.first_frame = int(first_frame)
        self._cache_counts: dict[str, int] = {}

    def _count_files(self, video: str, what: str, **fields: Any) -> int:
        probe = self.path(video, frame=_FrameSlot(), **fields)
        folder = probe.parent
        if not folder.is_dir():
            raise BadClipError(f"{what} of video '{video}': folder {folder} does not exist {self._where()}")
        before, after = probe.name.split("\0")
        pattern = re.compile(re.escape(before) + r"(\d+)" + re.escape(after))
        numbers = sorted({int(match.group(1)) for name in os.listdir(folder)
                          if (match := pattern.fullmatch(name))})
        if not numbers:
            example = self.path(video, frame=self.first_frame, **fields)
            raise BadClipError(f"{what} of video '{video}': no files like {example} in {folder} {self._where()}")
        if numbers[0] < self.first_frame:
            raise BadClipError(f"{what} of video '{video}': {folder} has a file numbered {numbers[0]}, below "
                               f"{self.gin_name}.first_frame={self.first_frame}; set first_frame to the number "
                               f"of the first file")
        expected = range(self.first_frame, numbers[-1] + 1)
        if numbers[0] != self.first_frame or len(numbers) != len(expected):
            present = set(numbers)
            missing = [self.path(video, frame=n, **fields).name for n in expected if n not in present][:5]
            raise BadClipError(f"{what} of video '{video}': missing files {missing} in {folder}: found "
                               f"{len(numbers)} files numbered {numbers[0]}..{numbers[-1]}, expected a "
                               f"contiguous run from {self.first_frame} {self._where()}")
        return len(numbers)

    def _counted(self, video: str, what: str, **fields: Any) -> int:
        key = f"{video}\0{sorted(fields.items())}"
        if key not in self._cache_counts:
            self._cache_counts[key] = self._count_files(video, what, **fields)
        return self._cache_counts[key]


def _check_indices(indices: Sequence[int], num_frames: int, video: str, what: str) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        raise BadClipError(f"{what} of video '{video}': frame index {int(indices.max())} is past the end "
                           f"(the video has {num_frames} frames, indices are 0-based)")
    return indices


def _read_image(path: Path, video: str, mode: str) -> np.ndarray:
    # PIL rather than cv2: cv2 returns a half-grey picture for a truncated JPEG, PIL refuses it.
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise BadClipError(f"video '{video}': missing frame file {path}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadClipError(f"video '{video}': unreadable or corrupt image {path} ({err})") from None


def _stack_same_size(arrays: list[np.ndarray], video: str, what: str) -> np.ndarray:
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise BadClipError(f"{what} of video '{video}': frames differ in size {sorted(shapes)}")
    return np.stack(arrays)


def _load_npy(path: Path, video: str, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise BadClipError(f"video '{video}': missing file {path}") from None
    except (OSError, ValueError, EOFError) as err:
        raise BadClipError(f"video '{video}': unreadable or corrupt array file {path} ({err})") from None



@gin.configurable("rgb_frames")
class FrameFolderSource(_NumberedFiles):
    """RGB frames as image files (JPEG/PNG/...), one folder per video.

    `decode_on='device'` (JPEG only, no clip cache): the dataset takes `read_encoded`'s bytes
    instead of `read`'s pixels and the batch's device decodes them (`jpeg_on_device.py`).
    """

    kind = "image"
    gin_name = "rgb_frames"

    def __init__(self, template: str = FRAME_TEMPLATE, root: str | Path | None = None,
                 first_frame: int = FIRST_FRAME_NUMBER, decode_on: str = "loader"):
        super().__init__(template, root, first_frame)
        if decode_on not in DECODE_ON:
            raise ValueError(f"rgb_frames.decode_on={decode_on!r}: choose one of {list(DECODE_ON)}")
        self._decode_on = decode_on  # private: where frames decode does not change a cache entry's key

    @property
    def decode_on(self) -> str:
        return self._decode_on

    def num_frames(self, video: str) -> int:
        return self._counted(video, "RGB frames")

    def files(self, video: str) -> list[Path]:
        return [self.path(video, frame=n + self.first_frame) for n in range(self.num_frames(video))]

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        indices = _check_indices(indices, self.num_frames(video), video, "RGB frames")
        frames = [_read_image(self.path(video, frame=int(i) + self.first_frame), video, "RGB") for i in indices]
        return _stack_same_size(frames, video, "RGB frames")

    def read_encoded(self, video: str, indices: Sequence[int]) -> EncodedFrames:
        """The frames' JPEG files undecoded, checked to be whole JPEGs of one size."""
        indices = _check_indices(indices, self.num_frames(video), video, "RGB frames")
        paths = [self.path(video, frame=int(i) + self.first_frame) for i in indices]
        try:
            return read_encoded(paths)
        except FileNotFoundError as err:
            raise BadClipError(f"video '{video}': missing frame file {err.filename}") from None
        except CorruptJpegError as err:
            raise BadClipError(f"video '{video}': {err}") from None
        except ValueError as err:
            raise BadClipError(f"RGB frames of video '{video}': {err}") from None


@gin.configurable("rgb_video")
class VideoFileSource(_Templated):
    """RGB from a video file, decoded with decord (seeks to the requested frames)."""

    kind = "image"
    gin_name = "rgb_video"

    def __init__(self, template: str = VIDEO_TEMPLATE, root: str | Path | None = None, num_threads: int = 1):
        super().__init__(template, root)
        self.num_threads = num_threads
        self._cache_reader: tuple[Path, Any] | None = None

    def _reader(self, video: str):
        import decord  # imported here: only video users pay for it

        path = self.path(video)
        if self._cache_reader is not None and self._cache_reader[0] == path:
            return self._cache_reader[1]
        if not path.is_file():
            raise BadClipError(f"video '{video}': missing video file {path} {self._where()}")
        try:
            reader = decord.VideoReader(str(path), num_threads=self.num_threads)
        except (RuntimeError, decord.DECORDError) as err:
            raise BadClipError(f"video '{video}': unreadable or corrupt video {path} "
                               f"({str(err).splitlines()[0]})") from None
        self._cache_reader = (path, reader)
        return reader

    def num_frames(self, video: str) -> int:
        return len(self._reader(video))

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        import decord

        reader = self._reader(video)
        indices = _check_indices(indices, len(reader), video, f"video file {self.path(video)}")
        try:
            frames = reader.get_batch(indices.tolist()).asnumpy()
        except (RuntimeError, decord.DECORDError) as err:
            raise BadClipError(f"video '{video}': cannot decode frames {indices.tolist()} of {self.path(video)} "
                               f"({str(err).splitlines()[0]})") from None
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise BadClipError(f"video '{video}': the decoder returned frames of shape {frames.shape} for "
                               f"{self.path(video)}, expected (T, H, W, 3); re-encode the video (e.g. H.264)")
        return frames
