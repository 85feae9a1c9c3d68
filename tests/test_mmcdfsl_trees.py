"""The tiny MM-CDFSL trees (tests/mmcdfsl_trees.py) are in the layout docs/parity_mmcdfsl.md
describes, its lists read through gin/base/mmcdfsl_annotations_*.gin, and the reference functions
follow its frame rule, repeats and transforms."""
import json
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from PIL import Image

import mmcdfsl_trees as trees
from mmdistill.data.annotations import Clip, read_annotations

GIN_BASE = Path(__file__).resolve().parents[1] / "gin" / "base"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("mmcdfsl")
    return {dataset: trees.make_tree(base, dataset) for dataset in trees.DATASETS}


# Paths written from the table of docs/parity_mmcdfsl.md, section 2 (not from the helper):
# (an RGB frame, a sampled flow file, its pose file, an unsampled frame's flow file, the
# left-out flow file and its pose file), relative to the base folder.
LAYOUT = {
    "ego4d": ("ego4d_data/v1/image_frame/clip-a/000001.jpg",
              "ego4d_data/v1/optical_flow/clip-a/npy/000005.npy",
              "ego4d_data/v1/hand-pose/heatmap/clip-a/000005.npy",
              "ego4d_data/v1/optical_flow/clip-a/npy/000006.npy",
              "ego4d_data/v1/optical_flow/clip-a/npy/000013.npy",
              "ego4d_data/v1/hand-pose/heatmap/clip-a/000013.npy"),
    "epic": ("EPIC-KITCHENS-55/frames/rgb/train/P01/P01_01/frame_0000000001.jpg",
             "EPIC-KITCHENS-55/frames/flow/train/P01/P01_01/frame_0000000003.npy",
             "EPIC-KITCHENS-55/frames/pose/train/P01/P01_01/frame_0000000003.npy",
             "EPIC-KITCHENS-55/frames/flow/train/P01/P01_01/frame_0000000004.npy",
             "EPIC-KITCHENS-55/frames/flow/train/P01/P01_01/frame_0000000019.npy",
             "EPIC-KITCHENS-55/frames/pose/train/P01/P01_01/frame_0000000019.npy"),
    "meccano": ("MECCANO/RGB_frames/0001/00001.jpg",
                "MECCANO/flow_frames/0001/00002.npy",
                "MECCANO/hand-pose/heatmap/0001/00002.npy",
                "MECCANO/flow_frames/0002/00020.npy",
                "MECCANO/flow_frames/0001/00004.npy",
                "MECCANO/hand-pose/heatmap/0001/00004.npy"),
    "wear": ("WEAR/RGB_frames/sbj_0/000001.jpg",
             "WEAR/flow_frames/sbj_0/000001.npy",
             "WEAR/hand-pose/heatmap/sbj_0/000001.npy",
             "WEAR/flow_frames/sbj_0/000002.npy",
             "WEAR/flow_frames/sbj_0/000009.npy",
             "WEAR/hand-pose/heatmap/sbj_0/000009.npy"),
}
LISTS = {"ego4d": ["cdfsl/source/ego4d/annotations/ego4d_train.json"],
         "epic": ["cdfsl/target/epic/annotations/epic-55_unlabel.json",
                  "cdfsl/target/epic/annotations/epic-55_val.json"],
         "meccano": ["cdfsl/target/meccano/annotations/meccano_unlabel.json",
                     "cdfsl/target/meccano/annotations/meccano_val.json"],
         "wear": ["cdfsl/target/wear/annotations/wear_unlabel.json",
                  "cdfsl/target/wear/annotations/wear_val.json"]}


@pytest.mark.parametrize("dataset", trees.DATASETS)
def test_tree_files_sit_at_the_paths_of_the_notes_and_arrays_are_sparse(built, dataset):
    tree = built[dataset]
    base = tree.root.parents[len(Path(trees.ROOTS[dataset]).parts) - 1]
    rgb, flow, pose, unsampled, missing, missing_pose = (base / p for p in LAYOUT[dataset])
    assert rgb.is_file() and Image.open(rgb).mode == "RGB"
    assert np.load(flow).shape == (224, 224, 2) and np.load(pose).shape == (56, 56, 21)
    assert np.load(flow).dtype == np.load(pose).dtype == np.float32
    assert not unsampled.exists()                      # flow only for sampled frames
    assert not missing.exists() and missing_pose.is_file()  # the one left-out flow file
    for rel in LISTS[dataset]:
        assert (base / rel).is_file()
    # arrays exist exactly for the frames some list samples (and the video has), minus the
    # left-out flow file: sparse, as its released data
    counts = {video: count for video, (count, _) in trees.TREES[dataset]["videos"].items()}
    sampled = {(video, n) for video, start in tree.clips
               for n in trees.frame_numbers(start, trees.RATES[dataset]) if n <= counts[video]}
    flows = {trees.flow_path(dataset, v, n) for v, n in sampled if (v, n) != tree.missing_flow}
    poses = {trees.pose_path(dataset, v, n) for v, n in sampled}
    written = {p.relative_to(tree.root).as_posix() for p in tree.root.rglob("*.npy")}
    assert written == flows | poses and not flows & poses
    for rel in written:
        assert np.load(tree.root / rel, mmap_mode="r").shape == ((224, 224, 2) if rel in flows else (56, 56, 21))
    if trees.RATES[dataset] > 1:
        assert len(flows) < sum(counts.values())


@pytest.mark.parametrize("dataset, lists, expected", [
    ("ego4d", {"ego4d_train.json": {}}, {"ego4d_train.json": [Clip("clip-a", 4, None, "3/7"),
                                                              Clip("clip-b", 29, None, "3/8")]}),
    ("epic", {"epic-55_unlabel.json": {},
              "epic-55_val.json": {"clip_annotations.label_key": ["verb_label", "noun_label"],
                                   "clip_annotations.ignored_keys": ["uid", "stop_frame", "action_idx"]}},
     {"epic-55_unlabel.json": [Clip("P01/P01_01", 2), Clip("P01/P01_01", 99)],
      "epic-55_val.json": [Clip("P01/P01_02", 0, None, "2/5"), Clip("P01/P01_01", 11, None, "4/1")]}),
    ("meccano", {"meccano_unlabel.json": {}, "meccano_val.json": {}},
     {"meccano_unlabel.json": [Clip("0001", 1), Clip("0001", 19)],
      "meccano_val.json": [Clip("0002", 0, None, "take_screw"), Clip("0001", 4, None, "check_booklet")]}),
    ("wear", {"wear_unlabel.json": {}, "wear_val.json": {}},
     {"wear_unlabel.json": [Clip("sbj_0", 0), Clip("sbj_0", 99)],
      "wear_val.json": [Clip("sbj_1", 2, None, "jogging"), Clip("sbj_0", 16, None, "push-ups")]}),
])
def test_lists_are_in_the_released_formats_our_gin_mappings_read(built, caplog, clean_gin, dataset, lists,
                                                                 expected):
    tree = built[dataset]
    for name, bindings in lists.items():
        data = json.loads(tree.lists[name].read_text())
        # the split its readers assert (epic_unlabel_loader.py:26, epic_fewshot_eval_dataset.py:36, ...)
        if dataset != "ego4d":
            assert data["split"] == ("val" if name.endswith("_val.json") else "train (unlabel)")
        gin.clear_config()
        gin.parse_config_file(str(GIN_BASE / f"mmcdfsl_annotations_{dataset}.gin"))
        for key, value in bindings.items():
            gin.bind_parameter(key, value)
        caplog.clear()
        with caplog.at_level("WARNING", logger="mmdistill.data"):
            assert read_annotations(tree.lists[name]) == expected[name]
        assert not caplog.records, [r.getMessage() for r in caplog.records]


# (reader that finds the DATA_STRUCTURE.md layout, video, start, what each modality must read).
# Hand-derived from max(1, start + rate * i): repeats are the previous position's file.
FRAMES = {
    "ego4d": ("stage1", "clip-a", 5, {  # rate 4; flow 13 left out
        "rgb": list(range(5, 68, 4)),
        "flow": [5, 9, 9] + list(range(17, 68, 4)),
        "pose": list(range(5, 68, 4))}),
    "epic": ("distill", "P01/P01_01", 100, {  # rate 8, 150 frames: 100..148 exist
        "rgb": [100, 108, 116, 124, 132, 140, 148] + [148] * 9,
        "flow": [100, 108, 116, 124, 132, 140, 148] + [148] * 9,
        "pose": [100, 108, 116, 124, 132, 140, 148] + [148] * 9}),
    "meccano": ("stage1", "0001", 2, {  # rate 1; flow 4 left out
        "rgb": list(range(2, 18)), "flow": [2, 3, 3] + list(range(5, 18)), "pose": list(range(2, 18))}),
    "wear": ("stage1", "sbj_0", 1, {  # rate 8; flow 9 left out
        "rgb": list(range(1, 122, 8)), "flow": [1, 1] + list(range(17, 122, 8)),
        "pose": list(range(1, 122, 8))}),
}


@pytest.mark.parametrize("dataset", trees.DATASETS)
def test_reference_frames_repeat_the_previous_file_per_modality(built, dataset):
    reader, video, start, expected = FRAMES[dataset]
    assert trees.reference_files(dataset, reader, built[dataset].root, video, start) == expected


def test_near_end_clips_repeat_their_last_present_frame(built):
    used = trees.reference_files("ego4d", "stage1", built["ego4d"].root, "clip-b", 30)  # 40 frames, rate 4
    assert used == {modality: [30, 34, 38] + [38] * 13 for modality in ("rgb", "flow", "pose")}
    used = trees.reference_files("meccano", "stage1", built["meccano"].root, "0001", 20)  # 30 frames, rate 1
    assert used["rgb"] == list(range(20, 31)) + [30] * 5


@pytest.mark.parametrize("dataset, reader", [("meccano", "distill"), ("wear", "distill"), ("epic", "stage1")])
def test_readers_whose_replace_misses_the_layout_fail_as_its_code_would(built, dataset, reader):
    """docs/parity_mmcdfsl.md section 2: MMDS's 'rgb' -> 'flow' does nothing to RGB_frames, S1DS's
    'RGB' -> 'flow' nothing to frames/rgb; the first flow file is then missing: an IndexError."""
    tree = built[dataset]
    video, start = tree.clips[0]
    paths = trees.reader_paths(dataset, reader, tree.root, video)
    assert paths["flow"](start).parent == paths["rgb"](start).parent
    with pytest.raises(IndexError):
        trees.reference_files(dataset, reader, tree.root, video, start)


@pytest.mark.parametrize("dataset", ["epic", "meccano", "wear"])
def test_few_shot_readers_find_every_modality_of_the_val_clips(built, dataset):
    tree = built[dataset]
    val = [c for c in tree.clips if c not in tree.clips[:2]]
    for video, start in val:
        used = trees.reference_files(dataset, "fewshot", tree.root, video, start)
        assert used["flow"] == used["pose"] == used["rgb"]  # no file missing in these clips


def test_a_base_path_holding_rgb_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'rgb'"):
        trees.make_tree(tmp_path / "my_RGB_data", "wear")


def test_array_reference_only_normalises_channel_last_arrays():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(0, 5, (6, 5, 2)).astype(np.float32) for _ in range(3)]
    out = trees.array_reference(arrays, trees.FLOW_MEAN, trees.FLOW_STD)
    assert out.shape == (2, 3, 6, 5) and out.dtype == torch.float32
    for t, array in enumerate(arrays):
        for c in range(2):
            np.testing.assert_allclose(out[c, t].numpy(), (array[..., c] - trees.FLOW_MEAN[c]) / trees.FLOW_STD[c],
                                       rtol=1e-6)


def test_rgb_references_normalise_squash_crop_and_flip():
    rng = np.random.default_rng(1)
    square = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(2)]
    mean, std = np.array(trees.IMAGENET_MEAN), np.array(trees.IMAGENET_STD)
    expected = np.stack([(np.asarray(im) / 255.0 - mean) / std for im in square]).transpose(3, 0, 1, 2)
    # 224 x 224 in: the few-shot squash and a whole-frame crop leave the pixels as they are
    np.testing.assert_allclose(trees.rgb_fewshot_reference(square).numpy(), expected, atol=1e-5)
    whole = trees.rgb_train_reference(square, (0, 0, 224, 224), flip=False)
    np.testing.assert_allclose(whole.numpy(), expected, atol=1e-5)
    flipped = trees.rgb_train_reference(square, (0, 0, 224, 224), flip=True)
    np.testing.assert_allclose(flipped.numpy(), expected[..., ::-1], atol=1e-5)
    # a wide two-colour frame: the crop of its left half is all left colour; the squash keeps both
    wide = np.zeros((30, 60, 3), np.uint8)
    wide[:, :30] = (200, 10, 10)
    wide[:, 30:] = (10, 10, 200)
    frames = [Image.fromarray(wide)] * 3
    left = trees.rgb_train_reference(frames, (0, 0, 30, 30), flip=False)
    assert left.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(left[:, :, 5, 5].numpy(), left[:, :, 200, 200].numpy(), atol=1e-5)
    squash = trees.rgb_fewshot_reference(frames)
    assert squash.shape == (3, 3, 224, 224)
    assert squash[0, 0, 100, 10] > 0 > squash[0, 0, 100, 213]  # red on the left, not on the right


@pytest.mark.parametrize("dataset", ["epic", "meccano", "wear"])
def test_reference_clip_gives_each_model_its_input(built, dataset):
    tree = built[dataset]
    reader = "distill" if dataset == "epic" else "stage1"
    video, start = tree.clips[0]
    fewshot = trees.reference_clip(dataset, reader, tree.root, video, start)
    train = trees.reference_clip(dataset, reader, tree.root, video, start, crop=(2, 3, 20, 24), flip=True)
    assert fewshot["rgb"].shape == train["rgb"].shape == (3, 16, 224, 224)
    assert fewshot["flow"].shape == (2, 16, 224, 224) and fewshot["pose"].shape == (21, 16, 56, 56)
    torch.testing.assert_close(train["flow"], fewshot["flow"])  # the crop never touches flow or pose
    used = trees.reference_files(dataset, reader, tree.root, video, start)["flow"]
    first = (trees.flow_array(video, used[0])[..., 1] - trees.FLOW_MEAN[1]) / trees.FLOW_STD[1]
    np.testing.assert_allclose(fewshot["flow"][1, 0].numpy(), first, rtol=1e-5)
    # every model's tokens share one grid: 16/2 x 224/16 x 224/16, and pose 56/4 = 14 too
    assert trees.MASK_GRID == (8, 14, 14) == (16 // 2, 56 // 4, 56 // 4)
