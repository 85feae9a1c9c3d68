"""The temporal and spatial choices made once per clip and applied alike to every modality, so the
RGB, flow and skeleton of a clip stay aligned frame by frame and pixel by pixel.

Coordinates follow the pixel-centre convention throughout: pixel column c is the point x = c, so
resizing from width w to W maps x to (x + 0.5) * W / w - 0.5 (what cv2.resize does to pixels),
and a horizontal flip of a width-W image maps x to W - 1 - x.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import gin
import numpy as np
import torch

from mmdistill.data.annotations import Clip
from mmdistill.data.clip_types import BadClipError, Keypoints, SpatialPlan  # noqa: F401  (SpatialPlan re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@gin.configurable("temporal_sampling")
class TemporalSampler:
    """Which frames a clip reads: `num_frames` frames, `sampling_rate` apart.

    Where the clip starts:
    - the clip has `start` and no `end` (a tennis event): exactly at `start`;
    - otherwise within its window [`start` or 0, `end` or the video's length): at a random
      offset (`placement='random'`), centred (`'center'`), or random when training and centred
      when evaluating (`'auto'`). A window shorter than the clip gets the clip centred on it.
    At the video's end, `past_end='shift'` (documented rule): a clip that would run past the last
    frame is shifted back to end on it; a video shorter than the clip repeats its last frame.
    `past_end='keep'` keeps the start and hands on indices past the last frame: each modality
    says what such a frame is: the tennis fork's `frame_rule` (counted and reported:
    mmdistill/data/modalities/frame_rule.py), MM-CDFSL's readers repeating the previous frame
    (its `max(1, start + rate * i)` without clamp: mmdistill/data/mmcdfsl_sources.py); a modality
    with neither refuses the clip. A start or end beyond the video is bad input, not clamped.
    """

    def __init__(self, num_frames: int = 16, sampling_rate: int = 2, placement: str = "auto",
                 past_end: str = "shift"):
        if num_frames < 1 or sampling_rate < 1:
            raise ValueError(f"temporal_sampling needs num_frames >= 1 and sampling_rate >= 1, "
                             f"got {num_frames}, {sampling_rate}")
        if placement not in ("auto", "random", "center"):
            raise ValueError(f"temporal_sampling.placement must be 'auto', 'random' or 'center', got {placement!r}")
        if past_end not in ("shift", "keep"):
            raise ValueError(f"temporal_sampling.past_end must be 'shift' (move a clip that runs past the video's "
                             f"end back) or 'keep' (keep its start; each modality says what a frame past the end "
                             f"is: frame_rule.past_end, or MM-CDFSL's readers), got {past_end!r}")
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.placement = placement
        self.past_end = past_end

    @property
    def span(self) -> int:
        """Frames from the first to the last sampled frame, inclusive."""
        return (self.num_frames - 1) * self.sampling_rate + 1

    def centred(self, train: bool) -> bool:
        """Whether a window is read at its centre (else at a random offset)."""
        return self.placement == "center" or (self.placement == "auto" and not train)

    def __call__(self, clip: Clip, video_frames: int, rng: np.random.Generator, train: bool
                 ) -> tuple[int, np.ndarray]:
        """-> (first frame index, `num_frames` 0-based indices)."""
        if clip.start is not None and clip.start >= video_frames:
            raise BadClipError(f"video '{clip.video}': clip starts at frame index {clip.start} but the video "
                               f"has only {video_frames} frames (frame index past the end)")
        if clip.end is not None and clip.end > video_frames:
            raise BadClipError(f"video '{clip.video}': clip ends at frame index {clip.end} but the video "
                               f"has only {video_frames} frames (frame index past the end)")
        if clip.start is not None and clip.end is None:
            start = clip.start
        else:
            low = clip.start or 0
            high = clip.end if clip.end is not None else video_frames
            room = (high - low) - self.span
            if room < 0:
                start = low + room // 2
            elif self.placement == "random" or (self.placement == "auto" and train):
                start = low + int(rng.integers(0, room + 1))
            else:
                start = low + room // 2
        if self.past_end == "keep":
            start = max(0, start)
            return start, start + self.sampling_rate * np.arange(self.num_frames)
        start = max(0, min(start, video_frames - self.span))
        indices = np.minimum(start + self.sampling_rate * np.arange(self.num_frames), video_frames - 1)
        return start, indices


@gin.configurable("spatial_transform")
class SpatialTransform:
    """Resize (short side), crop and flip, planned once per clip from the RGB frame size.

    `short_side=None` keeps the frames' size. `crop='auto'` is random when training and
    centred when evaluating; flips happen only when training, with probability `flip_prob`.
    The default turns the tennis fork's 224x398 frames into 224x384 clips.
    """

    def __init__(self, short_side: int | None = 224, crop_size: Sequence[int] = (224, 384), crop: str = "auto",
                 flip_prob: float = 0.5):
        if crop not in ("auto", "random", "center"):
            raise ValueError(f"spatial_transform.crop must be 'auto', 'random' or 'center', got {crop!r}")
        self.short_side = short_side
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.crop = crop
        self.flip_prob = float(flip_prob)

    def resized_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        height, width = frame_size
        if self.short_side is None:
            return height, width
        scale = self.short_side / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def plan(self, frame_size: tuple[int, int], rng: np.random.Generator, train: bool, video: str = "?") -> SpatialPlan:
        resized = self.resized_size(frame_size)
        crop_h, crop_w = self.crop_size
        if resized[0] < crop_h or resized[1] < crop_w:
            raise BadClipError(f"video '{video}': frames of {frame_size[0]}x{frame_size[1]} become "
                               f"{resized[0]}x{resized[1]} after resizing (short side {self.short_side}), "
                               f"smaller than the crop {crop_h}x{crop_w}; raise spatial_transform.short_side "
                               f"or lower crop_size")
        random_crop = self.crop == "random" or (self.crop == "auto" and train)
        if random_crop:
            top = int(rng.integers(0, resized[0] - crop_h + 1))
            left = int(rng.integers(0, resized[1] - crop_w + 1))
        else:
            top, left = (resized[0] - crop_h) // 2, (resized[1] - crop_w) // 2
        flip = bool(train and self.flip_prob > 0 and rng.random() < self.flip_prob)
        return SpatialPlan(resized, top, left, self.crop_size, flip)


# Tools that write a downscaled copy round each side (some to an even number): a pixel of slack.
SIZE_ROUNDING_PX = 1.0


def same_aspect(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether one (H, W) size is the other rescaled: the smaller is the larger times one factor,
    each side rounded to within `SIZE_ROUNDING_PX`. Only then does a resize onto the other keep
    its content in place rather than stretching it."""
    (small_h, small_w), (large_h, large_w) = sorted([tuple(size), tuple(other)], key=lambda hw: hw[0] * hw[1])
    lowest = max((small_h - SIZE_ROUNDING_PX) / large_h, (small_w - SIZE_ROUNDING_PX) / large_w)
    highest = min((small_h + SIZE_ROUNDING_PX) / large_h, (small_w + SIZE_ROUNDING_PX) / large_w)
    return lowest <= highest


def apply_to_frames(frames: np.ndarray, plan: SpatialPlan, is_flow: bool) -> np.ndarray:
    """Images (T, h, w, C) or flow (T, 2, h, w), each in its files' natural layout and at any
    size of the plan's aspect ratio (`same_aspect`, checked by the dataset) -> contiguous float32
    (C, T, crop_h, crop_w).

    Flow is resized like pixels and its values rescaled into the new pixel units; a flip also
    negates dx. Crop and flip are views, so the only full copy is the final channel-first one;
    the flow's value changes are then made on it in place.
    """
    if is_flow:
        num_frames, channels, height, width = frames.shape
    else:
        num_frames, height, width, channels = frames.shape
    target_h, target_w = plan.resized
    resized = (height, width) != (target_h, target_w)
    if resized:
        interpolation = cv2.INTER_AREA if target_h < height and target_w < width else cv2.INTER_LINEAR
        if is_flow:
            frames = frames.astype(np.float32, copy=False)
            scaled = np.empty((num_frames, channels, target_h, target_w), dtype=np.float32)
            for index in range(num_frames):
                for channel in range(channels):
                    scaled[index, channel] = cv2.resize(frames[index, channel], (target_w, target_h),
                                                        interpolation=interpolation)
        else:
            scaled = np.empty((num_frames, target_h, target_w, channels), dtype=frames.dtype)
            for index in range(num_frames):
                scaled[index] = cv2.resize(frames[index], (target_w, target_h), interpolation=interpolation
                                           ).reshape(target_h, target_w, channels)
        frames = scaled
    crop_h, crop_w = plan.crop
    rows, columns = slice(plan.top, plan.top + crop_h), slice(plan.left, plan.left + crop_w)
    columns_reversed = slice(None, None, -1)
    if is_flow:
        frames = frames[:, :, rows, columns]
        frames = frames[..., columns_reversed] if plan.flip else frames
        out = np.ascontiguousarray(frames.transpose(1, 0, 2, 3), dtype=np.float32)
        scale_x = (target_w / width if resized else 1.0) * (-1.0 if plan.flip else 1.0)
        scale_y = target_h / height if resized else 1.0
        if scale_x != 1.0:
            out[0] *= scale_x
        if scale_y != 1.0:
            out[1] *= scale_y
        return out
    frames = frames[:, rows, columns]
    frames = frames[:, :, columns_reversed] if plan.flip else frames
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2), dtype=np.float32)


def apply_to_keypoints(keypoints: Keypoints, plan: SpatialPlan, reference_size: tuple[int, int]) -> Keypoints:
    """Move keypoints into the crop's pixel space; a flip mirrors x and swaps left/right joints.

    Coordinates are in `keypoints.img_shape` pixels, or in `reference_size` (the RGB frames)
    when the file gave no image shape.
    """
    source_h, source_w = keypoints.img_shape or reference_size
    target_h, target_w = plan.resized
    xy = keypoints.xy.copy()
    xy[..., 0] = (xy[..., 0] + 0.5) * (target_w / source_w) - 0.5 - plan.left
    xy[..., 1] = (xy[..., 1] + 0.5) * (target_h / source_h) - 0.5 - plan.top
    score = keypoints.score
    if plan.flip:
        xy[..., 0] = (plan.crop[1] - 1) - xy[..., 0]
        order = np.arange(xy.shape[2])
        for left, right in keypoints.flip_pairs:
            order[left], order[right] = right, left
        xy, score = xy[:, :, order], score[:, :, order]
    return dataclasses.replace(keypoints, xy=xy, score=score, img_shape=plan.crop)


class Normalize:
    """Per-channel `(x * scale - mean) / std` on a (C, ...) float32 array, in place."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape or (self.std <= 0).any():
            raise ValueError(f"normalisation needs as many means as stds and positive stds, got "
                             f"mean {mean}, std {std}")
        self.scale = float(scale)

    def is_identity(self) -> bool:
        return self.scale == 1.0 and not self.mean.any() and (self.std == 1).all()

    def _check_channels(self, channels: int) -> None:
        if self.mean.size not in (1, channels):
            raise ValueError(f"normalisation has {self.mean.size} channel statistics for {channels} channels; "
                             f"give one value or one per channel")

    def __call__(self, array: np.ndarray) -> np.ndarray:
        channels = array.shape[0]
        self._check_channels(channels)
        if self.is_identity():
            return array
        shape = (-1,) + (1,) * (array.ndim - 1)
        multiplier = np.broadcast_to((self.scale / self.std).reshape(shape), (channels,) + (1,) * (array.ndim - 1))
        offset = np.broadcast_to((self.mean / self.std).reshape(shape), multiplier.shape)
        array *= multiplier
        array -= offset
        return array

    def apply_to_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """The same on a (B, C, ...) tensor wherever it lives (for what is drawn on the device)."""
        self._check_channels(batch.shape[1])
        if self.is_identity():
            return batch
        shape = (1, -1) + (1,) * (batch.dim() - 2)
        multiplier = torch.from_numpy(self.scale / self.std).to(batch.device).reshape(shape)
        offset = torch.from_numpy(self.mean / self.std).to(batch.device).reshape(shape)
        return batch * multiplier - offset

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Back to the source units (for pictures and statistics), as a new array."""
        shape = (-1,) + (1,) * (array.ndim - 1)
        return (array * self.std.reshape(shape) + self.mean.reshape(shape)) / self.scale
