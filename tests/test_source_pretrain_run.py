"""run.py stage-1 pretraining end to end on tiny generated data: labelled source clips paired
with unlabelled target clips; its checkpoint then loads as a teacher (the encoder only)."""
import json
from pathlib import Path

import torch

import data_factories as df
from mmdistill.ckpt.loading import initialise_from_checkpoint, load_pretrained
from mmdistill.models.vit import VideoViT

ROOT = Path(__file__).resolve().parent.parent


def test_run_py_pretrains_with_a_source_and_the_checkpoint_loads_as_a_teacher(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    df.make_dataset(source, videos=[f"s{i}" for i in range(6)], labels=("a", "b", "c"),
                    num_frames=6, size=(32, 32))
    df.make_dataset(target, videos=("t0", "t1", "t2"), num_frames=6, size=(32, 32), seed=1)
    bindings = [
        "experiment.task = 'pretrain'", "experiment.device = 'cpu'", "experiment.threads = 1",
        f"experiment.output_root = '{tmp_path / 'out'}'", "experiment.name = 'stage1'",
        "wandb_run.mode = 'disabled'",
        "pretrain.modality = 'rgb'", "pretrain.visualize_clips = 2", "pretrain.mask_ratio = 0.5",
        "pretrain.source = True", "pretrain.target_recon_weight = 0.0",
        "video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
        "video_vit.num_frames = 4", "video_vit.img_size = (32, 32)", "video_vit.patch_size = 16",
        "mae.decoder_dim = 16", "mae.decoder_depth = 1",
        f"source/clip_data.annotations = '{source / 'annotations.json'}'",
        f"unlabeled/clip_data.annotations = '{target / 'annotations.json'}'",
        "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
        "spatial_transform.short_side = None", "spatial_transform.crop_size = (32, 32)",
        "data_loader.batch_size = 2", "data_loader.num_workers = 0",
        "train.epochs = 2", "train.warmup_epochs = 0", "train.log_every = 1",
    ]
    out = df.run_py(bindings, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").glob("*/*_stage1")
    assert "6 labelled source clips in 3 classes, paired with 3 target clips" in out.stdout
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [row for row in rows if "train/epoch_loss" in row]
    assert len(epochs) == 2
    for row in epochs:
        for part in ("loss_recon_source", "loss_recon_target", "loss_ce"):
            assert row[f"train/epoch_{part}"] > 0
        assert 0 <= row["train/epoch_metric_source_acc"] <= 1
        # lambda_ce None: rgb's 0.05; the target reconstruction is not in the loss
        expected = row["train/epoch_loss_recon_source"] + 0.05 * row["train/epoch_loss_ce"]
        assert abs(row["train/epoch_loss"] - expected) < 1e-4 * expected
    assert any("train/metric_source_acc" in row for row in rows)
    assert (run_dir / "reconstructions.png").is_file()

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["arch"]["action_head"] == {"in_dim": 32, "num_classes": 3, "dropout": 0.5}
    assert saved["model"]["action_head.head.weight"].shape == (3, 32)
    teacher = VideoViT(in_chans=3, num_frames=4, img_size=(32, 32), patch_size=16, embed_dim=32,
                       depth=1, num_heads=2)
    report = initialise_from_checkpoint(teacher, path=str(checkpoint))
    assert report.prefix == "encoder." and not report.skipped
    assert "action_head.head.weight" in report.dropped
    torch.testing.assert_close(teacher.patch_embed.proj.weight,
                               saved["model"]["encoder.patch_embed.proj.weight"])
    assert load_pretrained(VideoViT(in_chans=3, num_frames=4, img_size=(32, 32), patch_size=16,
                                    embed_dim=32, depth=1, num_heads=2), checkpoint).loaded == report.loaded


def test_the_stage_refuses_no_data_and_a_source_without_its_clip_list(tmp_path):
    import gin
    import pytest

    from context_factories import cpu_context
    from mmdistill.stages import pretrain_stage

    ctx = cpu_context(tmp_path)
    gin.clear_config()
    try:
        with pytest.raises(ValueError, match="both False"):
            pretrain_stage(ctx, None, source=False, target=False)
        gin.parse_config(["video_vit.embed_dim = 32", "video_vit.depth = 1",
                          "video_vit.num_heads = 2", "video_vit.num_frames = 4",
                          "video_vit.img_size = (32, 32)"])
        with pytest.raises(ValueError, match="source/clip_data.annotations"):
            pretrain_stage(ctx, None, source=True)
        with pytest.raises(ValueError, match="without pretrain.init_checkpoint"):
            pretrain_stage(ctx, None, init_patch_embed="reinit")
    finally:
        gin.clear_config()
