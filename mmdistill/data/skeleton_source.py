"""The skeleton reader: MMAction2/PYSKL-style pickles (or .npy/.npz) -> `Keypoints`, through a
restricted unpickler (mmdistill/data/sources.py states the contract every source meets).

Skeleton files often come from strangers, and a pickle can run any code while loading: only numpy
arrays, numbers, strings and plain containers are ever built.
"""
from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

import gin
import numpy as np

from mmdistill.data.layout import SKELETON_TEMPLATE
from mmdistill.data.sources import (COCO17_FLIP_PAIRS, BadClipError, Keypoints, _check_indices, _load_npy,
                                    _Templated)

_ALLOWED_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "bytearray"), ("collections", "OrderedDict"), ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only: a pickle can run any code while loading,
    and skeleton files often come from strangers."""

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 (Python 2) spelling
        if (module, name) in _ALLOWED_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refused to load {module}.{name}")


def load_plain_pickle(path: str | Path) -> Any:
    """Unpickle a file that may hold only numpy arrays, numbers, strings and containers."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _PlainDataUnpickler(handle).load()
    except FileNotFoundError:
        raise
    except _RefusedGlobal as err:
        raise BadClipError(f"{path}: {err}: skeleton pickles may hold only numpy arrays and plain "
                           f"containers (dict, list, tuple, numbers, strings). Re-save it as a dict of "
                           f"numpy arrays, or use a .npz file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, ImportError,
            OSError) as err:
        raise BadClipError(f"{path}: unreadable or corrupt pickle ({type(err).__name__}: {err})") from None


@gin.configurable("skeleton_pickle")
class SkeletonSource(_Templated):
    """MMAction2/PYSKL-style skeletons, one file per video.

    `.pkl`: a dict with `keypoint` (M, T, V, 2) or (T, V, 2), `keypoint_score` (M, T, V) or
    (T, V), `img_shape` (H, W) of the frames the estimator saw, optional `total_frames`.
    `.npz`: the same keys as arrays (`img_shape` optional). `.npy`: (M, T, V, 3) or (T, V, 3)
    of (x, y, score). Without `img_shape` the coordinates are taken to be in the RGB frames'
    pixels. Scores must lie in [0, 1]; a joint with score 0 is absent.
    """

    kind = "keypoints"
    gin_name = "skeleton_pickle"

    def __init__(self, template: str = SKELETON_TEMPLATE, root: str | Path | None = None,
                 num_joints: int = 17, flip_pairs: Sequence[Sequence[int]] = COCO17_FLIP_PAIRS):
        super().__init__(template, root)
        self.num_joints = int(num_joints)
        self.flip_pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
        bad = [pair for pair in self.flip_pairs if max(pair) >= self.num_joints or min(pair) < 0]
        if bad:
            raise ValueError(f"skeleton_pickle.flip_pairs {bad} name joints outside 0..{self.num_joints - 1}")
        self._cache_skeleton: tuple[Path, Keypoints] | None = None

    def _load(self, video: str) -> Keypoints:
        path = self.path(video)
        if self._cache_skeleton is not None and self._cache_skeleton[0] == path:
            return self._cache_skeleton[1]
        if not path.is_file():
            raise BadClipError(f"video '{video}': missing skeleton file {path} {self._where()}")
        if path.suffix == ".npy":
            keypoints = self._from_xys(_load_npy(path, video), path, video)
        elif path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as archive:
                    keypoints = self._from_dict(dict(archive), path, video, needs_shape=False)
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                raise BadClipError(f"video '{video}': unreadable or corrupt skeleton {path} ({err})") from None
        else:
            try:
                data = load_plain_pickle(path)
            except BadClipError as err:
                raise BadClipError(f"video '{video}': {err}") from None
            if not isinstance(data, dict):
                raise BadClipError(f"video '{video}': skeleton pickle {path} holds a {type(data).__name__}, "
                                   f"expected a dict with keypoint, keypoint_score, img_shape")
            keypoints = self._from_dict(data, path, video, needs_shape=True)
        self._cache_skeleton = (path, keypoints)
        return keypoints

    def _from_xys(self, array: np.ndarray, path: Path, video: str) -> Keypoints:
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3:
            raise BadClipError(f"video '{video}': skeleton array {path} has shape {array.shape}, expected "
                               f"(persons, frames, joints, 3) or (frames, joints, 3) of (x, y, score)")
        return self._validated(array[..., :2], array[..., 2], None, None, path, video)

    def _from_dict(self, data: dict, path: Path, video: str, needs_shape: bool) -> Keypoints:
        required = ["keypoint", "keypoint_score"] + (["img_shape"] if needs_shape else [])
        missing = [key for key in required if key not in data]
        if missing:
            raise BadClipError(f"video '{video}': skeleton {path} lacks keys {missing} (it has "
                               f"{sorted(map(str, data))}); expected keypoint (M, T, V, 2), "
                               f"keypoint_score (M, T, V), img_shape (H, W)")
        xy, score = np.asarray(data["keypoint"]), np.asarray(data["keypoint_score"])
        if xy.ndim == 3:
            xy, score = xy[None], score[None] if score.ndim == 2 else score
        if xy.ndim != 4 or xy.shape[-1] != 2:
            raise BadClipError(f"video '{video}': skeleton {path} keypoint has shape {xy.shape}, expected "
                               f"(persons, frames, joints, 2) or (frames, joints, 2)")
        img_shape = data.get("img_shape")
        if img_shape is not None:
            img_shape = tuple(int(v) for v in np.asarray(img_shape).reshape(-1))
            if len(img_shape) < 2 or min(img_shape[:2]) <= 0:
                raise BadClipError(f"video '{video}': skeleton {path} img_shape {data['img_shape']!r} is not (H, W)")
            img_shape = img_shape[:2]
        total = data.get("total_frames")
        return self._validated(xy, score, img_shape, None if total is None else int(total), path, video)

    def _validated(self, xy: np.ndarray, score: np.ndarray, img_shape, total_frames, path, video) -> Keypoints:
        if xy.shape[2] != self.num_joints:
            raise BadClipError(f"video '{video}': skeleton {path} has {xy.shape[2]} joints, expected "
                               f"{self.num_joints} (skeleton_pickle.num_joints)")
        if score.shape != xy.shape[:3]:
            raise BadClipError(f"video '{video}': skeleton {path} keypoint_score has shape {score.shape}, "
                               f"expected {xy.shape[:3]} to match keypoint {xy.shape}")
        if total_frames is not None and total_frames != xy.shape[1]:
            raise BadClipError(f"video '{video}': skeleton {path} says total_frames={total_frames} but "
                               f"keypoint holds {xy.shape[1]} frames")
        xy, score = xy.astype(np.float32), score.astype(np.float32)
        if not np.isfinite(score).all() or score.min(initial=0) < 0 or score.max(initial=0) > 1.001:
            raise BadClipError(f"video '{video}': skeleton {path} scores must be finite and within [0, 1]")
        finite = np.isfinite(xy).all(axis=-1)
        if (~finite & (score > 0)).any():
            raise BadClipError(f"video '{video}': skeleton {path} has NaN/inf coordinates on joints with "
                               f"score > 0 (give absent joints score 0)")
        # Absent joints contribute nothing; their coordinates are neutralised so NaN cannot spread.
        xy[~finite] = 0.0
        score = np.minimum(score, 1.0)
        return Keypoints(xy, score, img_shape, self.flip_pairs)

    def num_frames(self, video: str) -> int:
        return self._load(video).xy.shape[1]

    def read(self, video: str, indices: Sequence[int]) -> Keypoints:
        keypoints = self._load(video)
        indices = _check_indices(indices, keypoints.xy.shape[1], video, f"skeleton {self.path(video)}")
        return dataclasses.replace(keypoints, xy=keypoints.xy[:, indices], score=keypoints.score[:, indices])
