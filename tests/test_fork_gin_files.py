"""gin/tennis_fork.gin and gin/tennis_fork_pretrain_{rgb,flow,skeleton}.gin parse and run one tiny
training step on a tiny tree in the tennis fork's layout, the distillation with teachers in the
fork's DeepSpeed format; and every option they use refuses bad values with the fix."""
from pathlib import Path

import gin
import numpy as np
import pytest
import torch

import fork_tree as fork
from context_factories import cpu_context
from mmdistill.data.dataset import build_clip_dataset
from mmdistill.data.clip_types import BadClipError
from test_fork_teachers import PREFIX, fork_shapes, write_deepspeed_dir

REPO = Path(__file__).resolve().parents[1]
# A tiny model with the fork's head rule (64 wide, 12 heads: attention 60 wide), 4 frames of 32 x 48.
TINY = ["video_vit.embed_dim = 64", "video_vit.depth = 1", "video_vit.num_heads = 12",
        "video_vit.num_frames = 4", "video_vit.img_size = (32, 48)", "temporal_sampling.num_frames = 4",
        "spatial_transform.crop_size = (32, 48)", "data_loader.batch_size = 2", "data_loader.num_workers = 0",
        "train.epochs = 1", "train.warmup_epochs = 0", "train.log_every = 1",
        "leakage.allow = True"]  # the tiny tree's one events file is both lists, on purpose


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return fork.write_fork_tree(tmp_path_factory.mktemp("fork_tree"))


def parse(tree, gin_file: str, *bindings: str) -> None:
    fork.parse_fork_gin(tree, gin_file, *TINY, *bindings)


def fork_teacher(root: Path, in_chans: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    shapes = fork_shapes(in_chans, 64, 1, 12, 32, 1, 6)
    state = {PREFIX + key: (torch.randn(shape, generator=g) * 0.1).half() for key, shape in shapes.items()}
    root.mkdir(parents=True)
    return write_deepspeed_dir(root, state)


def test_tennis_fork_gin_distils_one_step_from_fork_teachers_on_fork_data(tree, tmp_path):
    from mmdistill.stages import distill_stage

    teachers = [fork_teacher(tmp_path / name, chans, seed)
                for seed, (name, chans) in enumerate([("rgb", 3), ("flow", 2), ("skeleton", 17)])]
    parse(tree, "gin/tennis_fork.gin", *(f"{name}_TEACHER = '{path}'" for name, path in
                                         zip(("RGB", "FLOW", "SKELETON"), teachers)))
    assert gin.query_parameter("distill.mask_type") == "bernoulli"
    ctx = cpu_context(tmp_path / "run")
    assert distill_stage(ctx, None).is_file()
    losses = [row["train/loss"] for _, row in ctx.logger.history if "train/loss" in row]
    assert losses and np.isfinite(losses).all()


@pytest.mark.parametrize("modality", ["rgb", "flow", "skeleton"])
def test_tennis_fork_pretraining_gin_runs_one_step(tree, tmp_path, modality):
    from mmdistill.stages import pretrain_stage

    parse(tree, f"gin/tennis_fork_pretrain_{modality}.gin", "mae.decoder_dim = 32", "mae.decoder_heads = 6",
          "mae.decoder_depth = 1", "pretrain.visualize_clips = 0")
    assert gin.query_parameter("pretrain.modality") == modality
    ctx = cpu_context(tmp_path / "run")
    assert pretrain_stage(ctx, None).is_file()
    losses = [row["train/loss"] for _, row in ctx.logger.history if "train/loss" in row]
    assert losses and np.isfinite(losses).all()


# ---- each option refuses bad values with the fix ----

@pytest.mark.parametrize("binding, message", [
    ("flow/frame_rule.floor = -1", "floor must be >= 0"),
    ("skeleton/frame_rule.shift = 0.5", "shift must be a whole number"),
    ("rgb/frame_rule.past_end = 'zero'", "'error', 'last' .* or 'zeros'"),
    ("temporal_sampling.past_end = 'clamp'", "'shift' .* or 'keep'"),
    ("grid_heatmaps.grid = (56,)", "grid must be \\(rows, columns\\)"),
    ("grid_heatmaps.sigma = 0.0", "sigma must be positive"),
    ("grid_heatmaps.threshold = 1.5", "threshold must be in \\[0, 1\\)"),
    ("grid_heatmaps.person = -1", "person must be a person index"),
    ("rgb/frame_rule.past_end = 'zeros'", "'zeros' is for flow"),
    ("flow_spec.flip = 'no'", "flip must be True or False"),
])
def test_each_option_refuses_a_bad_value_with_the_fix(tree, binding, message):
    parse(tree, "gin/tennis_fork.gin", binding)
    with pytest.raises(ValueError, match=message):
        with gin.config_scope("unlabeled"):
            build_clip_dataset(modalities=["rgb", "flow", "skeleton"], mode="train")


def test_the_skeleton_renderer_option_names_its_value_and_its_place(tree):
    parse(tree, "gin/tennis_fork.gin", "skeleton_spec.heatmaps = 'fork'")
    with pytest.raises(ValueError, match="skeleton_spec.heatmaps must be @grid_heatmaps\\(\\) or None"):
        with gin.config_scope("unlabeled"):
            build_clip_dataset(modalities=["skeleton"], mode="train")
    parse(tree, "gin/tennis_fork.gin", "skeleton_heatmaps.render_on = 'device'")
    with gin.config_scope("unlabeled"):
        dataset = build_clip_dataset(modalities=["skeleton"], mode="train", on_bad_clip="skip")
    with pytest.raises(ValueError, match="set skeleton_heatmaps.render_on = 'loader'"):
        dataset[0]  # a setting, not a bad clip: not skipped
    parse(tree, "gin/tennis_fork.gin", "skeleton_heatmaps.stride = 2")  # ours, not the fork's grid
    with gin.config_scope("unlabeled"):
        dataset = build_clip_dataset(modalities=["skeleton"], mode="train", on_bad_clip="skip")
    with pytest.raises(ValueError, match="skeleton_heatmaps.stride = 2 .* would be ignored: drop it"):
        dataset[0]


def test_past_the_end_is_an_error_naming_the_fix_unless_a_rule_says_what_it_is(tree):
    parse(tree, "gin/tennis_fork.gin", "rgb/frame_rule.past_end = 'error'")
    with gin.config_scope("unlabeled"):
        dataset = build_clip_dataset(modalities=["rgb"], mode="train")
    dataset.temporal.num_frames = 8  # the 10-frame video's clip from frame 5 runs 3 frames past its end
    with pytest.raises(BadClipError, match="past its last stored frame.*frame_rule.past_end to 'last'"):
        dataset[1]
    parse(tree, "gin/tennis_fork.gin", "modality_specs.extra = {}")  # the built-in RGB: no frame rule
    with gin.config_scope("unlabeled"):
        dataset = build_clip_dataset(modalities=["rgb"], mode="train")
    dataset.temporal.num_frames = 8
    with pytest.raises(BadClipError, match="past the end"):
        dataset[1]


def test_a_frame_rule_keeps_the_clip_cache_out_by_name(tree, tmp_path):
    parse(tree, "gin/tennis_fork.gin", f"clip_data.cache_dir = '{tmp_path / 'cache'}'")
    with pytest.raises(ValueError, match="rgb_spec.frames"):
        with gin.config_scope("unlabeled"):
            build_clip_dataset(modalities=["rgb"], mode="train")
