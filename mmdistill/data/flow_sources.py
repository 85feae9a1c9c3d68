"""The optical-flow readers (mmdistill/data/sources.py states the contract every source meets).

Flow file k holds the motion from frame k to k + 1, so a video of F frames has F - 1 flow
fields; frame index F - 1 (the last) reuses the last field. Outputs are float (T, 2, H, W) as
stored (float16 or float32), channel 0 = dx (pixels, + right) and 1 = dy (+ down).
"""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Sequence

import gin
import numpy as np

from mmdistill.data.layout import FIRST_FRAME_NUMBER, FLOW_ARRAY_TEMPLATE, FLOW_JPEG_TEMPLATE, FLOW_TEMPLATE
from mmdistill.data.sources import (BadClipError, _check_indices, _load_npy, _NumberedFiles,
                                    _read_image, _stack_same_size, _Templated)


def _flow_pairs(indices: np.ndarray, num_pairs: int) -> np.ndarray:
    """Frame index -> flow field index: the last frame has no successor and reuses the last field."""
    return np.minimum(indices, num_pairs - 1)


def _checked_flow(array: np.ndarray, path: Path, video: str, expected: str) -> np.ndarray:
    if array.ndim != 3 or array.shape[0] != 2 or not np.issubdtype(array.dtype, np.floating):
        raise BadClipError(f"video '{video}': flow {path} has shape {array.shape} dtype {array.dtype}, "
                           f"expected a float array {expected}")
    field = np.asarray(array)
    if not np.isfinite(field).all():
        raise BadClipError(f"video '{video}': flow {path} contains NaN or infinite values")
    return field


@gin.configurable("flow_frames")
class FlowFrameSource(_NumberedFiles):
    """One `.npy` per frame pair: (2, H, W) float16/32, numbered from `first_frame`."""

    kind = "flow"
    gin_name = "flow_frames"

    def __init__(self, template: str = FLOW_TEMPLATE, root: str | Path | None = None,
                 first_frame: int = FIRST_FRAME_NUMBER):
        super().__init__(template, root, first_frame)

    def num_frames(self, video: str) -> int:
        return self._counted(video, "flow") + 1

    def files(self, video: str) -> list[Path]:
        return [self.path(video, frame=n + self.first_frame) for n in range(self.num_frames(video) - 1)]

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        num_frames = self.num_frames(video)
        pairs = _flow_pairs(_check_indices(indices, num_frames, video, "flow"), num_frames - 1)
        fields = []
        for pair in pairs:
            path = self.path(video, frame=int(pair) + self.first_frame)
            fields.append(_checked_flow(_load_npy(path, video), path, video, "(2, H, W)"))
        return _stack_same_size(fields, video, "flow")


def _memmap_npz_member(path: Path, key: str | None, video: str) -> np.ndarray:
    """Memory-map one array of an uncompressed `.npz` (np.savez); compressed members are read whole.

    numpy cannot memory-map inside a zip, but a stored (uncompressed) member is a plain `.npy`
    at a fixed offset, so it can be mapped directly.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
            if key is None:
                if len(names) != 1:
                    raise BadClipError(f"video '{video}': {path} holds arrays {names}; set flow_array.key "
                                       f"to the one holding the flow")
                key = names[0]
            if key not in names:
                raise BadClipError(f"video '{video}': {path} has no array '{key}' (it holds {names})")
            info = archive.getinfo(key + ".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    return np.load(io.BytesIO(member.read()), allow_pickle=False)
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local_header = handle.read(30)
            name_length, extra_length = struct.unpack("<HH", local_header[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except FileNotFoundError:
        raise BadClipError(f"video '{video}': missing file {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as err:
        raise BadClipError(f"video '{video}': unreadable or corrupt array file {path} ({err})") from None


@gin.configurable("flow_array")
class FlowArraySource(_Templated):
    """One array per video, (P, 2, H, W), `.npy` or `.npz`, memory-mapped so a clip reads only its
    frames. P is the number of frame pairs (F - 1) unless `includes_last_frame` says it is F."""

    kind = "flow"
    gin_name = "flow_array"

    def __init__(self, template: str = FLOW_ARRAY_TEMPLATE, root: str | Path | None = None,
                 key: str | None = None, includes_last_frame: bool = False):
        super().__init__(template, root)
        self.key = key
        self.includes_last_frame = includes_last_frame
        self._cache_array: tuple[Path, np.ndarray] | None = None

    def _array(self, video: str) -> np.ndarray:
        path = self.path(video)
        if self._cache_array is not None and self._cache_array[0] == path:
            return self._cache_array[1]
        if path.suffix == ".npz":
            array = _memmap_npz_member(path, self.key, video)
        else:
            array = _load_npy(path, video, mmap=True)
        if array.ndim != 4 or array.shape[1] != 2 or not np.issubdtype(array.dtype, np.floating):
            raise BadClipError(f"video '{video}': flow array {path} has shape {array.shape} dtype "
                               f"{array.dtype}, expected a float array (frame pairs, 2, H, W)")
        if array.shape[0] == 0:
            raise BadClipError(f"video '{video}': flow array {path} is empty")
        self._cache_array = (path, array)
        return array

    def num_frames(self, video: str) -> int:
        return self._array(video).shape[0] + (0 if self.includes_last_frame else 1)

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        array = self._array(video)
        indices = _check_indices(indices, self.num_frames(video), video, "flow")
        path = self.path(video)
        pairs = _flow_pairs(indices, array.shape[0])
        return np.stack([_checked_flow(np.asarray(array[pair]), path, video, "(pairs, 2, H, W)")
                         for pair in pairs])


@gin.configurable("flow_jpeg")
class FlowJpegSource(_NumberedFiles):
    """denseflow-style flow: a grayscale JPEG per axis and frame pair, 0..255 mapping
    [-bound, bound] pixels linearly (the quantisation step is 2 * bound / 255)."""

    kind = "flow"
    gin_name = "flow_jpeg"
    fields = ("video", "frame", "axis")

    def __init__(self, template: str = FLOW_JPEG_TEMPLATE, root: str | Path | None = None,
                 first_frame: int = 1, axes: tuple[str, str] = ("x", "y"), bound: float = 20.0):
        self.count_fields = {"axis": axes[0]}
        super().__init__(template, root, first_frame)
        self.axes = tuple(axes)
        self.bound = float(bound)

    def num_frames(self, video: str) -> int:
        counts = [self._counted(video, f"flow {axis}", axis=axis) for axis in self.axes]
        if counts[0] != counts[1]:
            raise BadClipError(f"flow of video '{video}': {counts[0]} '{self.axes[0]}' files but {counts[1]} "
                               f"'{self.axes[1]}' files {self._where()}")
        return counts[0] + 1

    def files(self, video: str) -> list[Path]:
        return [self.path(video, frame=n + self.first_frame, axis=axis)
                for n in range(self.num_frames(video) - 1) for axis in self.axes]

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        num_frames = self.num_frames(video)
        pairs = _flow_pairs(_check_indices(indices, num_frames, video, "flow"), num_frames - 1)
        fields = []
        for pair in pairs:
            number = int(pair) + self.first_frame
            axes = [_read_image(self.path(video, frame=number, axis=axis), video, "L") for axis in self.axes]
            if axes[0].shape != axes[1].shape:
                raise BadClipError(f"flow of video '{video}': x and y images of pair {number} differ in size")
            fields.append(np.stack(axes).astype(np.float32) * (2 * self.bound / 255.0) - self.bound)
        return _stack_same_size(fields, video, "flow")
