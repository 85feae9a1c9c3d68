"""Distillation on pooled features (gin/base/distill_recipe.gin): MM-CDFSL's loss by hand, and
evaluation of the distilled student through the pooled LayerNorm it was trained with."""
import copy
from pathlib import Path

import gin
import torch
from torch.utils.data import DataLoader, Dataset
from test_objectives import TINY, FixedClips

from context_factories import cpu_context
from mmdistill.ckpt.evaluation import models_for_evaluation
from mmdistill.data.device_batches import finish_batch
from mmdistill.eval.features import MASKED, POOLED, extract_features
from mmdistill.models.heads import NormedPooling, StudentWithHeads, cmt_head
from mmdistill.models.vit import video_vit
from mmdistill.train import training_checkpoint
from mmdistill.train.loop import train
from mmdistill.train.objectives import Distillation


def _pooled_objective(seed=0):
    torch.manual_seed(seed)
    teachers = {"rgb": video_vit(in_chans=3, **TINY), "flow": video_vit(in_chans=2, **TINY),
                "skeleton": video_vit(in_chans=5, **{**TINY, "embed_dim": 48, "num_heads": 3})}
    student = copy.deepcopy(teachers["rgb"])
    heads = {m: cmt_head(32, t.embed_dim) for m, t in teachers.items()}
    return Distillation(StudentWithHeads(student, heads, feature="pooled", fc_norm=True),
                        teachers, target_norm=True)


def _layer_norm(x, weight=None, bias=None, eps=1e-5):
    """LayerNorm written out: (x - mean) / sqrt(biased var + eps), then the affine if any."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return y if weight is None else y * weight + bias


def test_pooled_loss_is_mmcdfsl_formula_on_fixed_weights():
    """L = sum_m (1/(B*D_m)) sum_b ||g_m(z_b) - t_mb||^2 with
    z = LN_s(mean_{i in V} E_s(x_rgb; M)_i)   (LN_s: the student's trainable fc_norm, affine)
    t_m = LN(mean_{i in V} E_m(x_m; M)_i)     (LN: no affine, a teacher's fresh fc_norm)
    g_m(z) = W2 relu(W1 z + b1) + b2, V the visible tokens of the shared tube mask M, and E the
    encoder's visible tokens after its final norm."""
    objective = _pooled_objective()
    fc_norm = objective.trainable.fc_norm
    with torch.no_grad():  # an affine away from identity, so the test sees it used
        fc_norm.weight.uniform_(0.5, 1.5)
        fc_norm.bias.normal_(0, 0.3)
    raw = next(iter(DataLoader(FixedClips(), batch_size=3)))
    visible = torch.stack([(~m).nonzero().squeeze(1) for m in raw["mask"]])
    out = objective(finish_batch(raw, "cpu"))

    with torch.no_grad():
        student = objective.trainable.student
        z = _layer_norm(student(raw["rgb"], visible)[0].mean(1), fc_norm.weight, fc_norm.bias)
        expected = 0.0
        for m, teacher in objective.teachers.items():
            t = _layer_norm(teacher(raw[m], visible)[0].mean(1))
            head = objective.trainable.heads[m]
            g = torch.relu(z @ head.fc1.weight.T + head.fc1.bias) @ head.fc2.weight.T + head.fc2.bias
            part = ((g - t) ** 2).sum() / t.numel()
            torch.testing.assert_close(out[f"loss_{m}"], part, rtol=1e-5, atol=1e-6)
            expected = expected + part
    torch.testing.assert_close(out["loss"].detach(), expected, rtol=1e-5, atol=1e-6)
    keys = set(objective.trainable_modules().state_dict())
    assert {"fc_norm.weight", "fc_norm.bias"} <= keys  # trained and saved with the student
    assert objective.arch()["fc_norm"] == {"dim": 32, "eps": 1e-5}


def test_the_recipe_distils_pooled_features_through_a_trained_fc_norm():
    import mmdistill.stages  # noqa: F401 - registers distill.*

    gin.parse_config_file(str(Path(__file__).resolve().parent.parent / "gin/base/distill_recipe.gin"))
    assert gin.query_parameter("distill.feature") == "pooled"
    assert gin.query_parameter("distill.student_fc_norm") is True
    assert gin.query_parameter("distill.target_norm") is True


def test_fc_norm_without_pooled_features_is_refused():
    import pytest

    with pytest.raises(ValueError, match="distill.feature='pooled'"):
        StudentWithHeads(video_vit(**TINY), {}, feature="tokens", fc_norm=True)


class LabelledClips(Dataset):
    def __init__(self, n=6):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        return {"rgb": torch.randn(3, 4, 32, 32, generator=g), "label": i % 2, "index": i}


def test_evaluation_reads_the_pooled_feature_through_the_trained_fc_norm(tmp_path):
    objective = _pooled_objective()
    ctx = cpu_context(tmp_path)
    train(objective, DataLoader(FixedClips(), batch_size=4), ctx, epochs=2, lr=0.05,
          scale_lr=False, warmup_epochs=0, log_every=1, save_ckpt_freq=1)
    fc_norm = objective.trainable.fc_norm
    assert not torch.allclose(fc_norm.weight, torch.ones_like(fc_norm.weight))  # it was trained

    model, heads, _ = models_for_evaluation(
        ctx.checkpoints_dir / training_checkpoint.LAST)
    assert isinstance(model, NormedPooling) and model.grid_size == (2, 2, 2)
    loader = DataLoader(LabelledClips(), batch_size=4)
    bank = extract_features(model, loader, class_names=["a", "b"], mask_views=1, progress=False)
    clips = torch.stack([LabelledClips()[i]["rgb"] for i in range(6)])
    objective.eval()
    with torch.no_grad():
        tokens = objective.trainable.student(clips)[0]
        expected = fc_norm(tokens.mean(1))  # fc_norm(mean(tokens)), the trained fc_norm
        head_view = heads["flow"](tokens).mean(1)
        trained_head = objective.trainable.heads["flow"](expected)
    torch.testing.assert_close(bank.views[POOLED], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head_view, trained_head, rtol=1e-5, atol=1e-5)
    assert bank.views[MASKED].shape == (1, 6, 32)
    # The validation hook sees the same feature as training and evaluation.
    live = objective.trainable.feature_model()
    with torch.no_grad():
        torch.testing.assert_close(live(clips)[1], expected, rtol=1e-6, atol=1e-6)


def test_export_of_a_pooled_student_names_the_fc_norm_it_cannot_hold(tmp_path, capsys):
    from mmdistill.ckpt.command import main
    objective = _pooled_objective()
    ctx = cpu_context(tmp_path)
    train(objective, DataLoader(FixedClips(), batch_size=4), ctx, epochs=1, lr=0.05,
          scale_lr=False, warmup_epochs=0, log_every=1, save_ckpt_freq=1)
    last = str(ctx.checkpoints_dir / training_checkpoint.LAST)
    out = tmp_path / "student.pth"
    assert main(["export", last, "--to", "official", str(out), "--prefix", "student."]) == 2
    assert "--without-fc-norm" in capsys.readouterr().err and not out.exists()
    assert main(["export", last, "--to", "official", str(out), "--prefix", "student.",
                 "--without-fc-norm"]) == 0
    assert out.exists()
