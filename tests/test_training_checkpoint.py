"""The training checkpoint's owner: atomic writes, safe loading, RNG round trips, pruning, the
trainer's save and resume, and rebuilding a distilled checkpoint's models for evaluation."""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.layers import Mlp
from toy_objective import ToyDataset, ToyObjective, make_loader

from context_factories import cpu_context
from mmdistill.models.heads import CMTHead, StudentWithHeads
from mmdistill.models.vit import video_vit
from mmdistill.train import optim, training_checkpoint
from mmdistill.train.loop import TrainStep
from mmdistill.train.objectives import Distillation
from mmdistill.ckpt.evaluation import models_for_evaluation
from mmdistill.ckpt.format import FORMAT, VERSION, load_checkpoint
from mmdistill.ckpt.writing import save_checkpoint
from mmdistill.train.training_checkpoint import (capture_rng, checkpoint_name, prune_checkpoints,
                                                 restore_rng)

ROOT = Path(__file__).resolve().parent.parent


def payload(value: float) -> dict:
    return {"format": FORMAT, "version": VERSION, "model": {"w": torch.full((4,), value)},
            "epoch": 0, "global_step": 3, "gin_config": "train.lr = 0.1", "wandb_run_id": None}


def test_checkpoint_name_follows_the_original():
    assert checkpoint_name(4, 0.12344) == "epoch=04-train_loss=0.1234.ckpt"
    assert checkpoint_name(12, float("nan")) == "epoch=12-train_loss=nan.ckpt"


def test_round_trip_is_weights_only_safe(tmp_path):
    path = save_checkpoint(tmp_path / "last.ckpt", {**payload(1.0), "rng": capture_rng()})
    raw = torch.load(path, weights_only=True)  # would raise on any pickled object
    assert torch.equal(raw["model"]["w"], torch.ones(4))
    assert load_checkpoint(path)["global_step"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_write_that_fails_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.ckpt", payload(1.0))

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, payload(2.0))
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert not list(tmp_path.glob("*.tmp"))


def test_process_killed_midway_keeps_the_previous_file(tmp_path):
    path = save_checkpoint(tmp_path / "last.ckpt", payload(1.0))
    code = (
        "import os, signal, torch\n"
        "from mmdistill.ckpt import writing\n"
        "def killed(obj, f):\n"
        "    f.write(b'PK half a file'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "writing.torch.save = killed\n"
        f"writing.save_checkpoint({str(path)!r}, {{'model': {{'w': torch.zeros(4)}}}})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, out.stderr
    assert (tmp_path / "last.ckpt.tmp").exists()  # the torn write is in the temporary file only
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))
    save_checkpoint(path, payload(3.0))  # the next save replaces the stale temporary file
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((4,), 3.0))


def test_load_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="damaged.ckpt.*last.ckpt"):
        load_checkpoint(damaged)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pth is not an mmdistill"):
        load_checkpoint(foreign)


def test_rng_states_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    saved = capture_rng()
    save_checkpoint(tmp_path / "rng.ckpt", {**payload(0.0), "rng": saved})
    expected = (torch.rand(3), np.random.standard_normal(3), [random.random(), random.gauss(0, 1)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng(load_checkpoint(tmp_path / "rng.ckpt")["rng"])
    again = (torch.rand(3), np.random.standard_normal(3), [random.random(), random.gauss(0, 1)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_prune_keeps_the_newest_named_checkpoints(tmp_path):
    for epoch in (4, 9, 14, 19):
        (tmp_path / checkpoint_name(epoch, 0.5)).write_bytes(b"x")
    (tmp_path / "last.ckpt").write_bytes(b"x")
    prune_checkpoints(tmp_path, keep_last_k=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch=14-train_loss=0.5000.ckpt", "epoch=19-train_loss=0.5000.ckpt", "last.ckpt"]
    prune_checkpoints(tmp_path, keep_last_k=None)
    assert len(list(tmp_path.iterdir())) == 3
    with pytest.raises(ValueError, match="keep_last_k"):
        prune_checkpoints(tmp_path, keep_last_k=0)


# --- the trainer's side and evaluation, through the real save path ------------------------------

DATA_STATE = {"seed": 0, "steps_per_epoch": 2, "total_batch": 4}


def _trainer(objective, ctx):
    """What the loop hands the owner: a TrainStep (weights, optimizer, scaler) and the schedule."""
    optimizer = optim.build_optimizer(objective.trainable_modules(), lr=0.1)
    scheduler = optim.build_scheduler(optimizer, total_steps=10, warmup_steps=2)
    return TrainStep(objective, optimizer, device=ctx.device), scheduler


def test_a_saved_epoch_resumes_weights_optimizer_schedule_and_rng(tmp_path):
    ctx = cpu_context(tmp_path)
    objective = ToyObjective(seed=0)
    step_fn, scheduler = _trainer(objective, ctx)
    step_fn([next(iter(make_loader(ToyDataset(n=8), 4)))])
    scheduler.step_update(4)
    training_checkpoint.save_epoch(ctx, objective, step_fn, scheduler, epoch=1, global_step=4,
                                   data_state=DATA_STATE, metrics={"train/epoch_loss": 0.5},
                                   save_ckpt_freq=2, keep_last_k=None)
    expected_draw = torch.rand(3)
    last = ctx.checkpoints_dir / training_checkpoint.LAST
    assert (ctx.checkpoints_dir / checkpoint_name(1, 0.5)).is_file() and last.is_file()
    assert training_checkpoint.step_done(last) == 4

    fresh = ToyObjective(seed=1)
    fresh_step, fresh_scheduler = _trainer(fresh, ctx)
    where = training_checkpoint.resume(last, fresh_step, fresh_scheduler, DATA_STATE, ctx)
    assert where == (2, 4, {"train/epoch_loss": 0.5})
    for key, value in objective.trainable_modules().state_dict().items():
        assert torch.equal(fresh.trainable_modules().state_dict()[key], value), key
    saved_moments = [s["exp_avg"] for s in step_fn.optimizer.state.values()]
    resumed_moments = [s["exp_avg"] for s in fresh_step.optimizer.state.values()]
    assert len(saved_moments) == len(resumed_moments) > 0
    assert all(torch.equal(a, b) for a, b in zip(saved_moments, resumed_moments))
    assert fresh_step.optimizer.param_groups[0]["lr"] == step_fn.optimizer.param_groups[0]["lr"]
    assert torch.equal(torch.rand(3), expected_draw)  # random streams continue where they were


@pytest.mark.parametrize("feature", ["tokens", "pooled"])
def test_a_distillation_checkpoint_rebuilds_its_student_and_heads(tmp_path, feature):
    tiny = dict(num_frames=4, img_size=(32, 32), patch_size=16, tubelet_size=2, embed_dim=32,
                depth=1, num_heads=2)
    torch.manual_seed(0)
    teachers = {"rgb": video_vit(**tiny), "flow": video_vit(in_chans=2, **{**tiny, "embed_dim": 48})}
    student = video_vit(**tiny)
    heads = {"rgb": CMTHead(32, 32), "flow": CMTHead(32, 48, hidden_dim=24, depth=2, act="gelu")}
    objective = Distillation(StudentWithHeads(student, heads, feature=feature), teachers)
    ctx = cpu_context(tmp_path)
    step_fn, scheduler = _trainer(objective, ctx)
    training_checkpoint.save_epoch(ctx, objective, step_fn, scheduler, epoch=0, global_step=2,
                                   data_state=DATA_STATE, metrics={"train/epoch_loss": 0.5},
                                   save_ckpt_freq=1, keep_last_k=None)

    model, rebuilt, report = models_for_evaluation(
        ctx.checkpoints_dir / training_checkpoint.LAST)
    assert (report.format, report.prefix) == (FORMAT, "student.")
    for key, value in student.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert set(rebuilt) == {"rgb", "flow"}
    tokens = torch.randn(2, 5, 32)
    for name, head in heads.items():
        expected = head(tokens) if feature == "tokens" else head(
            student.fc_norm(tokens.mean(dim=1))).unsqueeze(1)
        torch.testing.assert_close(rebuilt[name](tokens), expected, rtol=0, atol=0)


def test_cmt_heads_keep_the_keys_earlier_checkpoints_hold():
    """Depth 1 was timm's Mlp (fc1, fc2); deeper heads a Sequential (0, 2, 4, ...)."""
    torch.manual_seed(0)
    mlp = Mlp(32, 32, 16, act_layer=torch.nn.ReLU)
    head = CMTHead(32, 16)
    head.load_state_dict(mlp.state_dict())  # strict: exactly the same keys and shapes
    x = torch.randn(3, 32)
    torch.testing.assert_close(head(x), mlp(x), rtol=0, atol=0)
    assert list(CMTHead(32, 16, depth=2).state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
