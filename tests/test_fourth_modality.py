"""A modality is one spec: tests/depth_spec.py adds a one-channel depth array, named in gin, and a
distillation (a depth teacher) and a few-shot evaluation (a depth model) run with it, with no
other module touched."""
import json

import gin
import numpy as np
import pytest
import torch
from ckpt_factories import write_mmdistill_ckpt

from context_factories import TINY_VIT, cpu_context
from data_factories import make_dataset
from mmdistill.data.dataset import build_clip_dataset
from mmdistill.evaluation import evaluate_stage
from mmdistill.models.vit import video_vit
from mmdistill.stages import build_distillation, distill_stage

VIDEOS = ("v0", "v1", "v2", "v3")


@pytest.fixture
def depth_world(tmp_path):
    data = make_dataset(tmp_path / "data", videos=VIDEOS, labels=("a", "b"), events_per_video=2,
                        num_frames=8, size=(32, 32))
    rng = np.random.default_rng(0)
    depth = {video: rng.uniform(0, 5, size=(8, 32, 32)).astype(np.float32) for video in VIDEOS}
    (tmp_path / "data" / "depth").mkdir()
    for video, array in depth.items():
        np.save(tmp_path / "data" / "depth" / f"{video}.npy", array)
    annotations = data["annotations"]
    gin.parse_config([
        "import depth_spec",
        "modality_specs.extra = {'depth': @depth_spec()}",
        f"unlabeled/clip_data.annotations = '{annotations}'",
        f"fewshot_data/clip_data.annotations = '{annotations}'",
        "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
        "spatial_transform.short_side = None", "spatial_transform.crop_size = (32, 32)",
        "data_loader.batch_size = 2", "data_loader.num_workers = 0",
        *(f"video_vit.{key} = {value!r}" for key, value in TINY_VIT.items()),
        "distill.modalities = ['rgb', 'depth']", "distill.allow_random_teachers = True",
        "distill.mask_ratio = 0.5", "leakage.allow = True",  # one tiny list for both on purpose
        "train.epochs = 1", "train.warmup_epochs = 0", "train.log_every = 1",
        "fewshot.settings = [(2, 1, 2, 6)]",
    ])
    return depth


def test_a_depth_item_is_the_written_array_with_one_channel(depth_world):
    dataset = build_clip_dataset(modalities=["depth"], mode="eval", labeled=True,
                                 annotations=gin.query_parameter("fewshot_data/clip_data.annotations"))
    item = dataset[0]
    clip = dataset.clips[0]
    assert dataset.channels("depth") == 1 and item["depth"].shape == (1, 4, 32, 32)
    expected = depth_world[clip.video][item["start"]:item["start"] + 4]
    np.testing.assert_array_equal(item["depth"][0].numpy(), expected)


def test_distillation_and_fewshot_evaluation_run_with_a_depth_teacher(depth_world, tmp_path):
    objective, _, _ = build_distillation()
    assert objective.teachers["depth"].in_chans == 1  # from the spec; nobody bound in_chans
    assert objective.trainable.student.in_chans == 3
    ctx = cpu_context(tmp_path / "distill")
    checkpoint = distill_stage(ctx, None)
    assert checkpoint.is_file()
    depth_losses = [row["train/loss_depth"] for _, row in ctx.logger.history if "train/loss_depth" in row]
    assert depth_losses and all(np.isfinite(depth_losses))  # the student learned from the depth teacher
    torch.manual_seed(1)
    depth_model = write_mmdistill_ckpt(tmp_path / "depth.ckpt",
                                       {"encoder.": video_vit(in_chans=1, **TINY_VIT)})
    run = cpu_context(tmp_path / "eval")
    summary = evaluate_stage(run, checkpoint, baselines={"teacher_depth": depth_model},
                             modalities={"teacher_depth": "depth"}, cache_features=False)
    assert summary["evaluated/teacher_depth/modality"] == "depth"
    assert 0 <= summary["teacher_depth/fewshot/2way_1shot/acc"] <= 100
    assert summary["fewshot/2way_1shot/vs_teacher_depth"] in ("better", "overlap", "worse")
    report = json.loads((run.dir / "fewshot_teacher_depth.json").read_text())
    assert report["num_clips"] == 8 and report["num_classes"] == 2


def test_an_in_chans_binding_is_refused_at_parse_time_naming_the_spec(depth_world):
    from mmdistill.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"video_vit.in_chans.*follow from its modality's spec"):
        parse_config([], ["teacher_depth/video_vit.in_chans = 3"])


def test_an_unknown_modality_names_the_way_to_add_its_spec(depth_world):
    gin.parse_config(["distill.modalities = ['rgb', 'thermal']"])
    with pytest.raises(ValueError, match=r"modality 'thermal' has no spec.*modality_specs.extra"):
        build_distillation()
