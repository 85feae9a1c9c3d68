"""The tensor each teacher gets from the tennis fork's data equals the fork's formulas (issue 22,
items 2-5): on a tiny tree in its exact layout (tests/fork_tree.py), with the shipped
gin/base/tennis_fork_data.gin and each stage's gin file, for RGB, flow and skeleton, in
pretraining, distillation and few-shot evaluation, including a clip that runs past the video's
end. The references are written from the fork's code (file:line in fork_tree.py).
"""
from pathlib import Path

import gin
import pytest
import torch

import fork_tree as fork
from mmdistill.data.dataset import build_clip_dataset
from test_spine import import_run_configurables

REPO = Path(__file__).resolve().parents[1]
NUM_FRAMES = 8  # the 10-frame video's clip from frame 5 runs 3 frames past its end
# Per modality, the tolerance after normalisation: RGB and flow are the same arithmetic; the
# heatmaps differ in float rounding (float64 vs float32 Gaussians), divided by stds near 0.04.
ATOL = {"rgb": 1e-5, "flow": 1e-5, "skeleton": 2e-4}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return fork.write_fork_tree(tmp_path_factory.mktemp("fork_tree"))


def parse(tree, gin_file: str, *bindings: str) -> None:
    fork.parse_fork_gin(tree, gin_file, f"temporal_sampling.num_frames = {NUM_FRAMES}", *bindings)


def dataset_in(scope: str, modalities, mode: str, **kwargs):
    with gin.config_scope(scope):
        return build_clip_dataset(modalities=list(modalities), mode=mode, **kwargs)


def past_end_counts(tree, video: str, start: int) -> dict[str, int]:
    """Frames whose file/row the fork does not find (tree: JPEGs 0..F-1, pairs 1..F-1, rows 0..F-1)."""
    last = tree.videos[video].num_frames - 1
    numbers = fork.fork_frame_numbers(start, NUM_FRAMES)
    return {"rgb": sum(n > last for n in numbers), "flow": sum(n > last for n in numbers),
            "skeleton": sum(n - 1 > last for n in numbers)}


def assert_matches(item: dict, reference: dict, names) -> None:
    for name in names:
        assert item[name].shape == reference[name].shape, name
        difference = (item[name] - reference[name]).abs().max().item()
        assert difference <= ATOL[name], f"{name}: max difference {difference}"


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_distillation_inputs_equal_the_forks_incl_a_clip_past_the_end(tree, flip_prob):
    parse(tree, "gin/tennis_fork.gin", f"spatial_transform.flip_prob = {flip_prob}")
    dataset = dataset_in("unlabeled", ("rgb", "flow", "skeleton"), "train")
    clips = fork.fork_unlabelled_clips(tree.events_json)
    assert [(clip.video, clip.start) for clip in dataset.clips] == clips
    for index, (video, start) in enumerate(clips):
        item = dataset[index]
        reference = fork.fork_teacher_inputs("distill", tree.root, video, start, NUM_FRAMES, flip=flip_prob == 1.0)
        assert_matches(item, reference, ("rgb", "flow", "skeleton"))
        expected = past_end_counts(tree, video, start)
        assert {name: int(item[name + "_past_end"]) for name in expected} == expected
    assert expected["rgb"] == 3 and expected["skeleton"] == 2  # the last clip runs past the end


@pytest.mark.parametrize("modality", ["rgb", "flow", "skeleton"])
def test_pretraining_inputs_equal_the_forks(tree, modality):
    parse(tree, f"gin/tennis_fork_pretrain_{modality}.gin", "spatial_transform.flip_prob = 1.0")
    dataset = dataset_in("unlabeled", (modality,), "train")
    for index, (video, start) in enumerate(fork.fork_unlabelled_clips(tree.events_json)):
        reference = fork.fork_teacher_inputs("pretrain", tree.root, video, start, NUM_FRAMES, flip=True)
        assert_matches(dataset[index], reference, (modality,))


def test_fewshot_inputs_equal_the_forks_every_event_unflipped_tennis_statistics(tree):
    parse(tree, "gin/tennis_fork.gin", "spatial_transform.flip_prob = 1.0")
    dataset = dataset_in("fewshot_data", ("rgb",), "eval", labeled=True)
    events = [(name, frame) for name, video in tree.videos.items() for frame, _ in video.events]
    assert [(clip.video, clip.start) for clip in dataset.clips] == events
    for index, (video, start) in enumerate(events):
        assert_matches(dataset[index], fork.fork_teacher_inputs("eval", tree.root, video, start, NUM_FRAMES), ("rgb",))


def test_the_variants_at_their_defaults_are_the_built_in_modalities(tree):
    """rgb_spec()/flow_spec()/skeleton_spec() with no parameter read exactly as the built-ins."""
    bindings = ["rgb_frames.template = 'vid_frames_224/{video}/{frame:06d}.jpg'", "rgb_frames.first_frame = 0",
                "flow_frames.template = 'tennis_flows/{video}/pair_{frame:05d}.npy'",
                "skeleton_pickle.template = 'skeletons/f3set-tennis/{video}.pkl'", "temporal_sampling.num_frames = 4",
                "spatial_transform.crop_size = (224, 384)", "clip_annotations.label_key = None"]
    items = []
    for extra in ([], ["modality_specs.extra = {'rgb': @rgb_spec(), 'flow': @flow_spec(), "
                       "'skeleton': @skeleton_spec()}"]):
        gin.clear_config()
        import_run_configurables()
        gin.parse_config(bindings + extra)
        items.append(build_clip_dataset(tree.events_json, root=tree.root, mode="train")[1])
    for name in ("rgb", "flow", "skeleton"):
        assert torch.equal(items[0][name], items[1][name]), name
    assert not any(key.endswith("_past_end") for key in items[1])
