"""MM-CDFSL's data through our specs: on tiny trees in each dataset's exact layout
(tests/mmcdfsl_trees.py), the tensors entering each model equal the reference functions written
from its code (frame rule, per-modality repeats, RandomResizedCrop/flip or squash for RGB,
normalisation only for flow and pose)."""
from pathlib import Path

import gin
import numpy as np
import pytest
import torch

import mmcdfsl_trees as trees
from mmdistill.data.dataset import build_clip_dataset
from mmdistill.data.masking import TubeMaskGenerator
from mmdistill.data.modalities.mmcdfsl import MmcdfslRgbSpec, random_resized_crop_box
from mmdistill.data.sources import BadClipError
from mmdistill.data.transforms import TemporalSampler
from mmdistill.data.annotations import Clip

GIN_BASE = Path(__file__).resolve().parents[1] / "gin" / "base"
# Templates per dataset, written from docs/parity_mmcdfsl.md section 2 (the DATA_STRUCTURE.md layout).
TEMPLATES = {
    "ego4d": ("image_frame/{video}/{frame:06d}.jpg", "optical_flow/{video}/npy/{frame:06d}.npy",
              "hand-pose/heatmap/{video}/{frame:06d}.npy"),
    "epic": ("frames/rgb/train/{video}/frame_{frame:010d}.jpg", "frames/flow/train/{video}/frame_{frame:010d}.npy",
             "frames/pose/train/{video}/frame_{frame:010d}.npy"),
    "meccano": ("RGB_frames/{video}/{frame:05d}.jpg", "flow_frames/{video}/{frame:05d}.npy",
                "hand-pose/heatmap/{video}/{frame:05d}.npy"),
    "wear": ("RGB_frames/{video}/{frame:06d}.jpg", "flow_frames/{video}/{frame:06d}.npy",
             "hand-pose/heatmap/{video}/{frame:06d}.npy"),
}
# Which of its readers finds the DATA_STRUCTURE.md layout, per list (docs/parity_mmcdfsl.md section 2).
READER = {"ego4d_train.json": "stage1", "epic-55_unlabel.json": "distill", "epic-55_val.json": "fewshot",
          "meccano_unlabel.json": "stage1", "meccano_val.json": "fewshot",
          "wear_unlabel.json": "stage1", "wear_val.json": "fewshot"}
LISTS = [(dataset, name) for dataset in trees.DATASETS for name in READER
         if name in [Path(spec.path).name for spec in trees.TREES[dataset]["lists"]]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("mmcdfsl")
    return {dataset: trees.make_tree(base, dataset) for dataset in trees.DATASETS}


def configure(dataset: str, *extra: str) -> None:
    gin.parse_config_file(str(GIN_BASE / f"mmcdfsl_annotations_{dataset}.gin"))
    rgb, flow, pose = TEMPLATES[dataset]
    gin.parse_config([
        "modality_specs.extra = {'rgb': @mmcdfsl_rgb_spec(), 'flow': @mmcdfsl_flow_spec(), "
        "'pose': @mmcdfsl_pose_spec()}",
        f"mmcdfsl_rgb_frames.template = '{rgb}'", f"mmcdfsl_flow_frames.template = '{flow}'",
        f"mmcdfsl_pose_frames.template = '{pose}'",
        "temporal_sampling.num_frames = 16", f"temporal_sampling.sampling_rate = {trees.RATES[dataset]}",
        "temporal_sampling.past_end = 'keep'", *extra])


def dataset_of(tree, name: str, mode: str):
    return build_clip_dataset(annotations=tree.lists[name], root=tree.root, modalities=["rgb", "flow", "pose"],
                              mode=mode, labeled=False, mask=TubeMaskGenerator(trees.MASK_GRID, 0.75))


@pytest.mark.parametrize("dataset, name", LISTS)
def test_evaluation_tensors_equal_the_reference(built, clean_gin, dataset, name):
    tree = built[dataset]
    configure(dataset)
    data = dataset_of(tree, name, "eval")
    for index, clip in enumerate(data.clips):
        item = data[index]
        video, start = clip.video, clip.start + 1  # the list's 1-based start frame
        assert (video, start) in tree.clips
        expected = trees.reference_clip(dataset, READER[name], tree.root, video, start)
        for modality in ("rgb", "flow", "pose"):
            torch.testing.assert_close(item[modality], expected[modality], atol=1e-5, rtol=1e-5,
                                       msg=f"{dataset} {name} #{index} {modality}")
        assert item["mask"].shape == (8 * 14 * 14,)  # the model's grid, whatever the frame size


@pytest.mark.parametrize("dataset, name, flip", [("epic", "epic-55_unlabel.json", 0.0),
                                                 ("wear", "wear_unlabel.json", 1.0),
                                                 ("ego4d", "ego4d_train.json", 1.0)])
def test_training_rgb_is_one_random_resized_crop_and_flip_per_clip(built, clean_gin, monkeypatch,
                                                                     dataset, name, flip):
    tree = built[dataset]
    configure(dataset, f"mmcdfsl_rgb_spec.flip_prob = {flip}")
    boxes = []
    original = MmcdfslRgbSpec.crop_box

    def recorded(self, rng, height, width):
        boxes.append(original(self, rng, height, width))
        return boxes[-1]

    monkeypatch.setattr(MmcdfslRgbSpec, "crop_box", recorded)
    data = dataset_of(tree, name, "train")
    for index, clip in enumerate(data.clips):
        item = data[index]
        expected = trees.reference_clip(dataset, READER[name], tree.root, clip.video, clip.start + 1,
                                        crop=boxes[-1], flip=bool(flip))
        for modality in ("rgb", "flow", "pose"):  # flow and pose: the same with or without the crop
            torch.testing.assert_close(item[modality], expected[modality], atol=1e-5, rtol=1e-5)
    assert len(set(boxes)) == len(boxes)  # a fresh box per clip
    again = dataset_of(tree, name, "train")[0]["rgb"]
    torch.testing.assert_close(again, data[0]["rgb"])  # from (seed, epoch, index): reproducible


def test_repeated_frames_are_counted_and_reported(built, clean_gin, caplog):
    tree = built["ego4d"]
    configure("ego4d")
    data = dataset_of(tree, "ego4d_train.json", "eval")
    with caplog.at_level("WARNING", logger="mmdistill.data"):
        data[0], data[1], data[0]
    flow, rgb, pose = data.sources["flow"], data.sources["rgb"], data.sources["pose"]
    assert flow.repeats == {"clip-a": 2, "clip-b": 13}  # file 13 missing, read twice; clip-b past its end
    assert rgb.repeats == {"clip-b": 13} and pose.repeats == {"clip-b": 13}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("flow of video 'clip-a'" in m and "[13]" in m for m in messages) == 1  # once per video
    assert any("RGB frames of video 'clip-b'" in m and "[42, 46" in m for m in messages)


def test_a_missing_first_file_and_a_wrong_shape_are_errors_naming_the_file(built, clean_gin, tmp_path):
    tree = trees.make_tree(tmp_path / "broken", "meccano")
    configure("meccano")
    data = dataset_of(tree, "meccano_unlabel.json", "eval")
    first = tree.root / "flow_frames/0001/00002.npy"
    first.unlink()
    with pytest.raises(BadClipError, match=r"first file .*flow_frames/0001/00002\.npy is missing"):
        data[0]
    np.save(first, np.zeros((224, 224, 3), np.float32))
    with pytest.raises(BadClipError, match=r"00002\.npy has shape \(224, 224, 3\).*expected .*\(224, 224, 2\)"):
        data[0]


def test_channels_come_from_the_arrays_and_the_frame_count_from_the_rgb_folder(built, clean_gin):
    tree = built["wear"]
    configure("wear")
    data = dataset_of(tree, "wear_unlabel.json", "eval")
    assert (data.channels("rgb"), data.channels("flow"), data.channels("pose")) == (3, 2, 21)
    assert data.sources["flow"].num_frames("sbj_0") == data.sources["rgb"].num_frames("sbj_0") == 140


def test_past_end_read_keeps_the_start_and_runs_past_the_end():
    rng = np.random.default_rng(0)
    sampler = TemporalSampler(num_frames=4, sampling_rate=8, past_end="keep")
    start, indices = sampler(Clip("v", start=20), 30, rng, train=True)
    assert start == 20 and indices.tolist() == [20, 28, 36, 44]
    shifted = TemporalSampler(num_frames=4, sampling_rate=8)(Clip("v", start=20), 30, rng, train=True)
    assert shifted[1].tolist() == [5, 13, 21, 29]  # the default still shifts back to the end
    with pytest.raises(ValueError, match="past_end"):
        TemporalSampler(past_end="clamp")


def test_random_resized_crop_boxes_follow_torchvision_bounds():
    rng = np.random.default_rng(0)
    for height, width in ((36, 48), (240, 426)):
        for _ in range(300):
            top, left, h, w = random_resized_crop_box(rng, height, width, (0.08, 1.0), (3 / 4, 4 / 3))
            assert 0 <= top <= height - h and 0 <= left <= width - w and h >= 1 and w >= 1
            assert 0.08 * 0.8 <= h * w / (height * width) <= 1.0
    # no box fits a 4 x 400 frame: the fallback is the whole height at the widest allowed aspect
    import torchvision
    image = torch.zeros(1, 4, 400)
    assert random_resized_crop_box(rng, 4, 400, (0.08, 1.0), (3 / 4, 4 / 3)) == \
        torchvision.transforms.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))


def test_a_distillation_step_runs_with_its_three_teachers_and_a_56_px_patch_4_pose_teacher(
        built, clean_gin, tmp_path):
    from context_factories import cpu_context
    from mmdistill.stages import build_distillation, distill_stage

    tree = built["wear"]
    configure("wear")
    gin.parse_config([
        f"unlabeled/clip_data.annotations = '{tree.lists['wear_unlabel.json']}'",
        f"unlabeled/clip_data.root = '{tree.root}'",
        "data_loader.batch_size = 2", "data_loader.num_workers = 0",
        "video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
        "teacher_pose/video_vit.img_size = 56", "teacher_pose/video_vit.patch_size = 4",
        "distill.modalities = ['rgb', 'flow', 'pose']", "distill.allow_random_teachers = True",
        "distill.mask_ratio = 0.75", "train.epochs = 1", "train.warmup_epochs = 0", "train.log_every = 1",
    ])
    objective, _, _ = build_distillation()
    pose = objective.teachers["pose"]
    assert (pose.in_chans, objective.teachers["flow"].in_chans) == (21, 2)  # from the specs
    assert tuple(pose.grid_size) == tuple(objective.trainable.student.grid_size) == trees.MASK_GRID
    ctx = cpu_context(tmp_path / "distill")
    assert distill_stage(ctx, None).is_file()
    rows = [row for _, row in ctx.logger.history if "train/loss_pose" in row]
    assert rows and all(np.isfinite([row["train/loss_pose"] for row in rows]))


@pytest.mark.parametrize("dataset, name", [("wear", "wear_val.json"), ("epic", "epic-55_val.json")])
def test_the_data_check_passes_on_its_layout_with_sparse_arrays(built, clean_gin, dataset, name):
    """The check reads the first frame a clip uses, not frame 1 (which has no flow file here)."""
    from mmdistill.data.check import scan_dataset

    tree = built[dataset]
    configure(dataset)
    video, start = next(clip for clip in tree.clips if clip[1] > 1 and clip in tree.clips[2:])
    assert not (tree.root / trees.flow_path(dataset, video, 1)).exists()
    report = scan_dataset(dataset_of(tree, name, "eval"), decode=True, progress=False)
    assert report.ok, report.problems
    assert report.clips_ok == 2 and report.frame_sizes["flow"] == {"224x224": len(report.frame_counts["flow"])}
