"""A sample of documented bindings, shown to take effect: the checkpoint a teacher is loaded from
(`distill.teacher_checkpoints`, the binding that replaces `teacher_flow/pretrained.path`), the
one mask ratio of each stage (`distill.mask_ratio`, `pretrain.mask_ratio`, `fewshot.mask_ratio`)
and `fewshot.settings`. Stages run up to the training loop, which is replaced by a recorder."""
import gin
import pytest
import torch

import ckpt_factories as cf
from context_factories import TINY_VIT, bind_tiny_fewshot_data, cpu_context
from data_factories import make_dataset
from mmdistill import stages
from mmdistill.config import parse_config
from mmdistill.models.vit import video_vit


def _tiny_training_data(tmp_path):
    data = make_dataset(tmp_path / "data", videos=("v0", "v1"), num_frames=12, size=(32, 48))
    return [f"unlabeled/clip_data.annotations = '{data['annotations']}'",
            "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
            "spatial_transform.short_side = None", "spatial_transform.crop_size = (32, 48)",
            "data_loader.batch_size = 2", "data_loader.num_workers = 0",
            *(f"video_vit.{k} = {v!r}" for k, v in cf.TINY.items())]


@pytest.fixture
def recorded(monkeypatch):
    """What the stage hands to the training loop (instead of training)."""
    seen = {}

    def record(objective, loader, ctx, **kwargs):
        seen.update(objective=objective, loader=loader)
        return {"checkpoint": str(ctx.dir / "checkpoints" / "last.ckpt")}

    monkeypatch.setattr(stages, "train", record)
    return seen


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_distillation_reads_its_teacher_checkpoint_and_mask_ratio(tmp_path, recorded, ratio):
    teacher = cf.tiny_vit(seed=3)
    path = cf.write_official_pth(tmp_path / "rgb.pth", teacher.state_dict())
    parse_config([], [*_tiny_training_data(tmp_path), "distill.modalities = ('rgb',)",
                      f"distill.teacher_checkpoints = {{'rgb': '{path}'}}",
                      f"distill.mask_ratio = {ratio}"])
    stages.distill_stage(cpu_context(tmp_path / "run"), None)
    loaded = recorded["objective"].teachers["rgb"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in teacher.state_dict().items())
    assert recorded["loader"].dataset.mask_generator.ratio == ratio
    batch = next(iter(recorded["loader"]))
    hidden = batch["mask"].float().mean().item()  # 12 tokens, round(ratio * 6) hidden per slice
    assert hidden == pytest.approx(round(ratio * 6) / 6)


def test_pretraining_reads_its_mask_ratio(tmp_path, recorded):
    parse_config([], [*_tiny_training_data(tmp_path),
                      "pretrain.modality = 'rgb'", "pretrain.mask_ratio = 0.5",
                      "pretrain.visualize_clips = 0"])
    stages.pretrain_stage(cpu_context(tmp_path / "run"), None)
    assert recorded["loader"].dataset.mask_generator.ratio == 0.5


def test_evaluation_reads_fewshot_settings_and_its_mask_ratio(tmp_path, monkeypatch):
    from mmdistill.eval import fewshot
    from mmdistill.evaluation import evaluate_stage

    bind_tiny_fewshot_data(tmp_path / "data", "fewshot.settings = [(2, 1, 2, 7), (2, 2, 1, 5)]",
                           "fewshot.mask_views = 1", "fewshot.mask_ratio = 0.25")
    torch.manual_seed(0)
    path = cf.write_mmdistill_ckpt(tmp_path / "t.ckpt", {"encoder.": video_vit(**TINY_VIT)})
    ratios = []
    extract = fewshot.extract_features

    def recording(*args, **kwargs):
        ratios.append(kwargs["mask_ratio"])
        return extract(*args, **kwargs)

    monkeypatch.setattr(fewshot, "extract_features", recording)
    summary = evaluate_stage(cpu_context(tmp_path / "run"), None, baselines={"t": path},
                             cache_features=False)
    assert ratios == [0.25]
    assert summary["t/fewshot/2way_1shot/episodes"] == 7
    assert summary["t/fewshot/2way_2shot/episodes"] == 5
    assert not [k for k in summary if "5way" in k]
    gin.clear_config()
