"""Readers for data in MM-CDFSL's layout: per-frame files of which some may be absent.

MM-CDFSL (masashi-hatano/MM-CDFSL, read at c21d686; docs/parity_mmcdfsl.md) stores optical flow
as (224, 224, 2) and hand-pose heatmaps as (56, 56, 21) channel-last `.npy` files, one per
frame, but only for the frames its lists sample; its readers take frame `max(1, start + rate *
i)` with no clamp at the video's end, and a missing file repeats the previous frame of that
modality (e.g. datamodule/dataset/ego4d_unlabel_combined_multimodal_dataset.py:109-138).

So here: a video's frame count comes from its RGB folder (the RGB template, counted like
`rgb_frames`); `read` takes any 0-based indices, also past the end; a missing file repeats the
previous position's frame, and every repeat is counted (`repeats`) and logged once per video and
modality. A missing FIRST frame is an error naming the file (MM-CDFSL fails there too: it has
nothing to repeat). An array of another shape than `shape` is an error naming the file.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import gin
import numpy as np

from mmdistill.data.sources import BadClipError, _load_npy, _NumberedFiles, _read_image, _stack_same_size

log = logging.getLogger("mmdistill.data")

# WEAR's layout (DATA_STRUCTURE.md of MM-CDFSL): the default; gin/mmcdfsl/ binds each dataset's.
RGB_TEMPLATE = "RGB_frames/{video}/{frame:06d}.jpg"
FLOW_TEMPLATE = "flow_frames/{video}/{frame:06d}.npy"
POSE_TEMPLATE = "hand-pose/heatmap/{video}/{frame:06d}.npy"


class _FrameCounter(_NumberedFiles):
    """Counts a video's RGB frames (a contiguous run from `first_frame`)."""

    gin_name = "mmcdfsl_rgb_frames"


class RepeatingFrames(_NumberedFiles):
    """Per-frame files under `template`; the frame count from `count_template` (the RGB frames);
    a missing file repeats the previous position's frame (counted in `repeats`)."""

    what = "frames"
    shape: tuple[int, ...] | None = None

    def __init__(self, template: str, root: str | Path | None, first_frame: int,
                 count_template: str):
        super().__init__(template, root, first_frame)
        self.count_template = count_template
        self.repeats: Counter = Counter()  # video -> frames repeated so far (this process)
        self._cache_logged: dict[str, bool] = {}

    def num_frames(self, video: str) -> int:
        if video not in self._cache_counts:
            counter = _FrameCounter(self.count_template, self.root, self.first_frame)
            self._cache_counts[video] = counter._count_files(video, "RGB frames")
        return self._cache_counts[video]

    def files(self, video: str) -> list[Path]:
        paths = (self.path(video, frame=n + self.first_frame) for n in range(self.num_frames(video)))
        return [path for path in paths if path.is_file()]

    def load(self, path: Path, video: str) -> np.ndarray:
        raise NotImplementedError

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and indices.min() < 0:
            raise BadClipError(f"{self.what} of video '{video}': negative frame index {int(indices.min())}")
        frames, repeated = [], []
        for index in indices:
            path = self.path(video, frame=int(index) + self.first_frame)
            if path.is_file():
                frames.append(self.load(path, video))
            elif not frames:
                raise BadClipError(f"{self.what} of video '{video}': the clip's first file {path} is missing, "
                                   f"so there is no previous frame to repeat (MM-CDFSL's rule) "
                                   f"{self._where()}")
            else:
                frames.append(frames[-1])
                repeated.append(int(index) + self.first_frame)
        if repeated:
            self.repeats[video] += len(repeated)
            if video not in self._cache_logged:
                self._cache_logged[video] = True
                log.warning("%s of video '%s': no file for frame number(s) %s; the previous frame repeated "
                            "(MM-CDFSL's rule; later repeats in this video are counted, not logged)",
                            self.what, video, repeated[:8])
        return _stack_same_size(frames, video, self.what)


@gin.configurable("mmcdfsl_rgb_frames")
class RepeatingImageFrames(RepeatingFrames):
    """RGB image files; frames past the video's end (or missing) repeat the previous one."""

    kind = "image"
    gin_name = "mmcdfsl_rgb_frames"
    what = "RGB frames"

    def __init__(self, template: str = RGB_TEMPLATE, root: str | Path | None = None, first_frame: int = 1):
        super().__init__(template, root, first_frame, count_template=template)

    def load(self, path: Path, video: str) -> np.ndarray:
        return _read_image(path, video, "RGB")


class RepeatingArrayFrames(RepeatingFrames):
    """Channel-last `.npy` arrays of one `shape` (H, W, C), read as float32."""

    kind = "array"

    def __init__(self, template: str, root: str | Path | None, first_frame: int,
                 shape: Sequence[int], count_template: str | None):
        if count_template is None:  # the frame count follows the RGB frames this config reads
            count_template = RepeatingImageFrames().template
        super().__init__(template, root, first_frame, count_template)
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3:
            raise ValueError(f"{self.gin_name}.shape={shape!r}: give (height, width, channels)")

    def load(self, path: Path, video: str) -> np.ndarray:
        array = _load_npy(path, video)
        if array.shape != self.shape or not np.issubdtype(array.dtype, np.floating):
            raise BadClipError(f"{self.what} of video '{video}': {path} has shape {array.shape} dtype "
                               f"{array.dtype}, expected a float array of shape {self.shape} (height, width, "
                               f"channels) {self._where()}")
        return array.astype(np.float32, copy=False)


@gin.configurable("mmcdfsl_flow_frames")
class MmcdfslFlowFrames(RepeatingArrayFrames):
    """MM-CDFSL's optical flow: (224, 224, 2) per sampled frame."""

    gin_name = "mmcdfsl_flow_frames"
    what = "flow"

    def __init__(self, template: str = FLOW_TEMPLATE, root: str | Path | None = None, first_frame: int = 1,
                 shape: Sequence[int] = (224, 224, 2), count_template: str | None = None):
        super().__init__(template, root, first_frame, shape, count_template)


@gin.configurable("mmcdfsl_pose_frames")
class MmcdfslPoseFrames(RepeatingArrayFrames):
    """MM-CDFSL's hand-pose heatmaps: (56, 56, 21) per sampled frame."""

    gin_name = "mmcdfsl_pose_frames"
    what = "hand pose"

    def __init__(self, template: str = POSE_TEMPLATE, root: str | Path | None = None, first_frame: int = 1,
                 shape: Sequence[int] = (56, 56, 21), count_template: str | None = None):
        super().__init__(template, root, first_frame, shape, count_template)
