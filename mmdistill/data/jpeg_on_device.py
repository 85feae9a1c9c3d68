"""JPEG frames decoded where the batch goes (`rgb_frames.decode_on='device'`): the loader reads
each frame file's bytes and ships them with the clip's spatial plan; `finish_on_device` decodes
the whole batch in one `torchvision.io.decode_jpeg` call (nvjpeg on CUDA, libjpeg on the CPU),
then resizes, crops and flips each clip like `apply_to_frames`, so a loader process does no
pixel work at all.

A clip travels as three keys, all of which the default collate batches:
- `<name>_jpeg`: bytes, the clip's JPEG files one after another (a batch: a list of them);
- `<name>_jpeg_offsets`: int64 (T + 1,), where each file starts in those bytes, then the end;
- `<name>_plan`: int64 (7,), the SpatialPlan as (resized_h, resized_w, top, left, crop_h,
  crop_w, flip).
"""
from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmdistill.data.clip_types import BadClipError, SpatialPlan

JPEG_SUFFIX, OFFSETS_SUFFIX, PLAN_SUFFIX = "_jpeg", "_jpeg_offsets", "_plan"
DECODE_ON = ("loader", "device")
_START_OF_IMAGE, _END_OF_IMAGE = b"\xff\xd8\xff", b"\xff\xd9"
# Some writers pad a JPEG after its end marker; a truncated file has no end marker at all.
_TRAILING_SLACK = 64


class CorruptJpegError(ValueError):
    """One frame file is not a whole JPEG (the source turns it into a BadClipError)."""


@dataclasses.dataclass
class EncodedFrames:
    """A clip's frames as their JPEG files' bytes; `shape` is that of the decoded frames
    (T, H, W, 3), so the spatial plan is made for them as for decoded ones."""

    data: bytes
    offsets: np.ndarray
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.offsets) - 1, *self.size, 3)

    def ship(self, name: str, plan: SpatialPlan) -> dict:
        flat_plan = (*plan.resized, plan.top, plan.left, *plan.crop, int(plan.flip))
        return {name + JPEG_SUFFIX: self.data,
                name + OFFSETS_SUFFIX: torch.from_numpy(self.offsets.astype(np.int64)),
                name + PLAN_SUFFIX: torch.tensor(flat_plan, dtype=torch.int64)}


def jpeg_size(data: bytes, path: Path) -> tuple[int, int]:
    """(H, W) of a JPEG from its header, after checking it starts and ends as a JPEG does (a
    truncated file would only fail later, on the device, far from its name)."""
    if not data.startswith(_START_OF_IMAGE):
        raise CorruptJpegError(f"{path} is not a JPEG (no start-of-image marker); "
                               f"rgb_frames.decode_on='device' decodes JPEG files only: use decode_on='loader'")
    if _END_OF_IMAGE not in data[-_TRAILING_SLACK:]:
        raise CorruptJpegError(f"{path} is truncated or corrupt (no JPEG end-of-image marker)")
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptJpegError(f"{path} has a corrupt JPEG header ({err})") from None
    return height, width


def read_encoded(paths: Sequence[Path]) -> EncodedFrames:
    """The files' bytes, concatenated, with their common decoded size; raises CorruptJpegError
    or FileNotFoundError naming the file, and ValueError when the frames differ in size."""
    chunks, sizes = [], []
    for path in paths:
        data = Path(path).read_bytes()
        sizes.append(jpeg_size(data, path))
        chunks.append(data)
    if len(set(sizes)) > 1:
        raise ValueError(f"frames differ in size {sorted(set(sizes))}")
    offsets = np.cumsum([0] + [len(chunk) for chunk in chunks])
    return EncodedFrames(b"".join(chunks), offsets, sizes[0])


def _decode(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)


def _area_weights(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """(size_out, size_in): each output pixel the mean of the input span it covers, partly
    covered pixels weighted by their covered fraction: cv2's INTER_AREA when shrinking (torch's
    'area' mode uses whole-pixel windows, several levels off at non-integer factors)."""
    scale = size_in / size_out
    starts = torch.arange(size_out, dtype=torch.float64) * scale
    pixels = torch.arange(size_in, dtype=torch.float64)
    overlap = (torch.minimum(pixels[None] + 1, starts[:, None] + scale)
               - torch.maximum(pixels[None], starts[:, None])).clamp_(min=0)
    return (overlap / scale).float().to(device)


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, h, w) float -> (T, 3, H, W), rounded to integers as the loader's uint8 cv2.resize
    is: a box filter when both sides shrink (cv2's INTER_AREA), else bilinear without
    antialiasing (cv2's INTER_LINEAR)."""
    height, width = frames.shape[-2:]
    if (height, width) == tuple(size):
        return frames
    if size[0] < height and size[1] < width:
        rows = _area_weights(height, size[0], frames.device)
        columns = _area_weights(width, size[1], frames.device)
        resized = torch.einsum("yh,tchw,xw->tcyx", rows, frames, columns)
    else:
        resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    return resized.add_(0.5).floor_().clamp_(0, 255)  # halves round up, as in cv2's integer arithmetic


def decode_clips(encoded: Sequence[bytes] | bytes, offsets: torch.Tensor, plans: torch.Tensor,
                 device: torch.device | str, videos: Sequence[str] | None = None) -> torch.Tensor:
    """A batch's shipped JPEG clips -> float32 (B, 3, T, crop_h, crop_w) on `device`, in pixel
    values 0..255, as `apply_to_frames` gives them; raises BadClipError naming a corrupt clip."""
    if isinstance(encoded, bytes):  # finish_item's batch of one keeps a non-tensor as is
        encoded = [encoded]
    device = torch.device(device)
    offsets, plans = offsets.cpu().tolist(), plans.cpu().tolist()
    buffers = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in encoded]  # writable: no warning
    files = [[buffer[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
             for buffer, bounds in zip(buffers, offsets)]
    try:
        decoded = _decode([file for clip in files for file in clip], device)
    except RuntimeError:
        for index, clip in enumerate(files):  # find the clip to name
            try:
                _decode(clip, device)
            except RuntimeError as err:
                video = videos[index] if videos is not None else f"#{index} of the batch"
                raise BadClipError(f"video '{video}': a JPEG frame failed to decode on {device} "
                                   f"(rgb_frames.decode_on='device'): {str(err).splitlines()[0]}") from None
        raise
    clips, first = [], 0
    for clip, (resized_h, resized_w, top, left, crop_h, crop_w, flip) in zip(files, plans):
        frames = torch.stack(decoded[first:first + len(clip)]).float()
        first += len(clip)
        frames = _resize(frames, (resized_h, resized_w))[..., top:top + crop_h, left:left + crop_w]
        clips.append(frames.flip(-1) if flip else frames)
    return torch.stack(clips).transpose(1, 2).contiguous()
