"""The clip dataset (annotations + sources + shared transforms) and its DataLoader.

All randomness of an item (start offset, crop, flip, mask) comes from (seed, epoch, index), so an
item is the same whatever the worker count or order, and a resumed run sees the same clips. The
loader's sampler hands each index to the workers together with its epoch, so persistent workers
follow `set_epoch` too.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import gin
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from mmdistill.data.annotations import AnnotationError, Clip, class_names_of, read_annotations
from mmdistill.checks import check_int
from mmdistill.data.clip_cache import ClipCache
from mmdistill.data.clip_identity import deduplicate
from mmdistill.data.heatmaps import HeatmapRenderer
from mmdistill.data.masking import TubeMaskGenerator
from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.modalities.specs import all_specs, spec_of
from mmdistill.data.sources import BadClipError
from mmdistill.data.transforms import Normalize, SpatialTransform, TemporalSampler, same_aspect

log = logging.getLogger("mmdistill.data")


class ClipDataset(Dataset):
    """`dataset[i]` -> {modality: float32 (C, T, H, W), 'mask': bool (N,) when a mask generator is
    set, 'label': int (index into `class_names`, -1 unlabelled), 'video': str, 'start': int (first
    0-based frame read), 'index': int}, or None for a bad clip under `on_bad_clip='skip'`.

    `sources` maps modality names to readers; each modality's spec (`specs`, by default
    `spec_of(name)`: mmdistill/data/modalities/) decides how it is read, transformed, normalised,
    in which form it travels and how `finish_on_device` completes it (e.g. with
    `skeleton_heatmaps.render_on='device'` the item holds `skeleton_keypoints` (M, T, V, 3), drawn
    where the batch goes by `mmdistill.data.device_batches`).
    `frame_counts='equal'` requires all modalities of a video to have the same number of frames;
    `'min'` samples within the frames all of them have.
    """

    def __init__(self, clips: Sequence[Clip], sources: Mapping[str, Any], *, mode: str = "train",
                 temporal: TemporalSampler | None = None, spatial: SpatialTransform | None = None,
                 heatmaps: HeatmapRenderer | None = None, normalize: Mapping[str, Normalize] | None = None,
                 mask_generator: TubeMaskGenerator | None = None, on_bad_clip: str = "error", seed: int = 0,
                 labeled: bool | None = None, class_names: Sequence[str] | None = None,
                 frame_counts: str = "equal", cache: ClipCache | None = None,
                 specs: Mapping[str, ModalitySpec] | None = None):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if on_bad_clip not in ("error", "skip"):
            raise ValueError(f"on_bad_clip must be 'error' or 'skip', got {on_bad_clip!r}")
        if frame_counts not in ("equal", "min"):
            raise ValueError(f"frame_counts must be 'equal' or 'min', got {frame_counts!r}")
        if not sources:
            raise ValueError("a clip dataset needs at least one modality source")
        if not clips:
            raise ValueError("a clip dataset needs at least one clip (the annotation list is empty)")
        self.mode = mode
        self.train = mode == "train"
        self.temporal = temporal or TemporalSampler()
        self.clips = deduplicate(list(clips), self.temporal.span, self.temporal.centred(self.train))
        self.sources = dict(sources)
        self.specs = {name: (specs or {}).get(name) or spec_of(name) for name in self.sources}
        self.spatial = spatial or SpatialTransform()
        self.heatmaps = heatmaps or HeatmapRenderer()
        self.normalize = {name: (normalize or {}).get(name) or Normalize(*self.specs[name].normalization)
                          for name in self.sources}
        self.mask_generator = mask_generator
        self.on_bad_clip = on_bad_clip
        self.seed = int(seed)
        self.frame_counts = frame_counts
        refusals = {name: self.specs[name].cache_refusal(source) for name, source in self.sources.items()}
        refused = {name: why for name, why in refusals.items() if why is not None}
        if cache is not None and refused:
            settings = sorted(set(refused.values()))
            raise ValueError(f"{', '.join(settings)} (modalities {sorted(refused)}) cannot be used with the "
                             f"clip cache (clip_data.cache_dir={str(cache.folder)!r}), which stores decoded "
                             f"frames: set decode_on='loader', or clip_data.cache_dir=None")
        self.cache = cache
        self.epoch = 0
        self.num_skipped = 0
        self._set_labels(labeled, class_names)

    def _set_labels(self, labeled: bool | None, class_names: Sequence[str] | None) -> None:
        unlabelled = [clip for clip in self.clips if clip.label is None]
        if labeled is None:
            if unlabelled and len(unlabelled) < len(self.clips):
                raise AnnotationError(f"{len(unlabelled)} of {len(self.clips)} clips have no label (first: video "
                                      f"'{unlabelled[0].video}'); label them all, or set labeled=False")
            labeled = not unlabelled
        if labeled and unlabelled:
            raise AnnotationError(f"labelled data required but {len(unlabelled)} clips have no label "
                                  f"(first: video '{unlabelled[0].video}')")
        self.labeled = labeled
        self.class_names = list(class_names) if class_names is not None else (
            class_names_of(self.clips) if labeled else [])
        class_index = {name: index for index, name in enumerate(self.class_names)}
        if labeled:
            unknown = sorted({clip.label for clip in self.clips} - set(class_index))
            if unknown:
                raise AnnotationError(f"labels {unknown[:5]} are not among the given class_names")
        self.labels = np.array([class_index[clip.label] if labeled else -1 for clip in self.clips], dtype=np.int64)

    @property
    def modalities(self) -> list[str]:
        return list(self.sources)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        if not 0 <= index < len(self.clips):
            raise IndexError(f"clip index {index} out of range for {len(self.clips)} clips")
        clip = self.clips[index]
        # Independent streams, so the crop does not change when the modality set or mask changes.
        # Independent streams, so the crop does not change when the modality set or mask changes;
        # the fourth seeds each modality's own draws (`ModalitySpec.to_item`'s rng).
        time_seq, space_seq, mask_seq, modality_seq = np.random.SeedSequence(
            [self.seed, int(epoch), index]).spawn(4)
        time_rng, space_rng, mask_rng = (np.random.default_rng(seq) for seq in (time_seq, space_seq, mask_seq))
        try:
            start, tensors = self.load_clip(clip, time_rng, space_rng, modality_seq)
        except BadClipError as err:
            if self.on_bad_clip == "error":
                raise BadClipError(f"clip #{index} (video '{clip.video}', start {clip.start}): {err}") from None
            self.num_skipped += 1
            log.warning("skipping clip #%d (video '%s'): %s", index, clip.video, err)
            return None
        item: dict[str, Any] = dict(tensors)
        if self.mask_generator is not None:
            item["mask"] = torch.from_numpy(self.mask_generator(mask_rng))
        item.update(label=int(self.labels[index]), video=clip.video, start=int(start), index=index)
        return item

    def load_clip(self, clip: Clip, time_rng: np.random.Generator, space_rng: np.random.Generator,
                  modality_seq: np.random.SeedSequence | None = None) -> tuple[int, dict[str, torch.Tensor]]:
        """Read and transform one clip -> (first frame index, {modality: tensor}); raises BadClipError.
        `modality_seq` seeds each modality's own random draws (one generator per name)."""
        modality_seq = modality_seq if modality_seq is not None else np.random.SeedSequence(0)
        if self.cache is not None:  # the video decoded and resized once, memory-mapped (clip_cache.py)
            cached = self.cache.video(self, clip.video)
            ship = self.cache.finish_on == "device"
            counts = cached.counts
            read = lambda name, indices: cached.read(name, indices, quantised=ship)  # noqa: E731
        else:
            counts = {name: source.num_frames(clip.video) for name, source in self.sources.items()}
            read = lambda name, indices: self.specs[name].read(self.sources[name], clip.video,  # noqa: E731
                                                               indices)
        if len(set(counts.values())) > 1 and self.frame_counts == "equal":
            raise BadClipError(f"video '{clip.video}': modalities disagree on its number of frames {counts}; "
                               f"fix the data, or set frame_counts='min' to use the frames all of them have")
        start, indices = self.temporal(clip, min(counts.values()), time_rng, self.train)
        raw = {name: read(name, self.specs[name].frame_indices(indices)) for name in self.sources}
        reference_size = self.plan_size(raw, clip.video)
        plan = (self.spatial.plan(reference_size, space_rng, self.train, clip.video)
                if reference_size is not None else None)
        tensors = {}
        for name, data in raw.items():
            rng = np.random.default_rng(np.random.SeedSequence(
                modality_seq.entropy, spawn_key=modality_seq.spawn_key + tuple(name.encode())))
            tensors.update(self.specs[name].to_item(name, data, plan, reference_size, self, rng))
        return start, tensors

    def finish_on_device(self, batch: dict) -> dict:
        """What the loader left to the batch's device, finished by each modality's spec (cached
        integers made float and normalised, JPEG frames decoded, heatmaps drawn from keypoints);
        `mmdistill.data.device_batches` calls it."""
        for name, spec in self.specs.items():
            spec.finish(name, batch, self)
        return batch

    def channels(self, name: str) -> int:
        """The channel count of modality `name`'s tensors: a model reading it has this `in_chans`."""
        return int(self.specs[name].channels(self.sources[name]))

    def plan_size(self, raw: Mapping[str, Any], video: str) -> tuple[int, int]:
        """The (H, W) the spatial plan is made for: RGB if read, else the modality whose spec ranks
        first (`plan_rank`: images, flow, the skeleton's image shape). Every other modality is
        resized onto it, so each must have its aspect ratio (`same_aspect`): a stretched flow or
        skeleton would sit off the RGB."""
        sizes = {}
        for name in sorted(raw, key=lambda name: (name != "rgb", self.specs[name].plan_rank)):
            size = self.specs[name].frame_size(raw[name])
            if size is not None:
                sizes[name] = tuple(size)
        if not sizes:
            if not any(self.specs[name].uses_plan for name in raw):
                return None  # every modality has its own spatial rule (e.g. the MM-CDFSL specs)
            raise BadClipError(f"video '{video}': with skeletons only, the skeleton file must give img_shape")
        reference, *others = sizes
        for name in others:
            if not same_aspect(sizes[name], sizes[reference]):
                raise BadClipError(_aspect_message(video, name, self.specs[name], sizes[name],
                                                   reference, sizes[reference]))
        return sizes[reference]


def _aspect_message(video: str, name: str, spec: ModalitySpec, size: tuple[int, int], reference: str,
                    reference_size: tuple[int, int]) -> str:
    what, fix = spec.size_what, spec.size_fix
    what = what if what.split()[0] == name else f"{name} {what}"
    (height, width), (ref_height, ref_width) = size, reference_size
    return (f"video '{video}': its {what} is {height}x{width} (height x width) but its {reference} "
            f"frames are {ref_height}x{ref_width}: another aspect ratio (width/height {width / height:.3f} "
            f"vs {ref_width / ref_height:.3f}), which resizing would stretch, misplacing it against the "
            f"{reference}. Fix: {fix}.")


def collate_clips(items: Sequence[dict | None]) -> dict:
    """Stack items into a batch, dropping skipped (None) clips and counting them in 'num_skipped'.

    When every clip of a batch was bad, the batch holds only 'num_skipped'.
    """
    kept = _pad_persons([item for item in items if item is not None])
    batch = torch.utils.data.default_collate(kept) if kept else {}
    batch["num_skipped"] = len(items) - len(kept)
    return batch


def _pad_persons(items: list[dict]) -> list[dict]:
    """Items made collatable by every spec (e.g. the skeleton's keypoints padded to one person count)."""
    for spec in all_specs().values():
        items = spec.pad(items)
    return items


class EpochTaggedSampler(DistributedSampler):
    """A DistributedSampler yielding (epoch, index): workers, persistent ones included, then draw
    each item's randomness for the epoch the main process is in."""

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; give numpy/random the same seed so
    # any library randomness is reproducible too. One OpenCV thread per worker: workers are the
    # parallelism, more threads only oversubscribe the cores.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(1)


@gin.configurable("data_loader", denylist=["dataset", "seed", "rank", "world_size"])
def build_loader(dataset: Dataset, batch_size: int = 4, shuffle: bool = True, num_workers: int = 2,
                 drop_last: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pin_memory: bool | None = None, persistent_workers: bool = True,
                 prefetch_factor: int | None = None) -> DataLoader:
    """DataLoader over a `DistributedSampler` (also for one process, so `set_epoch` is the same
    everywhere); decoding happens in the workers; `pin_memory=None` pins when CUDA is present."""
    check_int("data_loader.batch_size", batch_size, example=4)
    check_int("data_loader.num_workers", num_workers, minimum=0, example=2)
    sampler = EpochTaggedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    generator = torch.Generator()
    generator.manual_seed(seed * 1000 + rank)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, drop_last=drop_last,
        persistent_workers=persistent_workers and num_workers > 0, worker_init_fn=_seed_worker,
        generator=generator, prefetch_factor=prefetch_factor if num_workers > 0 else None)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the sampler (shuffle order) and the dataset (per-item randomness) the epoch."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


@gin.configurable("clip_data", denylist=["modalities", "mode", "seed", "mask"])
def build_clip_dataset(annotations: str | Path | Sequence[Clip], root: str | Path | None = None,
                       modalities: Sequence[str] = ("rgb", "flow", "skeleton"), mode: str = "train",
                       sources: Mapping[str, Any] | None = None, mean: Mapping[str, Sequence[float]] | None = None,
                       std: Mapping[str, Sequence[float]] | None = None, mask: TubeMaskGenerator | None = None,
                       on_bad_clip: str = "error", seed: int = 0, labeled: bool | None = None,
                       class_names: Sequence[str] | None = None, frame_counts: str = "equal",
                       cache_dir: str | Path | None = None) -> ClipDataset:
    """A dataset described in gin: an annotation file (or folder, or Clip list) and a data root.

    `root` defaults to the annotation folder (a class-folder root) or the annotation file's
    folder. Modalities without an entry in `sources` read the canonical layout under `root`:
    rgb `frames/{video}/{frame:06d}.jpg` (for a class-folder layout: the videos themselves,
    `{video}.mp4`), flow `flows/{video}/pair_{frame:05d}.npy`, skeleton `skeletons/{video}.pkl`.
    `mean`/`std` override the per-modality normalisation (RGB in [0, 1] units).
    `cache_dir`: keep each video decoded at the resized resolution there (`clip_cache.py`;
    `python -m mmdistill.data cache` fills it ahead of time); None reads the files every time.
    Template and sampling parameters live on the parts' own gin names (`rgb_frames.template`,
    `temporal_sampling.num_frames`, `spatial_transform.crop_size`, `skeleton_heatmaps.sigma`...).
    """
    if isinstance(annotations, (str, Path)):
        annotation_path = Path(annotations)
        on_bad_entry = "skip" if on_bad_clip == "skip" else "error"
        clips = read_annotations(annotation_path, on_bad_entry=on_bad_entry, require_labels=labeled is True)
        if root is None:
            root = annotation_path if annotation_path.is_dir() else annotation_path.parent
        is_folder_layout = annotation_path.is_dir()
    else:
        clips, is_folder_layout = list(annotations), False
        if root is None:
            raise ValueError("clip_data.root is required when the clips are given as a list")
    specs = {name: spec_of(name) for name in modalities}
    chosen = {}
    for name, spec in specs.items():
        source = (sources or {}).get(name)
        if source is None:
            source = spec.default_reader(folder_layout=is_folder_layout)
        if source.root is None:
            source.root = Path(root)
        chosen[name] = source
    normalize = {}
    for name, spec in specs.items():
        default_mean, default_std, scale = spec.normalization
        normalize[name] = Normalize((mean or {}).get(name, default_mean), (std or {}).get(name, default_std), scale)
    return ClipDataset(clips, chosen, mode=mode, temporal=TemporalSampler(), spatial=SpatialTransform(),
                       heatmaps=HeatmapRenderer(), normalize=normalize, mask_generator=mask,
                       on_bad_clip=on_bad_clip, seed=seed, labeled=labeled, class_names=class_names,
                       frame_counts=frame_counts, cache=ClipCache(cache_dir) if cache_dir is not None else None,
                       specs=specs)
